"""
L{LruCache}: a bounded mapping that forgets the least recently used entry
first. Explicit invalidation only (no time-based expiry); callers update or
pop entries when the underlying data changes.

Sizes follow C{conduit_cache_capacity_modifier} through L{scaled}. Every
cache is registered (weakly) so the admin room's C{server clear-caches} can
empty them all (L{clear_all}); that is safe because a cache may lose any
entry at any time (eviction) and callers read through on a miss.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


def scaled(base: int, modifier: float) -> int:
    """C{base} entries times the configured modifier (at least 1)."""
    return max(1, int(base * modifier))


#: Every live L{LruCache}, for L{clear_all}.
_ALL: "weakref.WeakSet[LruCache]" = weakref.WeakSet()


def clear_all() -> tuple[int, int]:
    """Empty every cache of this process; (caches, entries) dropped."""
    caches = list(_ALL)
    entries = sum(len(c) for c in caches)
    for cache in caches:
        cache.clear()
    return len(caches), entries


class LruCache(Generic[K, V]):
    """See the module docstring."""

    __slots__ = ("max_size", "_data", "hits", "misses", "__weakref__")

    def __init__(self, max_size: int) -> None:
        self.max_size = max(1, int(max_size))
        self._data: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0
        _ALL.add(self)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The cached value (marking it recently used), or C{default}."""
        value = self._data.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        self._data.move_to_end(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def set(self, key: K, value: V) -> None:
        """Insert or replace, evicting the oldest entries beyond C{max_size}."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        while len(data) > self.max_size:
            data.popitem(last=False)

    __setitem__ = set

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove and return an entry."""
        return self._data.pop(key, default)  # type: ignore[arg-type]

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> Iterator[K]:
        """Keys from the oldest to the most recently used."""
        return iter(list(self._data))
