"""
Events as clients see them (client-server-api "Room Event Format",
C{ClientEvent}): C{event_id}, C{type}, C{content}, C{sender},
C{origin_server_ts}, C{room_id}, C{state_key} for state events and
C{unsigned} with:

- C{age}: milliseconds since C{origin_server_ts}, when served;
- C{transaction_id}: only for the sender's own device that sent it;
- C{redacted_because}: the redaction event (client format) of a redacted
  event, whose stored content is already pruned;
- C{prev_content}, C{prev_sender}, C{replaces_state}: for a state event
  that replaced another one.

Redactions also carry C{redacts} at the top level in every room version
(room v11 moved it into C{content}; clients still read the old place).

Use L{EventSerializer.serialize_events} for lists: it loads the replaced
and redaction events of the whole list in one go.

Bundled aggregations (client-server-api "Aggregations of child events"):
C{unsigned.m.relations} comes from L{EventSerializer.bundle}, assigned by
the HomeServer (handlers/relations.py), so every place that serves events
(/sync, /messages, /context, /event, /relations, /threads, /search,
notifications) serves them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

JsonDict = dict[str, Any]


def client_event(
    event: StoredEvent,
    now_ms: int,
    user_id: str | None = None,
    device_id: str | None = None,
    prev: StoredEvent | None = None,
    redaction: JsonDict | None = None,
    include_room_id: bool = True,
) -> JsonDict:
    """
    The client format of one event (pure: the caller supplies the replaced
    event C{prev} and the serialised C{redaction}).
    """
    pdu = event.pdu
    out: JsonDict = {
        "event_id": event.event_id,
        "type": pdu["type"],
        "content": pdu.get("content", {}),
        "sender": pdu["sender"],
        "origin_server_ts": pdu.get("origin_server_ts", 0),
    }
    if include_room_id:
        out["room_id"] = event.room_id_or_create()
    if "state_key" in pdu:
        out["state_key"] = pdu["state_key"]
    if pdu["type"] == "m.room.redaction":
        redacts = event.redacts
        if redacts is not None:
            out["redacts"] = redacts
    unsigned: JsonDict = {"age": max(0, now_ms - out["origin_server_ts"])}
    tx = event.extras.get("tx")
    if tx and user_id == pdu["sender"] and tx[0] == device_id and tx[1] is not None:
        unsigned["transaction_id"] = tx[1]
    if redaction is not None:
        unsigned["redacted_because"] = redaction
    if prev is not None:
        unsigned["prev_content"] = prev.pdu.get("content", {})
        unsigned["prev_sender"] = prev.pdu.get("sender")
        unsigned["replaces_state"] = prev.event_id
    out["unsigned"] = unsigned
    return out


class EventSerializer:
    """Client-format serialisation with the lookups it needs; see the module docstring."""

    def __init__(self, store: "EventStore", clock_ms: Callable[[], int]) -> None:
        self.store = store
        self.clock_ms = clock_ms
        #: C{(events, user_id, device_id, depth) -> {event_id: m.relations}},
        #: the bundled aggregations (handlers/relations.py); None: none.
        self.bundle: (
            Callable[[list[StoredEvent], str | None, str | None, int], Awaitable[dict[str, JsonDict]]]
            | None
        ) = None

    async def serialize_events(
        self,
        events: Iterable[StoredEvent],
        user_id: str | None = None,
        device_id: str | None = None,
        include_room_id: bool = True,
        depth: int = 2,
    ) -> list[JsonDict]:
        """
        The client format of C{events}, in order, with C{depth} levels of
        bundled aggregations (0: none; 2: an event's thread summary
        carries the latest thread event's own aggregations).
        """
        events = list(events)
        wanted: set[str] = set()
        for ev in events:
            rs = ev.extras.get("rs")
            if rs:
                wanted.add(rs)
            rb = ev.extras.get("rb")
            if rb:
                wanted.add(rb)
        related = await self.store.get_events(wanted) if wanted else {}
        bundles = (
            await self.bundle(events, user_id, device_id, depth)
            if self.bundle is not None and depth > 0 else {}
        )
        now = self.clock_ms()
        out = []
        for ev in events:
            redaction = None
            rb = ev.extras.get("rb")
            if rb and rb in related:
                redaction = client_event(related[rb], now, user_id, device_id)
            rs = ev.extras.get("rs")
            serialized = client_event(
                ev, now, user_id, device_id,
                prev=related.get(rs) if rs else None,
                redaction=redaction,
                include_room_id=include_room_id,
            )
            relations = bundles.get(ev.event_id)
            if relations:
                serialized["unsigned"]["m.relations"] = relations
            out.append(serialized)
        return out

    async def serialize_event(
        self, event: StoredEvent, user_id: str | None = None, device_id: str | None = None
    ) -> JsonDict:
        """The client format of one event."""
        return (await self.serialize_events([event], user_id, device_id))[0]
