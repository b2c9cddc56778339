"""
Notifications: the events that push rules said notify a user
(modules/push.md), kept for unread counts in /sync and for
C{GET /notifications}.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    usernotif         user_id·u64 shortroomid + u64 event order
        -> u8 flags + [u8 actions code + (JSON actions if code is 255)] + thread root
    usernotif_stream  user_id·u64 stream position
        -> u64 shortroomid + u64 shorteventid + u64 order + u8 flags + JSON actions

Flags: L{HIGHLIGHT}, L{INLINE} (the actions are in the row). The actions
code indexes L{COMMON_ACTIONS} (what the default rules give); 255 means
their JSON follows, with a u16 length. The thread root is an event ID
(empty: main timeline).

- C{usernotif}: a user's notifications per room in timeline order, so
  "unread in room R" is one range scan from the user's read-up-to order
  (receipts.py); the scan is as long as the unread notifications. Live
  events (all but invites to rooms of other servers) are recorded here
  only: one row per notified member and event. C{GET /notifications}
  walks it newest first across the user's rooms (a skip scan finds them);
  a live event's stream position is its order minus C{LIVE_BASE}.
- C{usernotif_stream}: notifications of events outside the timeline
  (order 0), and those written before the actions moved into
  C{usernotif} (rows without L{INLINE}, whose C{usernotif_stream} twin
  is the one listed), in stream order.

All notifications of one event are written in one batch. Nothing is
pruned yet.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, prefix_end, u64, from_u64
from conduit_tw.storage.stores.timeline import LIVE_BASE

BY_ROOM = "usernotif"
BY_STREAM = "usernotif_stream"

HIGHLIGHT = 1
INLINE = 2

#: Actions stored as one byte (push_rules_default.py); others as JSON.
COMMON_ACTIONS: tuple[bytes, ...] = tuple(
    json.dumps(a, separators=(",", ":")).encode("utf-8") for a in (
        ["notify"],
        ["notify", {"set_tweak": "sound", "value": "default"}],
        ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}],
        ["notify", {"set_tweak": "highlight"}],
        ["notify", {"set_tweak": "sound", "value": "ring"}, {"set_tweak": "highlight", "value": False}],
        ["notify", {"set_tweak": "highlight", "value": False}],
    )
)
_CODES = {a: i for i, a in enumerate(COMMON_ACTIONS)}
_JSON_ACTIONS = 255

#: Most encoded action lists L{NotificationStore} remembers.
_ENCODED_MAX = 4096

_STREAM = struct.Struct(">QQQB")
_U16 = struct.Struct(">H")


def _encode_actions(actions: Iterable[Any]) -> bytes:
    raw = json.dumps(list(actions), separators=(",", ":")).encode("utf-8")
    code = _CODES.get(raw)
    if code is not None:
        return bytes((code,))
    return bytes((_JSON_ACTIONS,)) + _U16.pack(len(raw)) + raw


def _decode_row(v: bytes) -> tuple[int, bytes | None, str | None]:
    """A C{usernotif} value: C{(flags, encoded actions or None, thread)}."""
    flags = v[0]
    rest = 1
    actions = None
    if flags & INLINE:
        code = v[1]
        if code == _JSON_ACTIONS:
            (n,) = _U16.unpack_from(v, 2)
            actions = v[4:4 + n]
            rest = 4 + n
        else:
            actions = COMMON_ACTIONS[code]
            rest = 2
    return flags, actions, v[rest:].decode("utf-8") or None


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of C{usernotif_stream}."""

    position: int
    shortroomid: int
    #: None when the event is to be found by room and order (timeline.py).
    shorteventid: int | None
    order: int
    highlight: bool
    actions: list[Any]


class NotificationStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.by_room = db.open_tree(BY_ROOM)
        self.by_stream = db.open_tree(BY_STREAM)
        #: id(actions) -> (actions, encoded): a rule's actions are one
        #: tuple for as long as its compiled ruleset lives, so each is
        #: encoded once, not once per recipient and event. The entry holds
        #: the tuple, so its id cannot be reused while it is cached.
        self._encoded: dict[int, tuple[Any, bytes]] = {}

    def _encode_actions(self, actions: Iterable[Any]) -> bytes:
        """C{_encode_actions}, memoised for immutable tuples (compiled rules' actions)."""
        if type(actions) is not tuple:
            return _encode_actions(actions)
        cached = self._encoded.get(id(actions))
        if cached is not None and cached[0] is actions:
            return cached[1]
        encoded = _encode_actions(actions)
        if len(self._encoded) >= _ENCODED_MAX:
            self._encoded.clear()
        self._encoded[id(actions)] = (actions, encoded)
        return encoded

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
        thread_bytes = (thread or "").encode("utf-8")
        if order:
            txn.batch.put(
                BY_ROOM,
                user + u64(shortroomid) + u64(order),
                bytes((flags | INLINE,)) + self._encode_actions(actions) + thread_bytes,
            )
            return
        txn.batch.put(BY_ROOM, user + u64(shortroomid) + u64(order), bytes((flags,)) + thread_bytes)
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
        out = []
        for k, v in rows:
            flags, _, thread = _decode_row(v)
            out.append((from_u64(k[-8:]), bool(flags & HIGHLIGHT), thread))
        return out

    async def list(
        self, user_id: str, before: int | None, limit: int
    ) -> list[Notification]:
        """The user's notifications at positions below C{before}, newest first."""
        prefix = user_id.encode("utf-8") + SEP
        out: list[Notification] = []
        # Live events: the newest of each room with notifications.
        start = prefix
        while True:
            first = await self.by_room.iter_range(start, prefix_end(prefix), limit=1)
            if not first:
                break
            room = from_u64(first[0][0][len(prefix):len(prefix) + 8])
            start = prefix + u64(room + 1)
            room_prefix = prefix + u64(room)
            end = (
                room_prefix + u64(LIVE_BASE + before) if before is not None
                else prefix_end(room_prefix)
            )
            rows = await self.by_room.iter_range(room_prefix, end, reverse=True, limit=limit)
            for k, v in rows:
                flags, actions, _ = _decode_row(v)
                order = from_u64(k[-8:])
                if actions is None or order <= LIVE_BASE:
                    # Older rows are all listed from usernotif_stream.
                    break
                out.append(Notification(
                    order - LIVE_BASE, room, None, order, bool(flags & HIGHLIGHT),
                    json.loads(actions),
                ))
        # Outside the timeline, and rows from before the actions moved.
        end = prefix + u64(before) if before is not None else prefix_end(prefix)
        rows = await self.by_stream.iter_range(prefix, end, reverse=True, limit=limit)
        for k, v in rows:
            room, event, order, flags = _STREAM.unpack_from(v)
            out.append(
                Notification(
                    from_u64(k[len(prefix):]), room, event, order, bool(flags & HIGHLIGHT),
                    json.loads(v[_STREAM.size:]),
                )
            )
        out.sort(key=lambda n: n.position, reverse=True)
        return out[:limit]
