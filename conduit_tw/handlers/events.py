"""
The local event pipeline: build an event for a local user, authorise it
against the room's current state, and persist it in one atomic write,
serialised per room so that concurrent sends never fork the room.

    stored = await hs.events.send(room_id, sender, "m.room.message", content)

Steps (docs/architecture.md "The event engine ... and how rooms code calls
it"): prev_events = the forward extremities, auth_events picked from the
current state by C{auth_rules.auth_types_for_event}, depth = max depth + 1,
content hash and signature (C{signing.hash_and_sign_event}), event ID per
room version, C{validation.validate_pdu}, then C{auth_rules.check_auth}
(AuthError -> 403 M_FORBIDDEN with its message), then
C{EventStore.persist_apply}. The room's slot is released as soon as the
event is applied (visible to the next build, caches updated); the send
then waits, outside the slot, until the event is durable (SQLite's group
commit makes that one fsync for all the events of a reactor turn), and
only then answers: the notifier and the post-persist hooks run at that
point too (C{after_commit}). Events of a room commit in the order they
were built, so a crash loses a suffix of unacknowledged events at worst.

Several events can be built and persisted in one transaction (room
creation): pass the same L{StoreTxn} to L{EventHandler.build} and
C{EventStore.persist}; each build sees the effects of the previous ones.
"""

from __future__ import annotations

import secrets
import string
from typing import TYPE_CHECKING, Any, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.events.auth_rules import (
    CREATE_KEY,
    AuthError,
    auth_types_for_event,
    check_auth,
    get_named_level,
    get_user_power_level,
)
from conduit_tw.events.canonical_json import InvalidJson, encode_canonical_json
from conduit_tw.events.event import Event
from conduit_tw.events.event_ids import compute_event_id, event_id_from_reference_hash
from conduit_tw.events.room_versions import EventIdFormat, RoomVersion
from conduit_tw.events.signing import hash_and_sign_event
from conduit_tw.events.validation import InvalidEvent, validate_pdu
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.rooms import RoomInfo, txn_key
from conduit_tw.storage.stores.timeline import StoredEvent
from conduit_tw.storage.txn import Durability, StoreTxn
from conduit_tw.util.linearizer import Linearizer

log = get_logger("conduit_tw.handlers.events")

if TYPE_CHECKING:
    from conduit_tw.handlers.server_keys import ServerKeys
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.users import UserStore

#: Why m.room.encryption events are refused (403 M_FORBIDDEN) by
#: L{EventHandler.build} when C{allow_encryption} is false.
ENCRYPTION_DISABLED = "end-to-end encryption is disabled on this server (allow_encryption = false)"

#: Most prev_events a new event refers to (server-server-api allows 20).
MAX_PREV_EVENTS = 20

_ALPHABET = string.ascii_letters + string.digits


