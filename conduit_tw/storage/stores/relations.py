"""
Event relationships (client-server-api "Forming relationships between
events") and threads (modules/threading.md), indexed when the child event
is persisted, so /relations, /threads and the bundled aggregations read
ranges, never the timeline.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    relations          u64 parent shorteventid + u64 child order
        -> u64 child shorteventid + rel_type·event_type
    relations_type     u64 parent shorteventid + rel_type·u64 child order
        -> u64 child shorteventid + event_type
    threadroots        u64 shortroomid + u64 latest order + u64 root shorteventid
        -> empty
    thread_summary     u64 root shorteventid
        -> u64 latest order + u64 latest shorteventid + u64 count
    threadparticipant  u64 root shorteventid + user_id
        -> empty

- C{relations} lists every child of an event in timeline order (the
  "topological" order of /relations); C{relations_type} the same per
  relation type, so one type is one range even when the event has many
  children of other types (reactions).
- C{threadroots} orders a room's threads by their latest activity: each
  new reply moves the root's entry (the old key is deleted in the same
  batch); C{thread_summary} holds the latest reply and the reply count
  for the m.thread aggregation; C{threadparticipant} who replied.
- Only live timeline events are indexed (what /sync and /messages serve:
  local events and federation's new events go through the same persist
  hooks). A redacted child leaves the indexes with its redaction.

Relation types or event types too long for a key (over
L{MAX_NAME_BYTES}) are not indexed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, prefix_end, u64
from conduit_tw.storage.txn import StoreTxn

RELATIONS = "relations"
RELATIONS_TYPE = "relations_type"
THREAD_ROOTS = "threadroots"
THREAD_SUMMARY = "thread_summary"
THREAD_PARTICIPANTS = "threadparticipant"

#: Longest rel_type or event type indexed.
MAX_NAME_BYTES = 200

_SUMMARY = struct.Struct(">QQQ")


@dataclass(frozen=True, slots=True)
class Child:
    """One indexed child event."""

    short: int
    order: int
    rel_type: str
    event_type: str


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A thread root's latest reply and reply count."""

    latest_order: int
    latest_short: int
    count: int


def indexable(name: str) -> bool:
    """Whether a rel_type or event type fits in the index keys."""
    return 0 < len(name.encode("utf-8")) <= MAX_NAME_BYTES and "\xff" not in name


class RelationStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.relations = db.open_tree(RELATIONS)
        self.by_type = db.open_tree(RELATIONS_TYPE)
        self.roots = db.open_tree(THREAD_ROOTS)
        self.summaries = db.open_tree(THREAD_SUMMARY)
        self.participants = db.open_tree(THREAD_PARTICIPANTS)

    # -- reading

    async def children(
        self,
        parent: int,
        rel_type: str | None,
        *,
        forward: bool,
        boundary: int | None,
        stop: int | None,
        limit: int,
    ) -> list[Child]:
        """
        Children of C{parent} (only C{rel_type} if given) in timeline
        order (oldest first if C{forward}), strictly after (forward) or
        at or before (backward) order C{boundary} and not past C{stop},
        at most C{limit}.
        """
        if rel_type is not None:
            if not indexable(rel_type):
                return []
            prefix = u64(parent) + rel_type.encode("utf-8") + SEP
            tree = self.by_type
        else:
            prefix = u64(parent)
            tree = self.relations
        low, high = prefix, prefix_end(prefix)
        if forward:
            if boundary is not None:
                low = prefix + u64(boundary + 1)
            if stop is not None:
                high = prefix + u64(stop + 1)
        else:
            if boundary is not None:
                high = prefix + u64(boundary + 1)
            if stop is not None:
                low = prefix + u64(stop + 1)
        rows = await tree.iter_range(low, high, reverse=not forward, limit=limit)
        out = []
        for key, value in rows:
            order = from_u64(key[-8:])
            short = from_u64(value[:8])
            if rel_type is not None:
                out.append(Child(short, order, rel_type, value[8:].decode("utf-8")))
            else:
                rt, _, et = value[8:].partition(SEP)
                out.append(Child(short, order, rt.decode("utf-8"), et.decode("utf-8")))
        return out

    async def thread_summary(self, root: int) -> ThreadSummary | None:
        """The thread's summary, or None if C{root} has no indexed reply."""
        raw = await self.summaries.get(u64(root))
        return ThreadSummary(*_SUMMARY.unpack(raw)) if raw is not None else None

    async def participated(self, root: int, user_id: str) -> bool:
        """Whether C{user_id} replied in the thread of C{root}."""
        return await self.participants.get(u64(root) + user_id.encode("utf-8")) is not None

    async def threads(
        self, shortroomid: int, before: int | None, limit: int
    ) -> list[tuple[int, int]]:
        """
        The room's thread roots by latest activity, newest first:
        C{(latest order, root short)}, only those whose latest activity is
        before order C{before} if given.
        """
        prefix = u64(shortroomid)
        high = prefix + u64(before) if before is not None else prefix_end(prefix)
        rows = await self.roots.iter_range(prefix, high, reverse=True, limit=limit)
        return [(from_u64(k[8:16]), from_u64(k[16:24])) for k, _ in rows]

    # -- writing (in the persisting event's transaction)

    def add_child(self, txn: StoreTxn, parent: int, child: Child) -> None:
        """Index C{child} under C{parent}."""
        rt, et = child.rel_type.encode("utf-8"), child.event_type.encode("utf-8")
        txn.batch.put(
            RELATIONS, u64(parent) + u64(child.order), u64(child.short) + rt + SEP + et
        )
        txn.batch.put(
            RELATIONS_TYPE, u64(parent) + rt + SEP + u64(child.order), u64(child.short) + et
        )

    def remove_child(self, txn: StoreTxn, parent: int, child: Child) -> None:
        """Drop C{child} from C{parent}'s indexes (its redaction)."""
        txn.batch.delete(RELATIONS, u64(parent) + u64(child.order))
        txn.batch.delete(
            RELATIONS_TYPE,
            u64(parent) + child.rel_type.encode("utf-8") + SEP + u64(child.order),
        )

    def put_thread(
        self,
        txn: StoreTxn,
        shortroomid: int,
        root: int,
        old: ThreadSummary | None,
        new: ThreadSummary | None,
    ) -> None:
        """Replace a thread's summary and its place in the room's thread list."""
        if old is not None:
            txn.batch.delete(THREAD_ROOTS, u64(shortroomid) + u64(old.latest_order) + u64(root))
        if new is None:
            txn.batch.delete(THREAD_SUMMARY, u64(root))
            return
        txn.batch.put(THREAD_ROOTS, u64(shortroomid) + u64(new.latest_order) + u64(root), b"")
        txn.batch.put(
            THREAD_SUMMARY, u64(root), _SUMMARY.pack(new.latest_order, new.latest_short, new.count)
        )

    def add_participant(self, txn: StoreTxn, root: int, user_id: str) -> None:
        """Record that C{user_id} replied in the thread of C{root}."""
        txn.batch.put(THREAD_PARTICIPANTS, u64(root) + user_id.encode("utf-8"), b"")
