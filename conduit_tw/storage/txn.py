"""
L{StoreTxn}: one atomic write shared by several stores, with callbacks that
run after it committed (update caches, notify) or failed (forget ids that
were handed out for it).

Stores put their changes in C{txn.batch}; C{await txn.commit()} writes the
batch with one C{IKeyValueDatabase.write}, so a crash never leaves half of
it. Code that gives a transaction up before committing it (an error while
building several events) must call C{txn.abort()}. In-memory state (caches, counters) must change only in
C{after_commit} callbacks, or be undone in C{after_failure} ones.
"""

from __future__ import annotations

from typing import Any, Callable

from conduit_tw.storage.interfaces import IKeyValueDatabase


class StoreTxn:
    """See the module docstring."""

    __slots__ = ("db", "batch", "_before", "_after", "_failed", "data")

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.batch = db.batch()
        self._before: list[Callable[[], None]] = []
        self._after: list[Callable[[], None]] = []
        self._failed: list[Callable[[], None]] = []
        #: Scratch space for the stores taking part (keyed by their name).
        self.data: dict[str, Any] = {}

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run C{fn} synchronously just before the batch is written (last puts)."""
        if fn not in self._before:
            self._before.append(fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run C{fn} once the batch is durable."""
        self._after.append(fn)

    def after_failure(self, fn: Callable[[], None]) -> None:
        """Run C{fn} if writing the batch fails."""
        self._failed.append(fn)

    async def commit(self) -> None:
        """Write the batch atomically, then run the callbacks."""
        for fn in self._before:
            fn()
        try:
            await self.db.write(self.batch)
        except BaseException:
            self.abort()
            raise
        for fn in self._after:
            fn()

    def abort(self) -> None:
        """
        Give the transaction up without writing (an error while building
        it): run the C{after_failure} callbacks so that ids and cache
        entries made for it are forgotten. Calling it twice is harmless.
        """
        failed, self._failed = self._failed, []
        for fn in reversed(failed):
            fn()
