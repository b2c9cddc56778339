"""
Event IDs and (room v12) room IDs.

- rooms v1-2 (fragments/v1-event-ids): C{$opaque:server}, chosen by the
  server that made the event and carried in its C{event_id} key.
- room v3 ("Event IDs"): C{$} + unpadded base64 of the reference hash.
- rooms v4+ (fragments/v4-event-ids): C{$} + URL-safe unpadded base64 of
  the reference hash.
- room v12 (appendices "Room IDs"): the room ID is the create event's ID
  with the sigil C{!}; the create event itself has no C{room_id}.
"""

from __future__ import annotations

from typing import Any, Mapping

from conduit_tw.events.event import Event
from conduit_tw.events.hashes import compute_reference_hash, encode_base64
from conduit_tw.events.room_versions import EventIdFormat, RoomVersion
from conduit_tw.events.validation import InvalidEvent


def reference_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """
    The hash-based event ID of a PDU (room v3+ formats).

    @raise ValueError: for rooms v1-2, which have no hash-based IDs.
    """
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.SERVER_MADE:
        raise ValueError(
            "room version %s has no hash-based event IDs" % room_version.identifier
        )
    return event_id_from_reference_hash(compute_reference_hash(pdu, room_version), room_version)


def event_id_from_reference_hash(digest: bytes, room_version: RoomVersion) -> str:
    """The event ID (room v3+ formats) of an event whose reference hash is C{digest}."""
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.SERVER_MADE:
        raise ValueError(
            "room version %s has no hash-based event IDs" % room_version.identifier
        )
    return "$" + encode_base64(digest, urlsafe=fmt is EventIdFormat.URL_SAFE_BASE64)


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """
    The event ID of a PDU: its C{event_id} key in rooms v1-2, otherwise
    derived from its reference hash.

    @raise InvalidEvent: a v1-2 PDU without a string C{event_id}.
    """
    if room_version.event_id_format is EventIdFormat.SERVER_MADE:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise InvalidEvent("missing required key 'event_id'")
        return event_id
    return reference_event_id(pdu, room_version)


def room_id_for_create_event(
    pdu: Mapping[str, Any], room_version: RoomVersion, event_id: str | None = None
) -> str:
    """
    The room ID a C{m.room.create} event creates.

    In room v12 (C{room_version.room_id_from_create_event}) it is the event
    ID with C{!} instead of C{$}; in older versions it is the event's own
    C{room_id}.

    @param event_id: the create event's ID if already computed.
    @raise InvalidEvent: an older-version create event without a C{room_id}.
    """
    if room_version.room_id_from_create_event:
        if event_id is None:
            event_id = reference_event_id(pdu, room_version)
        return "!" + event_id[1:]
    room_id = pdu.get("room_id")
    if not isinstance(room_id, str):
        raise InvalidEvent("missing required key 'room_id'")
    return room_id


def make_event(pdu: dict[str, Any], room_version: RoomVersion) -> Event:
    """
    Wrap a PDU in an L{Event}, computing its event ID.

    The PDU is not copied or changed (a v12 create event keeps no
    C{room_id}; use L{room_id_for_create_event}).

    @raise InvalidEvent: a v1-2 PDU without a string C{event_id}.
    """
    return Event(pdu, compute_event_id(pdu, room_version), room_version)
