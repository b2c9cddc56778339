"""
L{Event}: a read-only view of one PDU plus its event ID and room version.

Auth rules, state resolution and the stores all work on this type. It wraps
the PDU's JSON object without copying it; the helpers below read the fields
whose shape differs between room versions (rooms/v1 vs v3 "Event format").
"""

from __future__ import annotations

from typing import Any, Mapping

from conduit_tw.events.room_versions import RoomVersion

JsonDict = dict[str, Any]


class Event:
    """
    One PDU as received or built.

    @ivar pdu: the event's JSON object as it travels over federation
        (never mutated through this class).
    @ivar event_id: the event's ID (computed from the reference hash for
        room v3+, the C{event_id} field for v1-2).
    @ivar room_version: the version of the event's room.
    @ivar rejected: set by the persistence layer when the event failed auth.
    """

    __slots__ = ("pdu", "event_id", "room_version", "rejected")

    def __init__(
        self, pdu: JsonDict, event_id: str, room_version: RoomVersion, rejected: bool = False
    ) -> None:
        self.pdu = pdu
        self.event_id = event_id
        self.room_version = room_version
        self.rejected = rejected

    def __repr__(self) -> str:
        return "<Event %s %s %r>" % (self.event_id, self.type, self.state_key)

    @property
    def type(self) -> str:
        """The event type."""
        return self.pdu["type"]

    @property
    def sender(self) -> str:
        """The user ID that sent the event."""
        return self.pdu["sender"]

    @property
    def room_id(self) -> str | None:
        """
        The room ID. For a v12 create event (which has no C{room_id}) it is
        derived by L{conduit_tw.events.event_ids} and not available here.
        """
        return self.pdu.get("room_id")

    @property
    def content(self) -> JsonDict:
        """The event content (an empty dict when absent)."""
        c = self.pdu.get("content")
        return c if isinstance(c, dict) else {}

    @property
    def state_key(self) -> str | None:
        """The state key, or C{None} for a message event."""
        return self.pdu.get("state_key")

    def is_state(self) -> bool:
        """Whether this is a state event (it has a C{state_key})."""
        return "state_key" in self.pdu

    @property
    def depth(self) -> int:
        """The event's depth in the room DAG."""
        return self.pdu.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        """Timestamp in milliseconds set by the origin server."""
        return self.pdu.get("origin_server_ts", 0)

    @property
    def redacts(self) -> str | None:
        """
        For C{m.room.redaction}: the redacted event ID, read from content
        in room v11+ (falling back to the top-level key) and from the top
        level before (rooms/v11 "Moving the redacts property").
        """
        if self.room_version.redacts_in_content:
            r = self.content.get("redacts")
            if isinstance(r, str):
                return r
        r = self.pdu.get("redacts")
        return r if isinstance(r, str) else None

    def prev_event_ids(self) -> list[str]:
        """IDs of the prev_events, whatever the event format."""
        return _ids(self.pdu.get("prev_events", ()), self.room_version)

    def auth_event_ids(self) -> list[str]:
        """IDs of the auth_events, whatever the event format."""
        return _ids(self.pdu.get("auth_events", ()), self.room_version)

    def state_pair(self) -> tuple[str, str]:
        """C{(type, state_key)} of a state event."""
        return (self.pdu["type"], self.pdu["state_key"])

    def membership(self) -> str | None:
        """C{content.membership} of an m.room.member event."""
        m = self.content.get("membership")
        return m if isinstance(m, str) else None


def _ids(refs: Any, room_version: RoomVersion) -> list[str]:
    """Extract event IDs from v1 C{[id, hashes]} pairs or v3+ plain lists."""
    if room_version.event_id_in_event:
        return [r[0] for r in refs if isinstance(r, (list, tuple)) and r]
    return [r for r in refs if isinstance(r, str)]


StateMap = Mapping[tuple[str, str], str]
"""A room state: C{(type, state_key)} -> event ID."""
