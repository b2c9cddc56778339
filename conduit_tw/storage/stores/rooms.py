"""
Rooms: their version, their head (current state, depth, stream position,
member counts) and forward extremities, plus client transaction IDs.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    shortroomid_room     u64 shortroomid     -> compact JSON {"room_id", "version"}
    roomhead             u64 shortroomid     -> 6 x u64: current shortstatehash,
                                                max depth, last stream position,
                                                joined count, invited count,
                                                number of backfilled events
    roomextremities      u64 shortroomid + event_id -> b""   (forward extremities)
    txnid_eventid        sha256(kind·user_id·device·txn_id) -> event_id
    txnid_bytime         u64 origin_server_ts + sha256(...) -> b""  (expiry.py)

(C{room_id -> shortroomid} is C{roomid_shortroomid} in short.py.) A room
"exists here" when it has a head with a non-zero state: rooms known only
through outliers (e.g. a remote invite) have a short id and an info record
but no head.

Transaction IDs are client-chosen strings of any length, so their key is a
hash; the mapping is written in the same batch as the event, so a retry
after a crash or restart finds it. They are forgotten after a day
(L{RoomStore.purge_txns}, by the periodic housekeeping).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field, replace

from conduit_tw.events.room_versions import RoomVersion, get_room_version
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, u64
from conduit_tw.storage.stores.expiry import index_key, purge_before
from conduit_tw.storage.stores.short import ShortIds
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache, scaled

ROOM_INFO = "shortroomid_room"
HEAD = "roomhead"
EXTREMITIES = "roomextremities"
TXNIDS = "txnid_eventid"
TXNIDS_BY_TIME = "txnid_bytime"

_HEAD = struct.Struct(">6Q")


@dataclass(frozen=True)
class RoomInfo:
    """What never changes about a room."""

    room_id: str
    short: int
    version: RoomVersion


@dataclass(frozen=True)
class RoomHead:
    """
    The mutable summary of a room, replaced (not mutated) on every write.

    @ivar statehash: the current state (0: we have no state for the room).
    @ivar depth: the largest depth of the room's timeline events.
    @ivar last_position: the stream position of the newest timeline event.
    @ivar extremities: the forward extremities (event IDs).
    """

    statehash: int = 0
    depth: int = 0
    last_position: int = 0
    joined: int = 0
    invited: int = 0
    backfilled: int = 0
    extremities: frozenset[str] = field(default_factory=frozenset)

    def encode(self) -> bytes:
        """The stored form (without the extremities, which have their own tree)."""
        return _HEAD.pack(
            self.statehash, self.depth, self.last_position, self.joined, self.invited,
            self.backfilled,
        )

    def evolve(self, **changes: object) -> "RoomHead":
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def txn_key(kind: str, user_id: str, device_id: str | None, txn_id: str) -> bytes:
    """The C{txnid_eventid} key of a client transaction."""
    raw = SEP.join(
        s.encode("utf-8") for s in (kind, user_id, device_id or "", txn_id)
    )
    return hashlib.sha256(raw).digest()


class RoomStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase, short: ShortIds, cache_modifier: float = 1.0) -> None:
        self.db = db
        self.short = short
        self.info_tree = db.open_tree(ROOM_INFO)
        self.head_tree = db.open_tree(HEAD)
        self.extremities_tree = db.open_tree(EXTREMITIES)
        self.txn_tree = db.open_tree(TXNIDS)
        self.txn_by_time = db.open_tree(TXNIDS_BY_TIME)
        # What never changes about a room, for the rooms in use: bounded, so
        # rooms idle since they were last read are not held (re-read on a miss).
        self._by_id: LruCache[str, RoomInfo] = LruCache(scaled(10_000, cache_modifier))
        self._by_short: LruCache[int, RoomInfo] = LruCache(scaled(10_000, cache_modifier))
        self._heads: LruCache[int, RoomHead] = LruCache(scaled(10_000, cache_modifier))

    # -- room info

    async def get_room(self, room_id: str) -> RoomInfo | None:
        """The room's info, or None if this server never heard of it."""
        info = self._by_id.get(room_id)
        if info is not None:
            return info
        short = await self.short.get_shortroomid(room_id)
        if short is None:
            return None
        return await self.get_room_by_short(short)

    async def get_room_by_short(self, short: int) -> RoomInfo | None:
        """The info of a shortroomid."""
        info = self._by_short.get(short)
        if info is not None:
            return info
        raw = await self.info_tree.get(u64(short))
        if raw is None:
            return None
        data = json.loads(raw)
        info = RoomInfo(data["room_id"], short, get_room_version(data["version"]))
        self._by_id[info.room_id] = info
        self._by_short[short] = info
        return info

    def cached_room_by_short(self, short: int) -> RoomInfo | None:
        """The info if it is in memory."""
        return self._by_short.get(short)

    async def add_room(self, room_id: str, version: RoomVersion, txn: StoreTxn) -> RoomInfo:
        """Get or record a room (its short id and version) in C{txn}."""
        existing = await self.get_room(room_id)
        if existing is not None:
            return existing
        short, _ = await self.short.get_or_create_shortroomid(room_id, txn)
        info = RoomInfo(room_id, short, version)
        data = {"room_id": room_id, "version": version.identifier}
        txn.batch.put(ROOM_INFO, u64(short), json.dumps(data, separators=(",", ":")).encode())
        self._by_id[room_id] = info
        self._by_short[short] = info

        def undo() -> None:
            self._by_id.pop(room_id, None)
            self._by_short.pop(short, None)

        txn.after_failure(undo)
        return info

    async def all_rooms(self) -> list[RoomInfo]:
        """Every room this server knows (with or without state)."""
        rows = await self.info_tree.iter_from(b"\x00")
        out = []
        for k, _ in rows:
            info = await self.get_room_by_short(from_u64(k))
            if info is not None:
                out.append(info)
        return out

    # -- heads

    async def get_head(self, short: int) -> RoomHead:
        """The room's head (an empty one for rooms without state)."""
        head = self._heads.get(short)
        if head is not None:
            return head
        raw = await self.head_tree.get(u64(short))
        if raw is None:
            head = RoomHead()
        else:
            values = _HEAD.unpack(raw[: _HEAD.size])
            prefix = u64(short)
            rows = await self.extremities_tree.scan_prefix(prefix)
            extremities = frozenset(k[len(prefix):].decode("utf-8") for k, _ in rows)
            head = RoomHead(*values, extremities=extremities)
        self._heads.set(short, head)
        return head

    def put_head(self, txn: StoreTxn, short: int, old: RoomHead, new: RoomHead) -> None:
        """Write C{new} in C{txn}; the cache follows once it is applied."""
        txn.batch.put(HEAD, u64(short), new.encode())
        prefix = u64(short)
        for e in old.extremities - new.extremities:
            txn.batch.delete(EXTREMITIES, prefix + e.encode("utf-8"))
        for e in new.extremities - old.extremities:
            txn.batch.put(EXTREMITIES, prefix + e.encode("utf-8"), b"")

    def cache_head(self, short: int, head: RoomHead) -> None:
        """Remember a head written by an applied transaction."""
        self._heads.set(short, head)

    # -- transaction IDs

    async def get_txn_event(self, key: bytes) -> str | None:
        """The event ID recorded for a client transaction key."""
        raw = await self.txn_tree.get(key)
        return raw.decode("utf-8") if raw is not None else None

    def put_txn_event(self, txn: StoreTxn, key: bytes, event_id: str, ts_ms: int) -> None:
        """Record a client transaction (made at C{ts_ms}) in C{txn}."""
        txn.batch.put(TXNIDS, key, event_id.encode("utf-8"))
        txn.batch.put(TXNIDS_BY_TIME, index_key(ts_ms, key), b"")

    async def purge_txns(self, before_ms: int) -> int:
        """Forget the client transactions made before C{before_ms}; returns how many."""
        return await purge_before(self.db, self.txn_by_time, TXNIDS_BY_TIME, TXNIDS, before_ms)
