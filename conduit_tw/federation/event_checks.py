"""
Checks of events received in the membership handshakes (send_join,
send_leave, send_knock, invite and the state of a send_join answer):
server-server-api "Checks performed on receipt of a PDU" steps 1-3
(format for the room version, signatures of the required servers, content
hash) and the ordering of a returned state and auth chain so each event
can be authorised against its own auth events (step 4).

The inbound PDU pipeline (transactions) has its own, fuller path; these
functions are what the membership endpoints share.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Mapping

from twisted.internet.defer import Deferred, gatherResults

from conduit_tw.events.auth_rules import CREATE_KEY, AuthError, check_auth
from conduit_tw.events.canonical_json import InvalidJson, encode_canonical_json
from conduit_tw.events.event import Event
from conduit_tw.events.event_ids import compute_event_id, room_id_for_create_event
from conduit_tw.events.hashes import check_content_hash
from conduit_tw.events.room_versions import RoomVersion
from conduit_tw.events.signing import SignatureError
from conduit_tw.events.validation import InvalidEvent, validate_pdu
from conduit_tw.federation.errors import FederationError

#: C{verify_event(pdu, room_version)} of the keyring.
VerifyEvent = Callable[[Mapping[str, Any], RoomVersion], Awaitable[None]]


class BadEvent(Exception):
    """A received event failed a check; the message says which."""


def parse_pdu(pdu: Any, version: RoomVersion) -> Event:
    """
    Check an event's format for its room version and wrap it with its
    event ID (computed from its reference hash in v3+).

    @raise BadEvent: not a valid PDU of that version.
    """
    try:
        encoded = encode_canonical_json(pdu) if isinstance(pdu, dict) else None
    except InvalidJson:
        encoded = None
    try:
        validate_pdu(pdu, version, encoded)
        event_id = compute_event_id(pdu, version)
    except InvalidEvent as e:
        raise BadEvent("invalid event: " + e.message) from None
    return Event(pdu, event_id, version)


def room_of(event: Event) -> str:
    """The event's room ID (derived for a v12 create event)."""
    if event.room_id is not None:
        return event.room_id
    return room_id_for_create_event(event.pdu, event.room_version, event.event_id)


async def check_signed_event(event: Event, verify_event: VerifyEvent) -> None:
    """
    Steps 2-3 of "Checks performed on receipt of a PDU" for an event that
    must be accepted whole: signatures of every required server (keys
    fetched by the keyring) and the content hash. A hash mismatch is a
    refusal here (the handshakes need the event as sent, not a redacted
    copy).

    @raise BadEvent: why.
    """
    try:
        await verify_event(event.pdu, event.room_version)
    except (SignatureError, FederationError) as e:
        raise BadEvent("bad signature: %s" % (e,)) from None
    if not check_content_hash(event.pdu):
        raise BadEvent("content hash mismatch for %s" % (event.event_id,))


async def check_all_signed(events: Iterable[Event], verify_event: VerifyEvent) -> dict[str, str]:
    """
    L{check_signed_event} for many events at once (keys are fetched
    concurrently; the keyring shares one fetch per server).

    @return: event ID -> why, for the events that failed.
    """
    events = list(events)

    async def one(event: Event) -> str | None:
        try:
            await check_signed_event(event, verify_event)
        except BadEvent as e:
            return str(e)
        return None

    results = await gatherResults([Deferred.fromCoroutine(one(e)) for e in events])
    return {e.event_id: why for e, why in zip(events, results) if why is not None}


def authorise_chain(events: Mapping[str, Event]) -> set[str]:
    """
    Authorise every event of a returned state and auth chain against its
    own auth events (step 4 of "Checks performed on receipt of a PDU"),
    in increasing depth, so an event's auth events are decided first. An
    event whose auth event is missing, rejected or not shallower than it
    (a cycle or a lie about depth) is rejected too.

    @param events: the events by ID (already format-, signature- and
        hash-checked).
    @return: the IDs of the rejected events.
    """
    rejected: set[str] = set()
    accepted: set[str] = set()
    create = next((e for e in events.values() if e.type == "m.room.create"), None)
    for event in sorted(events.values(), key=lambda e: (e.depth, e.event_id)):
        auth_state: dict[tuple[str, str], Event] = {}
        ok = True
        for auth_id in event.auth_event_ids():
            auth_ev = events.get(auth_id)
            if auth_id not in accepted or auth_ev is None or auth_ev.depth >= event.depth:
                ok = False
                break
            if auth_ev.is_state():
                auth_state[auth_ev.state_pair()] = auth_ev
        if ok and create is not None:
            auth_state.setdefault(CREATE_KEY, create)
        if ok:
            try:
                check_auth(event, auth_state)
            except AuthError:
                ok = False
        (accepted if ok else rejected).add(event.event_id)
    return rejected