def random_string(n: int) -> str:
    """A random alphanumeric string."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


class NewEvent(Event):
    """
    An event built here, with its canonical JSON (encoded once, for the
    size check) for the store to reuse (C{TimelineStore.put}).
    """

    __slots__ = ("canonical",)

    def __init__(self, pdu: dict[str, Any], event_id: str, room_version: RoomVersion) -> None:
        super().__init__(pdu, event_id, room_version)
        #: The PDU as canonical JSON once validated (None before).
        self.canonical: bytes | None = None


class EventHandler:
    """Builds, authorises and persists local events; see the module docstring."""

    def __init__(
        self, server_name: str, store: "EventStore", users: "UserStore",
        clock_ms: Callable[[], int],
    ) -> None:
        self.store = store
        self.users = users
        self.server_name = server_name
        self.clock_ms = clock_ms
        #: This server's signing key; assigned by C{HomeServer.setup} once
        #: the key is loaded (events are only built after that).
        self.server_keys: "ServerKeys"
        #: Per-room serialisation of read-modify-write on the room.
        self.linearizer = Linearizer("rooms")
        #: Local policy checks run by L{send} on each event once it is built
        #: and authorised, before it is stored (under the room's linearizer
        #: slot): C{validator(room, event)}, sync or async, raising
        #: L{MatrixError} to refuse it (e.g. the directory's check of
        #: m.room.canonical_alias). Room creation does not run them.
        self.validators: list[Callable[[RoomInfo, Event], Any]] = []
        #: C{allow_encryption}: False refuses m.room.encryption events
        #: (assigned by the HomeServer; see L{build}).
        self.allow_encryption = True
        #: Events sent with a transaction ID that are applied but not yet
        #: durable (a retry waits for them before answering).
        self._unsettled: dict[str, Durability] = {}

    # ------------------------------------------------------------------
    # Building

    def _sign(self, pdu: dict[str, Any], version: RoomVersion) -> NewEvent:
        keys = self.server_keys
        # One redaction and one encoding for both the signature and the ID.
        digest = hash_and_sign_event(pdu, version, keys.signing_key, self.server_name)
        if version.event_id_format is EventIdFormat.SERVER_MADE:
            event_id = compute_event_id(pdu, version)
        else:
            event_id = event_id_from_reference_hash(digest, version)
        return NewEvent(pdu, event_id, version)

    def _validate(self, event: NewEvent) -> None:
        try:
            encoded: bytes | None = encode_canonical_json(event.pdu)
        except InvalidJson:
            encoded = None  # validate_pdu says why
        try:
            validate_pdu(event.pdu, event.room_version, encoded)
            event.canonical = encoded
        except InvalidEvent as e:
            if "larger than" in e.message:
                raise MatrixError(413, Codes.TOO_LARGE, "Event is too large: " + e.message) from None
            raise MatrixError(400, Codes.BAD_JSON, "Invalid event: " + e.message) from None

    def _v1_event_id(self) -> str:
        return "$" + random_string(18) + ":" + self.server_name

    def new_v1_event_id(self) -> str:
        """A new C{$random:server} event ID (rooms v1-2)."""
        return self._v1_event_id()

    def sign_pdu(self, pdu: dict[str, Any], version: RoomVersion) -> NewEvent:
        """
        Hash and sign a complete PDU with our key and compute its event ID
        (federation: an event completed from a make_join/make_leave
        template).
        """
        return self._sign(pdu, version)

    def build_create(
        self,
        version: RoomVersion,
        sender: str,
        content: dict[str, Any],
        room_id: str | None,
        origin_server_ts: int | None = None,
    ) -> NewEvent:
        """
        Build and check an m.room.create event. C{room_id} is ignored for
        room v12, whose room ID is derived from the event (so two rooms
        created by one user with the same content in the same millisecond
        would be one: the caller moves C{origin_server_ts} on if the room
        exists).
        """
        pdu: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": sender,
            "content": content,
            "origin_server_ts": origin_server_ts if origin_server_ts is not None else self.clock_ms(),
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
        }
        if not version.room_id_from_create_event:
            pdu["room_id"] = room_id
        if version.event_id_in_event:
            pdu["event_id"] = self._v1_event_id()
            pdu["origin"] = self.server_name
        event = self._sign(pdu, version)
        self._validate(event)
        try:
            check_auth(event, {})
        except AuthError as e:
            raise MatrixError(400, Codes.BAD_JSON, e.message) from None
        return event

    async def build(
        self,
        room: RoomInfo,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        txn: StoreTxn | None = None,
        redacts: str | None = None,
    ) -> NewEvent:
        """
        Build, sign and authorise an event on top of the room's current
        state (as changed by C{txn} so far).

        @raise MatrixError: 403 M_FORBIDDEN when the auth rules refuse it
            (with their reason) or for C{m.room.encryption} when
            C{allow_encryption} is false,
            413 M_TOO_LARGE, 400 M_BAD_JSON.
        """
        if event_type == "m.room.encryption" and not self.allow_encryption:
            # As Conduit: no new encrypted rooms, no changes of the
            # encryption of existing ones; their encrypted events still
            # flow (docs/configuration.md allow_encryption).
            raise forbidden(ENCRYPTION_DISABLED)
        version = room.version
        head = await self.store.head(room, txn)
        if not head.statehash:
            raise not_found("Unknown room")
        prev_ids = sorted(head.extremities)[:MAX_PREV_EVENTS]
        if redacts is not None and version.redacts_in_content:
            content = dict(content)
            content["redacts"] = redacts
        wanted = auth_types_for_event(version, event_type, sender, state_key, content)
        auth_state = await self.store.state_events(head.statehash, wanted | {CREATE_KEY}, txn)
        auth_events = [auth_state[k] for k in wanted if k in auth_state]
        auth_events.sort(key=lambda e: e.event_id)
        pdu: dict[str, Any] = {
            "room_id": room.room_id,
            "sender": sender,
            "type": event_type,
            "content": content,
            "origin_server_ts": self.clock_ms(),
            "depth": min(head.depth + 1, 2**53 - 1),
        }
        if version.event_id_in_event:
            prev_events = [await self.store.get_event(e, txn) for e in prev_ids]
            pdu["prev_events"] = [
                [e.event_id, {"sha256": e.pdu.get("hashes", {}).get("sha256", "")}]
                for e in prev_events
                if e is not None
            ]
            pdu["auth_events"] = [
                [e.event_id, {"sha256": e.pdu.get("hashes", {}).get("sha256", "")}]
                for e in auth_events
            ]
            pdu["event_id"] = self._v1_event_id()
            pdu["origin"] = self.server_name
        else:
            pdu["prev_events"] = prev_ids
            pdu["auth_events"] = [e.event_id for e in auth_events]
        if state_key is not None:
            pdu["state_key"] = state_key
        if redacts is not None and not version.redacts_in_content:
            pdu["redacts"] = redacts
        event = self._sign(pdu, version)
        self._validate(event)
        try:
            check_auth(event, auth_state)
        except AuthError as e:
            raise forbidden(e.message) from None
        return event

    # ------------------------------------------------------------------
    # Sending

    async def get_room_or_404(self, room_id: str) -> RoomInfo:
        """The room if we have state for it, else 404 M_NOT_FOUND."""
        room = await self.store.get_room(room_id)
        if room is None or not (await self.store.head(room)).statehash:
            raise not_found("Unknown room " + room_id)
        return room

    async def set_state(
        self, room_id: str, sender: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> StoredEvent:
        """
        C{PUT /rooms/{roomId}/state/...}: send a state event, unless it
        would repeat the sender's current one with the same content (then
        that one is answered, as Synapse does, so clients that re-send
        state do not fill the timeline).
        """
        current = await self.store.current_state_event(room_id, event_type, state_key)
        if current is not None and current.sender == sender and current.content == content:
            return current
        return await self.send(room_id, sender, event_type, content, state_key)

    async def send(
        self,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        device_id: str | None = None,
        txn_id: str | None = None,
        txn_kind: str = "send",
        redacts: str | None = None,
    ) -> StoredEvent:
        """
        Create, authorise and persist one event from a local user.

        With C{txn_id}, the send is idempotent per user, device and kind:
        a retry returns the event of the first attempt (also after a
        restart; the mapping is written with the event), once it is
        durable.

        Returns once the event is durable.
        """
        key = None
        if txn_id is not None:
            key = txn_key(txn_kind, sender, device_id, txn_id)
            existing = await self._txn_event(key)
            if existing is not None:
                return await self._settled(existing)
        room = await self.get_room_or_404(room_id)
        contended = self.linearizer.is_busy(room_id)
        async with self.linearizer.queue(room_id):
            if key is not None and contended:
                # A retry of the same transaction may have been ahead of us.
                existing = await self._txn_event(key)
            else:
                existing = None
            if existing is None:
                if redacts is not None:
                    await self._check_redaction(room, sender, redacts)
                event = await self.build(
                    room, sender, event_type, content, state_key, redacts=redacts
                )
                for validator in list(self.validators):
                    result = validator(room, event)
                    if hasattr(result, "__await__"):
                        await result
                extras = {"tx": [device_id, txn_id]} if txn_id is not None else None
                stored, durable = await self.store.persist_apply(
                    event, txn_key=key, extras=extras, new_event=True
                )
                if key is not None and not durable.done:
                    self._track(stored.event_id, durable)
        if existing is not None:
            return await self._settled(existing)
        # The room's slot is free again: the next event builds on this one
        # while it is being committed.
        await durable
        if event_type == "m.room.guest_access" and state_key == "":
            await self._guest_access_changed(room_id, content)
        return stored

    async def _guest_access_changed(self, room_id: str, content: dict[str, Any]) -> None:
        """
        When guest access is no longer C{can_join}, the guests of this
        server in the room leave it (client-server-api "Guest access":
        guests may only be in rooms that allow them); each leave is sent
        as the guest, which the auth rules always allow.
        """
        if content.get("guest_access") == "can_join":
            return
        users = self.users
        for member in await self.store.members(room_id, "join"):
            if member.partition(":")[2] != self.server_name:
                continue
            account = await users.get_account(member)
            if account is None or not account.is_guest:
                continue
            try:
                await self.send(room_id, member, "m.room.member", {"membership": "leave"}, member)
            except MatrixError as e:
                log.warn(
                    "Could not remove guest {user} from {room}: {err}",
                    user=member, room=room_id, err=e.msg,
                )

    def _track(self, event_id: str, durable: Durability) -> None:
        unsettled = self._unsettled
        unsettled[event_id] = durable

        def settled(_: object) -> None:
            if unsettled.get(event_id) is durable:
                del unsettled[event_id]

        durable.wait().addBoth(settled)

    async def _txn_event(self, key: bytes) -> StoredEvent | None:
        event_id = await self.store.rooms.get_txn_event(key)
        if event_id is None:
            return None
        return await self.store.get_event(event_id)

    async def _settled(self, stored: StoredEvent) -> StoredEvent:
        """C{stored} once durable (a retry may find an event still committing)."""
        durable = self._unsettled.get(stored.event_id)
        if durable is not None:
            await durable
        return stored

    async def _check_redaction(self, room: RoomInfo, sender: str, target_id: str) -> None:
        """Local policy: the target must exist here; others' events need redact power."""
        target = await self.store.get_event(target_id)
        if target is None or target.shortroomid != room.short:
            raise not_found("Event not found")
        if target.sender == sender:
            return
        head = await self.store.head(room)
        auth = await self.store.state_events(
            head.statehash, [CREATE_KEY, ("m.room.power_levels", "")]
        )
        if get_user_power_level(sender, auth) < get_named_level(auth, "redact"):
            raise forbidden("You don't have permission to redact events of other users")
