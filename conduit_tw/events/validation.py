"""
Event format checks: step 1 of server-server-api "Checks performed on
receipt of a PDU" (an event that fails is dropped).

Sources: the PDU schemas of each room version (rooms/v1 "Event format",
v3, v4-event-format, v6-event-format, v11, v12-event-format, i.e.
data/api/server-server/definitions/pdu_v*.yaml), client-server-api "Size
limits", and appendices "Canonical JSON" for rooms v6+.

Left to the auth rules on purpose, because the spec rejects rather than
drops those events: a v12 C{m.room.create} that has a C{room_id} (v12 auth
rule 1.2), power level values that are strings in v10+ (v10 "Values in
m.room.power_levels events must be integers"), membership content.
"""

from __future__ import annotations

from typing import Any, Mapping

from conduit_tw.events.canonical_json import (
    InvalidJson,
    check_canonical_value,
    encode_canonical_json,
)
from conduit_tw.events.room_versions import RoomVersion

#: client-server-api "Size limits": the whole PDU as canonical JSON.
MAX_PDU_SIZE = 65536
#: Byte limit of C{sender}, C{room_id}, C{type}, C{state_key}, event IDs.
MAX_ID_BYTES = 255
#: PDU schema: "Must contain less than or equal to 20 events".
MAX_PREV_EVENTS = 20
#: PDU schema: "Must contain less than or equal to 10 events".
MAX_AUTH_EVENTS = 10
#: Largest depth in rooms v1-5 (pdu_v1/v3/v4: 2**63 - 1).
MAX_DEPTH = 2**63 - 1
#: Largest depth in rooms v6+ (depth_v6.yaml: canonical JSON range).
MAX_DEPTH_STRICT = 2**53 - 1


