"""
Read receipts (modules/receipts.md), indexed for /sync and for unread
notification counts.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    roomreceipt     u64 shortroomid + u64 stream position
        -> compact JSON [user_id, receipt_type, event_id, thread_id|null, ts]
    userreceipt     user_id·u64 shortroomid + receipt_type·thread
        -> u64 stream position + u64 event order + event_id

- C{roomreceipt} holds exactly one entry per live receipt (user, type,
  thread): writing a receipt deletes the entry at its previous position
  in the same batch. "Receipts of room R since position X" is one range
  scan; an initial sync scans the room's prefix (one entry per member,
  type and thread).
- C{userreceipt} is a user's latest receipt per room, type and thread
  (C{thread} is empty for unthreaded receipts, C{main} or a thread root
  event ID otherwise); the order of the receipted event tells how far the
  user has read (notification counts). The internal type C{_sent} (never
  in C{roomreceipt}, so never shown) records the user's own latest event
  per thread, which also marks everything before it as read
  (push.md "Marking notifications as read": "by using the API or by
  sending an event").
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, prefix_end, u64
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache, scaled

ROOM_RECEIPTS = "roomreceipt"
USER_RECEIPTS = "userreceipt"

#: Internal receipt type: the user's own latest event (see the module docstring).
SENT = "_sent"

_POS_ORDER = struct.Struct(">QQ")


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt as clients see it."""

    user_id: str
    receipt_type: str
    event_id: str
    thread_id: str | None
    ts: int
    position: int = 0


@dataclass(frozen=True, slots=True)
class UserReceipt:
    """A user's latest receipt of one type and thread in a room."""

    receipt_type: str
    thread_id: str | None
    position: int
    order: int
    event_id: str


def _user_prefix(user_id: str, shortroomid: int) -> bytes:
    return user_id.encode("utf-8") + SEP + u64(shortroomid)


def _user_key(user_id: str, shortroomid: int, receipt_type: str, thread_id: str | None) -> bytes:
    return (
        _user_prefix(user_id, shortroomid)
        + receipt_type.encode("utf-8") + SEP + (thread_id or "").encode("utf-8")
    )


class ReceiptStore:
    """See the module docstring."""

    def __init__(
        self, db: IKeyValueDatabase, globals_: GlobalsStore, cache_modifier: float = 1.0
    ) -> None:
        self.db = db
        self.globals = globals_
        self.room_tree = db.open_tree(ROOM_RECEIPTS)
        self.user_tree = db.open_tree(USER_RECEIPTS)
        #: shortroomid -> stream position of the room's newest receipt.
        self._room_last: LruCache[int, int] = LruCache(scaled(100_000, cache_modifier))
        #: (user, shortroomid) -> the user's receipts in the room.
        self._user: LruCache[tuple[str, int], tuple[UserReceipt, ...]] = LruCache(
            scaled(100_000, cache_modifier)
        )

    # -- reading

    async def room_last_position(self, shortroomid: int) -> int:
        """The stream position of the room's newest receipt (0: none)."""
        last = self._room_last.get(shortroomid)
        if last is None:
            prefix = u64(shortroomid)
            rows = await self.room_tree.scan_prefix(prefix, reverse=True, limit=1)
            last = from_u64(rows[0][0][8:]) if rows else 0
            self._room_last.set(shortroomid, last)
        return last

    async def room_receipts(
        self, shortroomid: int, since: int = 0, to: int | None = None
    ) -> list[Receipt]:
        """The room's receipts with a position in C{(since, to]}, oldest first."""
        prefix = u64(shortroomid)
        end = prefix + u64(to + 1) if to is not None else prefix_end(prefix)
        rows = await self.room_tree.iter_range(prefix + u64(since + 1), end)
        out = []
        for k, v in rows:
            user, rtype, event_id, thread, ts = json.loads(v)
            out.append(Receipt(user, rtype, event_id, thread, ts, from_u64(k[8:])))
        return out

    async def user_receipts(self, user_id: str, shortroomid: int) -> tuple[UserReceipt, ...]:
        """The user's latest receipts in a room (every type and thread)."""
        key = (user_id, shortroomid)
        cached = self._user.get(key)
        if cached is not None:
            return cached
        prefix = _user_prefix(user_id, shortroomid)
        rows = await self.user_tree.scan_prefix(prefix)
        out = []
        for k, v in rows:
            rtype, _, thread = k[len(prefix):].partition(SEP)
            pos, order = _POS_ORDER.unpack_from(v)
            out.append(
                UserReceipt(
                    rtype.decode("utf-8"), thread.decode("utf-8") or None, pos, order,
                    v[16:].decode("utf-8"),
                )
            )
        result = tuple(out)
        self._user.set(key, result)
        return result

    # -- writing

    async def add(
        self,
        shortroomid: int,
        user_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
        ts: int,
        order: int,
        old: UserReceipt | None,
    ) -> int:
        """
        Store a client's receipt at a new stream position, replacing
        C{old}, in one commit with the stream counter; returns the position.
        """
        txn = StoreTxn(self.db)
        position = await self.globals.reserve_position(txn)
        try:
            receipt = Receipt(user_id, receipt_type, event_id, thread_id, ts, position)
            self.put(txn, shortroomid, receipt, order, old)
            self.globals.put_position_on_commit(txn)
        except BaseException:
            txn.abort()  # releases the position
            raise
        await txn.commit()
        return position

    def put(
        self,
        txn: StoreTxn,
        shortroomid: int,
        receipt: Receipt,
        order: int,
        old: UserReceipt | None,
        public: bool = True,
    ) -> None:
        """
        Record a receipt at C{receipt.position} in C{txn}, replacing
        C{old} (the user's previous one of that type and thread).
        C{public=False} keeps it out of the room index (internal types).
        """
        prefix = u64(shortroomid)
        if public:
            if old is not None and old.position:
                txn.batch.delete(ROOM_RECEIPTS, prefix + u64(old.position))
            txn.batch.put(
                ROOM_RECEIPTS,
                prefix + u64(receipt.position),
                json.dumps(
                    [receipt.user_id, receipt.receipt_type, receipt.event_id, receipt.thread_id,
                     receipt.ts],
                    separators=(",", ":"), ensure_ascii=False,
                ).encode("utf-8"),
            )
        txn.batch.put(
            USER_RECEIPTS,
            _user_key(receipt.user_id, shortroomid, receipt.receipt_type, receipt.thread_id),
            _POS_ORDER.pack(receipt.position, order) + receipt.event_id.encode("utf-8"),
        )
        key = (receipt.user_id, shortroomid)
        new = UserReceipt(
            receipt.receipt_type, receipt.thread_id, receipt.position, order, receipt.event_id
        )

        def done() -> None:
            if public and receipt.position > (self._room_last.get(shortroomid) or 0):
                self._room_last.set(shortroomid, receipt.position)
            cached = self._user.get(key)
            if cached is not None:
                kept = tuple(
                    r for r in cached
                    if (r.receipt_type, r.thread_id) != (new.receipt_type, new.thread_id)
                )
                self._user.set(key, kept + (new,))

        txn.after_commit(done)


def receipt_content(receipts: list[Receipt]) -> dict[str, Any]:
    """The C{m.receipt} content for receipts: event_id -> type -> user -> data."""
    content: dict[str, Any] = {}
    for r in receipts:
        data: dict[str, Any] = {"ts": r.ts}
        if r.thread_id is not None:
            data["thread_id"] = r.thread_id
        content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
    return content
