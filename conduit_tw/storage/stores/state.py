"""
Room state as layered diffs between snapshots (Conduit's
C{shortstatehash_statediff}, with a simpler merge rule).

A state is a map C{shortstatekey -> shorteventid}. Each state has a
C{shortstatehash} and one record::

    shortstatehash_statediff  u64 shortstatehash
        -> u8 level + u64 parent + u32 n + n * (u64 shortstatekey + u64 shorteventid)
           + m * u64 shortstatekey

A level-0 record is a snapshot (parent 0): the n pairs are the whole state
and there are no removals. A level-k record (k >= 1) holds the changes
relative to its parent (level k-1 or lower): the n pairs are keys set to an
event, the m trailing keys are removed.

New states are written by L{StateStore.new_state}(parent, changes). The diff
goes on top of the parent unless that layer is full: while the new diff is
at least as large as the candidate parent's own diff (or the parent is at
L{MAX_LEVEL}), the two are merged and the diff moves one level down. This
is a binary counter over layers: a state is read with at most
C{MAX_LEVEL + 1} records, and each change rewrites O(log n) entries
amortised. When the diff reaching a snapshot is at least half the size of
the new state, a fresh snapshot is written instead (amortised <= 3 entries
per change), so big rooms never copy their whole state per event.

Records are immutable (merging writes a new record), so forks share their
ancestors, and a state hash stays valid forever.
"""

from __future__ import annotations

import struct
from typing import Iterable, Mapping

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import u64
from conduit_tw.storage.stores.short import ShortIds
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache, scaled

STATEDIFF = "shortstatehash_statediff"

#: The deepest diff layer above a snapshot.
MAX_LEVEL = 5

_HEAD = struct.Struct(">BQI")
_PAIR = struct.Struct(">QQ")
_KEY = struct.Struct(">Q")

#: An immutable-by-convention full state: shortstatekey -> shorteventid.
ShortState = dict[int, int]


class Layer:
    """One decoded record. C{diff} maps shortstatekey to shorteventid, 0 = removed."""

    __slots__ = ("level", "parent", "diff")

    def __init__(self, level: int, parent: int, diff: dict[int, int]) -> None:
        self.level = level
        self.parent = parent
        self.diff = diff

    def encode(self) -> bytes:
        """The stored form."""
        added = [(k, v) for k, v in self.diff.items() if v]
        removed = [k for k, v in self.diff.items() if not v]
        added.sort()
        removed.sort()
        parts = [_HEAD.pack(self.level, self.parent, len(added))]
        parts.extend(_PAIR.pack(k, v) for k, v in added)
        parts.extend(_KEY.pack(k) for k in removed)
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> "Layer":
        """Parse the stored form."""
        level, parent, n = _HEAD.unpack_from(raw, 0)
        off = _HEAD.size
        end = off + n * 16
        diff = dict(_PAIR.iter_unpack(raw[off:end]))
        for (k,) in _KEY.iter_unpack(raw[end:]):
            diff[k] = 0
        return cls(level, parent, diff)


class StateStore:
    """Reads and writes state records; see the module docstring."""

    def __init__(
        self, db: IKeyValueDatabase, short: ShortIds, cache_modifier: float = 1.0
    ) -> None:
        self.db = db
        self.short = short
        self.tree = db.open_tree(STATEDIFF)
        self._layers: LruCache[int, Layer] = LruCache(scaled(20_000, cache_modifier))
        self._full: LruCache[int, ShortState] = LruCache(scaled(500, cache_modifier))

    # -- reading

    async def layer(self, statehash: int) -> Layer:
        """The record of C{statehash} (KeyError if unknown)."""
        layer = self._layers.get(statehash)
        if layer is None:
            raw = await self.tree.get(u64(statehash))
            if raw is None:
                raise KeyError(f"unknown shortstatehash {statehash}")
            layer = Layer.decode(raw)
            self._layers.set(statehash, layer)
        return layer

    async def full(self, statehash: int) -> ShortState:
        """
        The whole state (cached; callers must not mutate the dict). State
        hash 0 is the empty state.
        """
        if not statehash:
            return {}
        cached = self._full.get(statehash)
        if cached is not None:
            return cached
        chain: list[Layer] = []
        base: ShortState | None = None
        cur = statehash
        while cur:
            if cur != statehash:
                base = self._full.get(cur)
                if base is not None:
                    break
            layer = await self.layer(cur)
            chain.append(layer)
            if layer.level == 0:
                break
            cur = layer.parent
        state: ShortState = dict(base) if base is not None else {}
        for layer in reversed(chain):
            for k, v in layer.diff.items():
                if v:
                    state[k] = v
                else:
                    state.pop(k, None)
        self._full.set(statehash, state)
        return state

    async def get(self, statehash: int, shortstatekey: int) -> int | None:
        """One entry of a state (shorteventid), without building the whole state."""
        if not statehash:
            return None
        full = self._full.get(statehash)
        if full is not None:
            return full.get(shortstatekey)
        cur = statehash
        while cur:
            layer = await self.layer(cur)
            v = layer.diff.get(shortstatekey)
            if v is not None:
                return v or None
            if layer.level == 0:
                return None
            cur = layer.parent
        return None

    async def get_many(self, statehash: int, shortstatekeys: Iterable[int]) -> list[int | None]:
        """L{get} for several keys."""
        return [await self.get(statehash, k) for k in shortstatekeys]

    # -- writing

    async def new_state(self, parent: int, changes: Mapping[int, int], txn: StoreTxn) -> int:
        """
        Record the state C{parent} + C{changes} (C{shortstatekey ->
        shorteventid}, 0 removes the key) in C{txn} and return its hash;
        C{parent} itself when nothing changes. C{parent} 0 is the empty
        state.
        """
        base = await self.full(parent)
        diff = {k: v for k, v in changes.items() if base.get(k, 0) != v}
        if not diff:
            return parent
        new_full = dict(base)
        for k, v in diff.items():
            if v:
                new_full[k] = v
            else:
                new_full.pop(k, None)
        cand = parent
        while True:
            if not cand:
                layer = Layer(0, 0, dict(new_full))
                break
            cl = await self.layer(cand)
            if cl.level == 0:
                if len(diff) * 2 >= len(new_full):
                    layer = Layer(0, 0, dict(new_full))
                else:
                    layer = Layer(1, cand, diff)
                break
            if cl.level >= MAX_LEVEL or len(diff) >= len(cl.diff):
                merged = dict(cl.diff)
                merged.update(diff)
                diff = merged
                cand = cl.parent
                continue
            layer = Layer(cl.level + 1, cand, diff)
            break
        statehash = self.short.new_shortstatehash(txn)
        txn.batch.put(STATEDIFF, u64(statehash), layer.encode())
        # Fresh ids are never reused, so caching before the commit is safe.
        self._layers.set(statehash, layer)
        self._full.set(statehash, new_full)
        return statehash

    async def save_full(self, state: Mapping[int, int], txn: StoreTxn, base: int = 0) -> int:
        """
        Record an arbitrary full state (e.g. the result of state
        resolution) as changes against the state C{base} (which should be
        close to it, e.g. the state of one prev_event).
        """
        base_full = await self.full(base)
        changes = dict(state)
        for k in base_full:
            if k not in state:
                changes[k] = 0
        return await self.new_state(base, changes, txn)