class InvalidEvent(ValueError):
    """
    The event does not have the format its room version requires.

    @ivar message: what is wrong, for logs and error responses.
    @ivar persist_as_rejected: C{True} when the event should be stored as
        rejected instead of dropped (see
        L{RoomVersion.lenient_event_byte_limits}); C{False} means drop.
    """

    def __init__(self, message: str, persist_as_rejected: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.persist_as_rejected = persist_as_rejected


def _require(pdu: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    try:
        v = pdu[key]
    except KeyError:
        raise InvalidEvent("missing required key %r" % key) from None
    if type(v) is not kind:
        raise InvalidEvent("%r must be %s" % (key, what))
    return v


def _check_id_length(key: str, value: str, room_version: RoomVersion) -> None:
    if len(value) <= MAX_ID_BYTES // 4:  # even 4-byte UTF-8 fits
        return
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        lenient = room_version.lenient_event_byte_limits and len(value) <= MAX_ID_BYTES
        raise InvalidEvent(
            "%r is longer than %d bytes" % (key, MAX_ID_BYTES),
            persist_as_rejected=lenient,
        )


def _check_refs(pdu: Mapping[str, Any], key: str, limit: int, pairs: bool) -> None:
    refs = _require(pdu, key, list, "a list")
    if len(refs) > limit:
        raise InvalidEvent("%r has more than %d entries" % (key, limit))
    if pairs:
        # rooms v1-2: [event_id, {"sha256": ...}] pairs.
        for r in refs:
            if (
                type(r) is not list
                or len(r) != 2
                or type(r[0]) is not str
                or type(r[1]) is not dict
            ):
                raise InvalidEvent("%r entries must be [event_id, hashes] pairs" % key)
    else:
        for r in refs:
            if type(r) is not str:
                raise InvalidEvent("%r entries must be event ID strings" % key)


def validate_pdu(
    pdu: Any, room_version: RoomVersion, encoded: bytes | None = None
) -> None:
    """
    Check that a PDU has the format of its room version.

    Checks required keys and their types, C{prev_events}/C{auth_events}
    shape and counts, depth range, ID sigils, the 255-byte limits, the
    65536-byte limit of the canonical JSON PDU, and for room v6+ the
    canonical JSON number rules on every value.

    @param pdu: the event as parsed from JSON.
    @param room_version: the version of the event's room.
    @param encoded: the PDU's canonical JSON if the caller already has it,
        to avoid encoding it again for the size check.
    @raise InvalidEvent: the first problem found.
    """
    if type(pdu) is not dict:
        raise InvalidEvent("event is not a JSON object")

    etype = _require(pdu, "type", str, "a string")
    sender = _require(pdu, "sender", str, "a string")
    _require(pdu, "content", dict, "an object")
    ts = pdu.get("origin_server_ts")
    if type(ts) is not int:
        raise InvalidEvent("'origin_server_ts' must be an integer")
    depth = pdu.get("depth")
    if type(depth) is not int:
        raise InvalidEvent("'depth' must be an integer")
    max_depth = MAX_DEPTH_STRICT if room_version.strict_canonical_json else MAX_DEPTH
    if not 0 <= depth <= max_depth:
        raise InvalidEvent("'depth' out of range")

    hashes = _require(pdu, "hashes", dict, "an object")
    if type(hashes.get("sha256")) is not str:
        raise InvalidEvent("'hashes' must have a 'sha256' string")
    signatures = _require(pdu, "signatures", dict, "an object")
    for server_sigs in signatures.values():
        if type(server_sigs) is not dict or any(
            type(s) is not str for s in server_sigs.values()
        ):
            raise InvalidEvent("'signatures' must map servers to {key_id: signature}")
    if "unsigned" in pdu and type(pdu["unsigned"]) is not dict:
        raise InvalidEvent("'unsigned' must be an object")

    if sender[:1] != "@" or ":" not in sender:
        raise InvalidEvent("'sender' is not a user ID")
    _check_id_length("sender", sender, room_version)
    _check_id_length("type", etype, room_version)

    if "state_key" in pdu:
        state_key = pdu["state_key"]
        if type(state_key) is not str:
            raise InvalidEvent("'state_key' must be a string")
        _check_id_length("state_key", state_key, room_version)

    # room_id: required, except on a v12 create event (whose ID is the room ID).
    if "room_id" in pdu:
        room_id = pdu["room_id"]
        if type(room_id) is not str or room_id[:1] != "!":
            raise InvalidEvent("'room_id' is not a room ID")
        _check_id_length("room_id", room_id, room_version)
    elif not (room_version.room_id_from_create_event and etype == "m.room.create"):
        raise InvalidEvent("missing required key 'room_id'")

    pairs = room_version.event_id_in_event
    if pairs:
        event_id = _require(pdu, "event_id", str, "a string")
        if event_id[:1] != "$" or ":" not in event_id:
            raise InvalidEvent("'event_id' is not an event ID")
        _check_id_length("event_id", event_id, room_version)
    _check_refs(pdu, "prev_events", MAX_PREV_EVENTS, pairs)
    _check_refs(pdu, "auth_events", MAX_AUTH_EVENTS, pairs)

    if room_version.strict_canonical_json:
        try:
            check_canonical_value(pdu)
        except InvalidJson as e:
            raise InvalidEvent(str(e)) from None

    check_pdu_size(pdu, encoded)


def check_pdu_size(pdu: Mapping[str, Any], encoded: bytes | None = None) -> None:
    """
    Check the 65536-byte limit of the PDU encoded as canonical JSON, with
    its signatures (client-server-api "Size limits").

    @param encoded: the PDU's canonical JSON if already computed.
    @raise InvalidEvent: if the PDU is too large or cannot be encoded.
    """
    if encoded is None:
        try:
            encoded = encode_canonical_json(pdu)
        except InvalidJson as e:
            raise InvalidEvent(str(e)) from None
    if len(encoded) > MAX_PDU_SIZE:
        raise InvalidEvent(
            "event is larger than %d bytes as canonical JSON" % MAX_PDU_SIZE
        )
