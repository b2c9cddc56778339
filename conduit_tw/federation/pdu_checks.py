"""
Steps 1-3 of server-server-api "Checks performed on receipt of a PDU",
for any PDU another server gives us (transactions, get_missing_events,
/event, /event_auth, /state answers):

1. a valid event for the room version (C{validation.validate_pdu}, size
   included), in the room we asked about, with its event ID computed per
   room version; otherwise it is dropped;
2. signed by every server that must sign it (C{signing.required_signers}:
   the sender's server; rooms v1-2 also the event ID's server; restricted
   joins also the authorising server), verified through the keyring;
   otherwise it is dropped;
3. a content hash that matches, otherwise the event is replaced by its
   redacted form (server-server-api "Validating hashes and signatures on
   received events") and processed further.

The errors here are the per-PDU results other code reports
(L{PduDropped}: not stored; L{PduRejected}: stored as rejected).
"""

from __future__ import annotations

from typing import Any, Awaitable, Mapping, Protocol

from conduit_tw.events.event import Event
from conduit_tw.events.event_ids import compute_event_id
from conduit_tw.events.hashes import check_content_hash
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import RoomVersion
from conduit_tw.events.signing import SignatureError, required_signers
from conduit_tw.events.validation import InvalidEvent, validate_pdu


class PduError(Exception):
    """
    A received PDU was not accepted; C{str(error)} is the reason, fit for
    the C{error} of a transaction's per-PDU result.

    @ivar event_id: the event's ID when it could be computed.
    """

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class PduDropped(PduError):
    """The PDU was dropped: not stored (invalid, badly signed, unknown room, ACL...)."""


class PduRejected(PduError):
    """The PDU failed the auth rules: stored as rejected, never served or used as accepted."""


class Keyring(Protocol):
    """What the pipeline needs of the keyring (federation/keyring.py)."""

    def verify_json_for_server(
        self, server_name: str, obj: Mapping[str, Any], min_valid_until_ts: int = 0
    ) -> Awaitable[None]:
        """Raise if C{obj} is not signed by C{server_name} with a key valid until then."""


class FederationClient(Protocol):
    """What the pipeline needs of the federation client (federation/client.py)."""

    def get_json(
        self, destination: str, path: str, args: Mapping[str, Any] | None = None
    ) -> Awaitable[Any]:
        """GET a federation path of C{destination}; the parsed JSON answer."""

    def post_json(self, destination: str, path: str, body: Any) -> Awaitable[Any]:
        """POST a JSON body to a federation path of C{destination}."""


class Unavailable:
    """
    Keyring and client stand-in until the transport is wired: every call
    fails, so nothing from other servers is accepted.
    """

    async def verify_json_for_server(
        self, server_name: str, obj: Mapping[str, Any], min_valid_until_ts: int = 0
    ) -> None:
        raise SignatureError("no keyring configured")

    async def get_json(self, destination: str, path: str, args: Any = None) -> Any:
        raise PduDropped("no federation client configured")

    async def post_json(self, destination: str, path: str, body: Any) -> Any:
        raise PduDropped("no federation client configured")


UNAVAILABLE = Unavailable()


def parse_pdu(room_id: str, room_version: RoomVersion, pdu_json: Any) -> Event:
    """
    Step 1: the PDU as an L{Event} of C{room_id}, without its C{unsigned}
    (nothing there is signed; what we serve is our own), with its event ID.

    An event whose only fault is an over-long ID in a lenient room version
    comes back with C{rejected} set (validation.InvalidEvent
    C{persist_as_rejected}).

    @raise PduDropped: the PDU is not a valid event of this room.
    """
    if not isinstance(pdu_json, dict):
        raise PduDropped("PDU is not a JSON object")
    pdu = {k: v for k, v in pdu_json.items() if k != "unsigned"}
    rejected = False
    try:
        validate_pdu(pdu, room_version)
    except InvalidEvent as e:
        if not e.persist_as_rejected:
            raise PduDropped("Invalid event: " + e.message) from None
        rejected = True
    try:
        event_id = compute_event_id(pdu, room_version)
    except InvalidEvent as e:
        raise PduDropped("Invalid event: " + e.message) from None
    in_room = pdu.get("room_id")
    if in_room is None and pdu.get("type") == "m.room.create":
        in_room = "!" + event_id[1:]  # v12: the create event's ID names the room
    if in_room != room_id:
        raise PduDropped("Event is not in room %s" % room_id, event_id)
    return Event(pdu, event_id, room_version, rejected)


async def check_signatures_and_hash(keyring: Keyring, event: Event) -> Event:
    """
    Steps 2 and 3: verify the required signatures through the keyring
    (on the redacted event, so a redacted copy verifies too; rooms v5+
    need keys valid at C{origin_server_ts}), then the content hash.

    @return: C{event}, or its redacted copy when the hash does not match.
    @raise PduDropped: a required signature is missing or invalid.
    """
    pdu, version = event.pdu, event.room_version
    try:
        servers = required_signers(pdu, version)
    except SignatureError as e:
        raise PduDropped("Bad signature: %s" % e, event.event_id) from None
    redacted = redact_pdu(pdu, version)
    redacted.pop("unsigned", None)
    valid_until = event.origin_server_ts if version.enforce_key_validity else 0
    for server in sorted(servers):
        try:
            await keyring.verify_json_for_server(server, redacted, valid_until)
        except PduError:
            raise
        except Exception as e:
            # The keyring raises its own errors (bad signature, no key,
            # key server unreachable): all mean "not verified", so dropped.
            raise PduDropped(
                "Signature of %s not verified: %s" % (server, e), event.event_id
            ) from None
    if not check_content_hash(pdu):
        return Event(redact_pdu(pdu, version), event.event_id, version, event.rejected)
    return event


async def check_pdu(keyring: Keyring, room_id: str, room_version: RoomVersion, pdu_json: Any) -> Event:
    """Steps 1-3 (L{parse_pdu}, L{check_signatures_and_hash}) in one call."""
    return await check_signatures_and_hash(keyring, parse_pdu(room_id, room_version, pdu_json))
