"""
Short ids: u64 numbers that stand for long strings in every other room tree
(Conduit's C{shortroomid}, C{shorteventid}, C{shortstatekey},
C{shortstatehash}), so that keys stay small and state maps are arrays of
16-byte pairs.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    roomid_shortroomid     room_id           -> u64 shortroomid
    eventid_shorteventid   event_id          -> u64 shorteventid
    shorteventid_eventid   u64               -> event_id
    statekey_shortstatekey type·state_key    -> u64 shortstatekey
    shortstatekey_statekey u64               -> type·state_key

(C{shortroomid -> room_id} lives in C{shortroomid_room}, see rooms.py.)

Keys longer than 500 bytes (possible only for IDs in old, lenient room
versions) are replaced by 0xFF + their SHA-256 (0xFF never starts UTF-8).

Ids are handed out from in-memory counters. There is no counter on disk:
each kind has a tree keyed by the id itself (C{shortroomid_room},
C{shorteventid_eventid}, C{shortstatekey_statekey},
C{shortstatehash_statediff}), written in the same batch as the id is
first used, so at start-up the counter is the last key of that tree. An id
is never reused after a crash, and one whose batch failed is just
skipped (or reused, which is equally harmless: nothing refers to it).
Mappings created in a transaction are visible to other callers at once (so
two rooms cannot give one state key two ids) and are forgotten again if
the transaction fails. A lookup that missed the cache reads storage, and
while that read is answered (a backend that answers later) another caller
may create the mapping: so after the read the cache is looked at again,
and a caller that takes a mapping whose transaction is still running
writes its records in its own batch too (the same values), so that its
data never refers to an id whose record could be lost with the other
transaction.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, u64
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache, scaled

ROOMID_SHORT = "roomid_shortroomid"
EVENTID_SHORT = "eventid_shorteventid"
SHORT_EVENTID = "shorteventid_eventid"
STATEKEY_SHORT = "statekey_shortstatekey"
SHORT_STATEKEY = "shortstatekey_statekey"

#: Each kind of id and the tree whose keys are those ids.
_ID_TREES = {
    b"room": "shortroomid_room",
    b"event": SHORT_EVENTID,
    b"statekey": SHORT_STATEKEY,
    b"statehash": "shortstatehash_statediff",
}
_MAX_KEY = 500


def fit_key(key: bytes) -> bytes:
    """C{key}, or 0xFF + SHA-256 of it when it is too long for every backend."""
    if len(key) <= _MAX_KEY:
        return key
    return SEP + hashlib.sha256(key).digest()


def statekey_bytes(event_type: str, state_key: str) -> bytes:
    """The C{type·state_key} key (before L{fit_key})."""
    return event_type.encode("utf-8") + SEP + state_key.encode("utf-8")


class ShortIds:
    """Allocates and looks up short ids; see the module docstring."""

    def __init__(self, db: IKeyValueDatabase, cache_modifier: float = 1.0) -> None:
        self.db = db
        self._id_trees = {kind: db.open_tree(name) for kind, name in _ID_TREES.items()}
        self.roomid_short = db.open_tree(ROOMID_SHORT)
        self.eventid_short = db.open_tree(EVENTID_SHORT)
        self.short_eventid = db.open_tree(SHORT_EVENTID)
        self.statekey_short = db.open_tree(STATEKEY_SHORT)
        self.short_statekey = db.open_tree(SHORT_STATEKEY)
        self._next: dict[bytes, int] = {}
        self._rooms: dict[str, int] = {}
        self._events_fwd: LruCache[str, int] = LruCache(scaled(200_000, cache_modifier))
        self._events_rev: LruCache[int, str] = LruCache(scaled(200_000, cache_modifier))
        # State keys (types x members) are hot: a large cache.
        self._sk_fwd: LruCache[tuple[str, str], int] = LruCache(scaled(500_000, cache_modifier))
        self._sk_rev: LruCache[int, tuple[str, str]] = LruCache(scaled(500_000, cache_modifier))
        #: The records of mappings whose transaction has not committed yet,
        #: by (kind, name): see the module docstring.
        self._pending: dict[tuple[bytes, object], list[tuple[str, bytes, bytes]]] = {}

    def _record(self, txn: StoreTxn, kind: bytes, name: object, records: list[tuple[str, bytes, bytes]]) -> None:
        """Put a new mapping's C{records} in C{txn}, pending until it commits."""
        for tree, key, value in records:
            txn.batch.put(tree, key, value)
        pending = self._pending
        pending[(kind, name)] = records

        def done() -> None:
            if pending.get((kind, name)) is records:
                del pending[(kind, name)]

        txn.after_commit(done)
        txn.after_failure(done)

    def _reuse(self, txn: StoreTxn, kind: bytes, name: object) -> None:
        """Another caller's mapping is taken: write its records in C{txn} too, if still pending."""
        for tree, key, value in self._pending.get((kind, name), ()):
            txn.batch.put(tree, key, value)

    async def load(self) -> None:
        """Find the last id of each kind (call once at start-up)."""
        for kind, tree in self._id_trees.items():
            rows = await tree.iter_from(b"\xff" * 8, reverse=True, limit=1)
            self._next[kind] = from_u64(rows[0][0]) if rows else 0

    # -- allocation

    def _allocate(self, kind: bytes, txn: StoreTxn) -> int:
        # The caller writes the id's own record in txn (see the docstring).
        self._next[kind] += 1
        return self._next[kind]

    def new_shortstatehash(self, txn: StoreTxn) -> int:
        """A fresh shortstatehash (written with C{txn})."""
        return self._allocate(b"statehash", txn)

    # -- rooms

    async def get_shortroomid(self, room_id: str) -> int | None:
        """The room's short id, or None if the room was never seen."""
        short = self._rooms.get(room_id)
        if short is None:
            raw = await self.roomid_short.get(fit_key(room_id.encode("utf-8")))
            if raw is None:
                # Made by another caller while the read was answered?
                return self._rooms.get(room_id)
            short = self._rooms[room_id] = from_u64(raw)
        return short

    async def get_or_create_shortroomid(self, room_id: str, txn: StoreTxn) -> tuple[int, bool]:
        """C{(short id, created)}; a new id is written with C{txn}."""
        short = await self.get_shortroomid(room_id)
        if short is not None:
            self._reuse(txn, b"room", room_id)
            return short, False
        short = self._allocate(b"room", txn)
        self._record(txn, b"room", room_id, [(ROOMID_SHORT, fit_key(room_id.encode("utf-8")), u64(short))])
        self._rooms[room_id] = short
        txn.after_failure(lambda: self._rooms.pop(room_id, None))
        return short, True

    # -- events

    async def get_shorteventid(self, event_id: str) -> int | None:
        """The event's short id, or None if the event ID was never seen."""
        short = self._events_fwd.get(event_id)
        if short is None:
            raw = await self.eventid_short.get(fit_key(event_id.encode("utf-8")))
            if raw is None:
                # Made by another caller while the read was answered?
                return self._events_fwd.get(event_id)
            short = from_u64(raw)
            self._events_fwd.set(event_id, short)
        return short

    async def get_shorteventids(self, event_ids: Iterable[str]) -> list[int | None]:
        """L{get_shorteventid} for many IDs (one batched read for the misses)."""
        ids = list(event_ids)
        out: list[int | None] = [self._events_fwd.get(e) for e in ids]
        missing = [i for i, s in enumerate(out) if s is None]
        if missing:
            raws = await self.eventid_short.get_many(
                [fit_key(ids[i].encode("utf-8")) for i in missing]
            )
            for i, raw in zip(missing, raws):
                if raw is not None:
                    out[i] = from_u64(raw)
                    self._events_fwd.set(ids[i], out[i])  # type: ignore[arg-type]
        return out

    async def get_or_create_shorteventid(self, event_id: str, txn: StoreTxn) -> tuple[int, bool]:
        """C{(short id, created)}; a new id is written with C{txn}."""
        short = await self.get_shorteventid(event_id)
        if short is not None:
            self._reuse(txn, b"event", event_id)
            return short, False
        return self.allocate_shorteventid(event_id, txn), True

    def allocate_shorteventid(self, event_id: str, txn: StoreTxn) -> int:
        """
        A new short id for an event ID known to be new (one we just built:
        its ID hashes its content, timestamp and prev_events), without
        the lookup.
        """
        short = self._allocate(b"event", txn)
        self._record(txn, b"event", event_id, [
            (EVENTID_SHORT, fit_key(event_id.encode("utf-8")), u64(short)),
            (SHORT_EVENTID, u64(short), event_id.encode("utf-8")),
        ])
        self._events_fwd.set(event_id, short)
        self._events_rev.set(short, event_id)

        def undo() -> None:
            self._events_fwd.pop(event_id)
            self._events_rev.pop(short)

        txn.after_failure(undo)
        return short

    async def get_eventid(self, short: int) -> str | None:
        """The event ID of a short id."""
        event_id = self._events_rev.get(short)
        if event_id is None:
            raw = await self.short_eventid.get(u64(short))
            if raw is None:
                return None
            event_id = raw.decode("utf-8")
            self._events_rev.set(short, event_id)
        return event_id

    async def get_eventids(self, shorts: Iterable[int]) -> list[str | None]:
        """L{get_eventid} for many short ids (one batched read for the misses)."""
        ids = list(shorts)
        out: list[str | None] = [self._events_rev.get(s) for s in ids]
        missing = [i for i, e in enumerate(out) if e is None]
        if missing:
            raws = await self.short_eventid.get_many([u64(ids[i]) for i in missing])
            for i, raw in zip(missing, raws):
                if raw is not None:
                    out[i] = raw.decode("utf-8")
                    self._events_rev.set(ids[i], out[i])  # type: ignore[arg-type]
        return out

    # -- state keys

    async def get_shortstatekey(self, event_type: str, state_key: str) -> int | None:
        """The short id of C{(type, state_key)}, or None if never used."""
        pair = (event_type, state_key)
        short = self._sk_fwd.get(pair)
        if short is None:
            raw = await self.statekey_short.get(fit_key(statekey_bytes(event_type, state_key)))
            if raw is None:
                # Made by another caller while the read was answered?
                return self._sk_fwd.get(pair)
            short = from_u64(raw)
            self._sk_fwd.set(pair, short)
            self._sk_rev.set(short, pair)
        return short

    async def get_or_create_shortstatekey(
        self, event_type: str, state_key: str, txn: StoreTxn
    ) -> int:
        """The short id of C{(type, state_key)}, allocated with C{txn} if new."""
        pair = (event_type, state_key)
        short = await self.get_shortstatekey(event_type, state_key)
        if short is not None:
            self._reuse(txn, b"statekey", pair)
            return short
        short = self._allocate(b"statekey", txn)
        raw = statekey_bytes(event_type, state_key)
        self._record(txn, b"statekey", pair, [
            (STATEKEY_SHORT, fit_key(raw), u64(short)),
            (SHORT_STATEKEY, u64(short), raw),
        ])
        self._sk_fwd.set(pair, short)
        self._sk_rev.set(short, pair)

        def undo() -> None:
            self._sk_fwd.pop(pair)
            self._sk_rev.pop(short)

        txn.after_failure(undo)
        return short

    async def get_statekey(self, short: int) -> tuple[str, str] | None:
        """C{(type, state_key)} of a shortstatekey."""
        pair = self._sk_rev.get(short)
        if pair is None:
            (pair,) = await self.get_statekeys([short])
        return pair

    async def get_statekeys(self, shorts: Iterable[int]) -> list[tuple[str, str] | None]:
        """L{get_statekey} for many (one batched read for the misses)."""
        ids = list(shorts)
        out: list[tuple[str, str] | None] = [self._sk_rev.get(s) for s in ids]
        missing = [i for i, p in enumerate(out) if p is None]
        if missing:
            raws = await self.short_statekey.get_many([u64(ids[i]) for i in missing])
            for i, raw in zip(missing, raws):
                if raw is not None:
                    t, _, sk = raw.partition(SEP)
                    pair = (t.decode("utf-8"), sk.decode("utf-8"))
                    out[i] = pair
                    self._sk_rev.set(ids[i], pair)
                    self._sk_fwd.set(pair, ids[i])
        return out

    def cached_statekey(self, short: int) -> tuple[str, str] | None:
        """The pair if it is in memory (no I/O)."""
        return self._sk_rev.get(short)
