"""
Relationships between events (client-server-api "Forming relationships
between events", modules/event_annotations.md, event_replacements.md,
reference_relations.md, threading.md):

- the index: L{RelationsHandler.event_persisted} (an C{EventStore}
  persist hook, so local events and federation's new events alike) files
  each live event that has an C{m.relates_to} under its parent, keeps the
  thread summaries, and drops a redacted child from them
  (storage/stores/relations.py);
- C{GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]}
  (L{relations}) and C{GET /v1/rooms/{roomId}/threads} (L{threads});
- the bundled aggregations (L{bundle}) that the serializer puts in
  C{unsigned.m.relations} of every event it serves ("Aggregations of
  child events"): C{m.replace} (the most recent valid edit, per
  event_replacements.md "Validity of replacement events"),
  C{m.thread} (latest event, count, current_user_participated) and
  C{m.reference} (the referencing event IDs);
- the send-time check of threading.md "Validation of m.thread
  relationships" (L{check_thread}, an C{EventHandler.validators} hook).

Every child served, bundled or listed is one the user may see (history
visibility), and the parent must be visible for /relations (404 otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.handlers.room_history import encode_token, pagination_bounds, parse_token
from conduit_tw.storage.stores.relations import Child, RelationStore, ThreadSummary, indexable
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.events.event import Event
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.serialize import EventSerializer
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.rooms import RoomInfo
    from conduit_tw.storage.txn import StoreTxn

JsonDict = dict[str, Any]

#: /relations and /threads: default and largest C{limit}.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: Relationship levels followed with C{recurse=true} (the spec asks for at least 3).
RECURSION_DEPTH = 3
#: Most related events looked at for one request (recursion, filters).
MAX_SCAN = 1000
#: Most edits and references looked at for one aggregation.
MAX_AGGREGATED = 100

REPLACE, THREAD, REFERENCE = "m.replace", "m.thread", "m.reference"


def relation_of(content: Any) -> tuple[str | None, str | None]:
    """C{(rel_type, parent event ID)} of an event's content, or Nones."""
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(rel, dict):
        return None, None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str):
        return None, None
    return rel_type, parent


def valid_edit(original: StoredEvent, edit: StoredEvent) -> bool:
    """event_replacements.md "Validity of replacement events"."""
    return (
        edit.room_id_or_create() == original.room_id_or_create()
        and edit.sender == original.sender
        and edit.type == original.type
        and "state_key" not in edit.pdu
        and "state_key" not in original.pdu
        and relation_of(original.pdu.get("content"))[0] != REPLACE
        and isinstance(edit.pdu.get("content", {}).get("m.new_content"), dict)
        and not edit.redacted_because
    )


class RelationsHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: RelationStore,
        events: "EventStore",
        visibility: "Visibility",
        serializer: "EventSerializer",
        check_access: Callable[[str, str], Awaitable[Any]],
    ) -> None:
        """
        @param check_access: C{(user_id, room_id)} raising 403 unless the
            user may read the room's history at all
            (C{RoomHistoryHandler.check_access}).
        """
        self.store = store
        self.events = events
        self.visibility = visibility
        self.serializer = serializer
        self.check_access = check_access

    # ------------------------------------------------------------------
    # The index

    async def event_persisted(self, txn: "StoreTxn", event: StoredEvent) -> None:
        """The C{EventStore.persist_hooks} entry: index a new child, unindex a redacted one."""
        if event.type == "m.room.redaction" and event.redacts:
            await self._redacted(txn, event.redacts)
        rel_type, parent_id = relation_of(event.pdu.get("content"))
        if rel_type is None or parent_id is None:
            return
        if not indexable(rel_type) or not indexable(event.type):
            return
        parent = await self.events.get_event(parent_id, txn)
        if parent is None or parent.shortroomid != event.shortroomid or not parent.in_timeline:
            return
        self.store.add_child(txn, parent.short, Child(event.short, event.order, rel_type, event.type))
        if rel_type == THREAD and relation_of(parent.pdu.get("content"))[0] is None:
            old = await self.store.thread_summary(parent.short)
            new = ThreadSummary(event.order, event.short, (old.count if old else 0) + 1)
            self.store.put_thread(txn, parent.shortroomid, parent.short, old, new)
            self.store.add_participant(txn, parent.short, event.sender)

    async def _redacted(self, txn: "StoreTxn", target_id: str) -> None:
        pruned = await self.events.get_event(target_id, txn)
        if pruned is None or not pruned.redacted_because:
            return  # unknown, or the redaction did not apply
        original = await self.events.get_event(target_id)  # as committed: unpruned
        if original is None or original.redacted_because:
            return
        rel_type, parent_id = relation_of(original.pdu.get("content"))
        if rel_type is None or parent_id is None or not indexable(rel_type):
            return
        parent = await self.events.get_event(parent_id, txn)
        if parent is None:
            return
        child = Child(original.short, original.order, rel_type, original.type)
        self.store.remove_child(txn, parent.short, child)
        if rel_type != THREAD:
            return
        old = await self.store.thread_summary(parent.short)
        if old is None:
            return
        new: ThreadSummary | None = None
        if old.count > 1:
            remaining = [
                c for c in await self.store.children(
                    parent.short, THREAD, forward=False, boundary=None, stop=None, limit=2
                )
                if c.short != original.short
            ]
            if remaining:
                new = ThreadSummary(remaining[0].order, remaining[0].short, old.count - 1)
        self.store.put_thread(txn, parent.shortroomid, parent.short, old, new)

    async def check_thread(self, room: "RoomInfo", event: "Event") -> None:
        """
        The C{EventHandler.validators} hook (threading.md "Validation of
        m.thread relationships"): a thread cannot start from an event
        that has a relationship itself (400 M_UNKNOWN), nor from an event
        of another room.
        """
        rel_type, parent_id = relation_of(event.content)
        if rel_type != THREAD or parent_id is None:
            return
        parent = await self.events.get_event(parent_id)
        if parent is None or parent.shortroomid != room.short:
            raise MatrixError(400, Codes.UNKNOWN, "The thread root is not an event of this room")
        if relation_of(parent.pdu.get("content"))[0] is not None or isinstance(
            parent.pdu.get("content", {}).get("m.relates_to"), dict
        ):
            raise MatrixError(400, Codes.UNKNOWN, "Cannot start a thread from an event with a relation")

    # ------------------------------------------------------------------
    # /relations

    async def relations(
        self,
        requester: "Requester",
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        direction: str,
        from_token: str | None,
        to_token: str | None,
        limit: int | None,
        recurse: bool | None,
    ) -> JsonDict:
        """C{GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]}."""
        user_id = requester.user_id
        forward, boundary, stop = pagination_bounds(direction, from_token, to_token)
        limit = DEFAULT_LIMIT if limit is None else max(1, min(limit, MAX_LIMIT))
        await self.check_access(user_id, room_id)
        parent = await self.events.get_event(event_id)
        room = await self.events.get_room(room_id)
        if (
            parent is None or room is None or parent.shortroomid != room.short
            or not parent.in_timeline
            or not await self.visibility.can_see_event(user_id, parent)
        ):
            raise not_found("Event not found.")

        def wanted(child: Child) -> bool:
            return (rel_type is None or child.rel_type == rel_type) and (
                event_type is None or child.event_type == event_type
            )

        if recurse:
            candidates = await self._descendants(parent.short)
            candidates.sort(key=lambda c: c.order, reverse=not forward)
            page_rows = [
                c for c in candidates
                if wanted(c) and _inside(c.order, forward, boundary, stop)
            ]
            exhausted_all = True
        else:
            page_rows, exhausted_all = await self._direct(
                parent.short, rel_type, wanted, forward, boundary, stop, limit
            )
        chunk: list[StoredEvent] = []
        last: Child | None = None
        scanned = 0
        for i in range(0, len(page_rows), limit):
            group = page_rows[i:i + limit]
            by_short = {}
            for c in group:
                ev = await self.events.get_event_by_short(c.short)
                if ev is not None:
                    by_short[c.short] = ev
            visible = {
                e.short
                for e in await self.visibility.filter_events_for_user(
                    user_id, list(by_short.values())
                )
            }
            for c in group:
                scanned += 1
                last = c
                if c.short in visible:
                    chunk.append(by_short[c.short])
                    if len(chunk) >= limit:
                        break
            if len(chunk) >= limit:
                break
        out: JsonDict = {
            "chunk": await self.serializer.serialize_events(
                chunk, user_id, requester.device_id
            ),
        }
        more = scanned < len(page_rows) or not exhausted_all
        if last is not None and more:
            out["next_batch"] = encode_token(last.order if forward else last.order - 1)
        if from_token:
            out["prev_batch"] = from_token
        if recurse is not None:
            out["recursion_depth"] = RECURSION_DEPTH if recurse else 1
        return out

    async def _direct(
        self,
        parent: int,
        rel_type: str | None,
        wanted: Callable[[Child], bool],
        forward: bool,
        boundary: int | None,
        stop: int | None,
        limit: int,
    ) -> tuple[list[Child], bool]:
        """Direct children in page order, enough for one page; and whether that was all."""
        out: list[Child] = []
        b = boundary
        read = 0
        while read < MAX_SCAN:
            n = min(limit * 2 + 4, MAX_SCAN - read)
            rows = await self.store.children(
                parent, rel_type, forward=forward, boundary=b, stop=stop, limit=n
            )
            read += len(rows)
            out.extend(c for c in rows if wanted(c))
            if len(rows) < n:
                return out, True
            b = rows[-1].order if forward else rows[-1].order - 1
            if len(out) >= limit * 2:
                return out, False
        return out, False

    async def _descendants(self, root: int) -> list[Child]:
        """Children up to L{RECURSION_DEPTH} levels down (at most L{MAX_SCAN})."""
        out: list[Child] = []
        level = [root]
        seen = {root}
        for _ in range(RECURSION_DEPTH):
            nxt = []
            for parent in level:
                rows = await self.store.children(
                    parent, None, forward=True, boundary=None, stop=None,
                    limit=MAX_SCAN - len(out),
                )
                for c in rows:
                    if c.short not in seen:
                        seen.add(c.short)
                        out.append(c)
                        nxt.append(c.short)
                if len(out) >= MAX_SCAN:
                    return out
            level = nxt
            if not level:
                break
        return out

    # ------------------------------------------------------------------
    # /threads

    async def threads(
        self,
        requester: "Requester",
        room_id: str,
        *,
        include: str,
        from_token: str | None,
        limit: int | None,
    ) -> JsonDict:
        """C{GET /v1/rooms/{roomId}/threads}, newest activity first."""
        user_id = requester.user_id
        if include not in ("all", "participated"):
            raise MatrixError(400, Codes.INVALID_PARAM, "include must be 'all' or 'participated'")
        before = parse_token(from_token) if from_token else None
        limit = DEFAULT_LIMIT if limit is None else max(1, min(limit, MAX_LIMIT))
        await self.check_access(user_id, room_id)
        room = await self.events.get_room(room_id)
        if room is None:
            raise not_found("Room not found.")
        chunk: list[StoredEvent] = []
        read = 0
        more = True
        while more and len(chunk) < limit and read < MAX_SCAN:
            n = min(limit * 2 + 4, MAX_SCAN - read)
            rows = await self.store.threads(room.short, before, n)
            read += len(rows)
            more = len(rows) == n
            for i, (latest_order, root_short) in enumerate(rows):
                before = latest_order
                root = await self.events.get_event_by_short(root_short)
                if root is None or not (
                    include == "all"
                    or root.sender == user_id
                    or await self.store.participated(root_short, user_id)
                ):
                    continue
                if not await self.visibility.can_see_event(user_id, root):
                    continue
                chunk.append(root)
                if len(chunk) >= limit:
                    more = more or i < len(rows) - 1
                    break
        out: JsonDict = {
            "chunk": await self.serializer.serialize_events(chunk, user_id, requester.device_id)
        }
        if more and before is not None:
            out["next_batch"] = encode_token(before)
        return out

    # ------------------------------------------------------------------
    # Bundled aggregations

    async def bundle(
        self,
        events: list[StoredEvent],
        user_id: str | None,
        device_id: str | None,
        depth: int,
    ) -> dict[str, JsonDict]:
        """
        C{unsigned.m.relations} of each of C{events} that has children,
        by event ID ("Aggregations of child events"). Edits and thread
        events are serialised with C{depth - 1} levels of their own
        aggregations.
        """
        out: dict[str, JsonDict] = {}
        for ev in events:
            if not ev.in_timeline:
                continue
            if not await self.store.children(
                ev.short, None, forward=True, boundary=None, stop=None, limit=1
            ):
                continue
            agg: JsonDict = {}
            edit = None if ev.redacted_because else await self._latest_edit(ev, user_id)
            if edit is not None:
                agg[REPLACE] = (
                    await self.serializer.serialize_events([edit], user_id, device_id, depth=0)
                )[0]
            summary = await self.store.thread_summary(ev.short)
            if summary is not None:
                latest = await self.events.get_event_by_short(summary.latest_short)
                if latest is not None and (
                    user_id is None or await self.visibility.can_see_event(user_id, latest)
                ):
                    agg[THREAD] = {
                        "latest_event": (
                            await self.serializer.serialize_events(
                                [latest], user_id, device_id, depth=depth - 1
                            )
                        )[0],
                        "count": summary.count,
                        "current_user_participated": user_id is not None and (
                            ev.sender == user_id
                            or await self.store.participated(ev.short, user_id)
                        ),
                    }
            refs = await self._children_events(ev, REFERENCE, user_id)
            if refs:
                agg[REFERENCE] = {"chunk": [{"event_id": r.event_id} for r in refs]}
            if agg:
                out[ev.event_id] = agg
        return out

    async def _children_events(
        self, ev: StoredEvent, rel_type: str, user_id: str | None
    ) -> list[StoredEvent]:
        rows = await self.store.children(
            ev.short, rel_type, forward=True, boundary=None, stop=None, limit=MAX_AGGREGATED
        )
        events = [e for e in [await self.events.get_event_by_short(c.short) for c in rows] if e]
        if user_id is not None:
            events = await self.visibility.filter_events_for_user(user_id, events)
        return events

    async def _latest_edit(self, ev: StoredEvent, user_id: str | None) -> StoredEvent | None:
        edits = [e for e in await self._children_events(ev, REPLACE, user_id) if valid_edit(ev, e)]
        if not edits:
            return None
        return max(edits, key=lambda e: (e.pdu.get("origin_server_ts", 0), e.event_id))


def _inside(order: int, forward: bool, boundary: int | None, stop: int | None) -> bool:
    if forward:
        return (boundary is None or order > boundary) and (stop is None or order <= stop)
    return (boundary is None or order <= boundary) and (stop is None or order > stop)
