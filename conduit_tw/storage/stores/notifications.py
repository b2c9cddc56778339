"""
Notifications: the events that push rules said notify a user
(modules/push.md), kept for unread counts in /sync and for
C{GET /notifications}.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    usernotif         user_id·u64 shortroomid + u64 event order
        -> u8 flags (1: highlight) + thread root event ID (empty: main timeline)
    usernotif_stream  user_id·u64 stream position
        -> u64 shortroomid + u64 shorteventid + u64 order + u8 flags + JSON actions

- C{usernotif}: a user's notifications per room in timeline order, so
  "unread in room R" is one range scan from the user's read-up-to order
  (receipts.py); the scan is as long as the unread notifications.
- C{usernotif_stream}: the same notifications in stream order across
  rooms for C{GET /notifications} (newest first, C{from} is a position).

All notifications of one event are written in one batch. Nothing is
pruned yet: two small entries per notified member and event.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, prefix_end, u64, from_u64

BY_ROOM = "usernotif"
BY_STREAM = "usernotif_stream"

HIGHLIGHT = 1

_STREAM = struct.Struct(">QQQB")


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of C{usernotif_stream}."""

    position: int
    shortroomid: int
    shorteventid: int
    order: int
    highlight: bool
    actions: list[Any]


class NotificationStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.by_room = db.open_tree(BY_ROOM)
        self.by_stream = db.open_tree(BY_STREAM)

    def add(
        self,
        txn: Any,
        user_id: str,
        shortroomid: int,
        shorteventid: int,
        order: int,
        position: int,
        highlight: bool,
        thread: str | None,
        actions: Iterable[Any],
    ) -> None:
        """Add one notification to the L{StoreTxn} C{txn} (written when it commits)."""
        user = user_id.encode("utf-8") + SEP
        flags = HIGHLIGHT if highlight else 0
        txn.batch.put(
            BY_ROOM,
            user + u64(shortroomid) + u64(order),
            bytes((flags,)) + (thread or "").encode("utf-8"),
        )
        txn.batch.put(
            BY_STREAM,
            user + u64(position),
            _STREAM.pack(shortroomid, shorteventid, order, flags)
            + json.dumps(list(actions), separators=(",", ":")).encode("utf-8"),
        )

    async def room_after(
        self, user_id: str, shortroomid: int, after_order: int
    ) -> list[tuple[int, bool, str | None]]:
        """The user's notifications in a room after C{after_order}: C{(order, highlight, thread)}."""
        prefix = user_id.encode("utf-8") + SEP + u64(shortroomid)
        rows = await self.by_room.iter_range(prefix + u64(after_order + 1), prefix_end(prefix))
        return [
            (from_u64(k[-8:]), bool(v[0] & HIGHLIGHT), v[1:].decode("utf-8") or None)
            for k, v in rows
        ]

    async def list(
        self, user_id: str, before: int | None, limit: int
    ) -> list[Notification]:
        """The user's notifications at positions below C{before}, newest first."""
        prefix = user_id.encode("utf-8") + SEP
        end = prefix + u64(before) if before is not None else prefix_end(prefix)
        rows = await self.by_stream.iter_range(prefix, end, reverse=True, limit=limit)
        out = []
        for k, v in rows:
            room, event, order, flags = _STREAM.unpack_from(v)
            out.append(
                Notification(
                    from_u64(k[len(prefix):]), room, event, order, bool(flags & HIGHLIGHT),
                    json.loads(v[_STREAM.size:]),
                )
            )
        return out
