"""
L{Linearizer}: run critical sections one at a time per key (e.g. per room),
in arrival order, without holding memory for idle keys.

    async with linearizer.queue(room_id):
        ...   # read-modify-write on that room

When nobody holds a key, entering costs no reactor turn (the lock's
Deferred has already fired), so the common uncontended case is cheap.
"""

from __future__ import annotations

from typing import Hashable

from twisted.internet.defer import DeferredLock


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = DeferredLock()
        self.users = 0


class _Queued:
    __slots__ = ("_linearizer", "_key", "_slot")

    def __init__(self, linearizer: "Linearizer", key: Hashable) -> None:
        self._linearizer = linearizer
        self._key = key
        self._slot: _Slot | None = None

    async def __aenter__(self) -> None:
        slots = self._linearizer._slots
        slot = slots.get(self._key)
        if slot is None:
            slot = slots[self._key] = _Slot()
        slot.users += 1
        self._slot = slot
        try:
            await slot.lock.acquire()
        except BaseException:
            self._leave(release=False)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._leave(release=True)

    def _leave(self, release: bool) -> None:
        slot = self._slot
        assert slot is not None
        self._slot = None
        slot.users -= 1
        if slot.users == 0:
            self._linearizer._slots.pop(self._key, None)
        if release:
            slot.lock.release()


class Linearizer:
    """Per-key mutual exclusion; see the module docstring."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._slots: dict[Hashable, _Slot] = {}

    def queue(self, key: Hashable) -> _Queued:
        """An async context manager holding C{key} exclusively."""
        return _Queued(self, key)

    def is_busy(self, key: Hashable) -> bool:
        """Whether someone holds or waits for C{key}."""
        return key in self._slots
