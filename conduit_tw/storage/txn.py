"""
L{StoreTxn}: one atomic write shared by several stores, with callbacks that
run once it is applied (update caches), once it is durable (notify,
acknowledge) or if it failed (forget ids that were handed out for it).

Stores put their changes in C{txn.batch}. C{await txn.commit()} writes the
batch with one C{IKeyValueDatabase.write}, so a crash never leaves half of
it, and returns once it is durable. Code that gives a transaction up before
committing it (an error while building several events) must call
C{txn.abort()}.

Writers that serialise on a lock (the per-room linearizer) split the two
steps, so that the lock is not held during the commit (an fsync, shared
by every write of the reactor turn with SQLite's group commit)::

    async with lock:
        ...                              # build, put changes in txn.batch
        durable = await txn.apply()      # applied: visible to reads, caches updated
    await durable                        # durable: now acknowledge, notify

The next holder of the lock may build on the applied changes: writes
become durable in the order they were applied, so a crash loses a suffix
of them, never a prefix, and never anything acknowledged.

In-memory state (caches, counters) must change only in C{on_applied}
callbacks (state that later writers read, e.g. the room head) or
C{after_commit} ones (whatever tells the outside world: notifier, pushes,
invalidations that may wait), or be undone in C{after_failure} ones.
"""

from __future__ import annotations

from typing import Any, Callable, Generator

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from conduit_tw.storage.interfaces import IKeyValueDatabase


class Durability:
    """
    The outcome of an applied L{StoreTxn}: C{await durability} (or
    L{wait}) returns once the batch is durable and its C{after_commit}
    callbacks ran, or raises if its commit failed. Any number of waiters;
    cancelling one (a client went away) only stops that waiter, never the
    transaction's own callbacks.
    """

    __slots__ = ("done", "_result", "_waiters")

    def __init__(self, d: Deferred[None]) -> None:
        #: Whether the outcome is known.
        self.done = False
        self._result: Any = None
        self._waiters: list[Deferred[None]] = []
        d.addBoth(self._fire)

    def _fire(self, result: Any) -> None:
        self.done = True
        self._result = result
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.called:  # a cancelled waiter has fired already
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(None)
        # The failure is the waiters' (and logged by the backend): consumed.

    def wait(self) -> Deferred[None]:
        """A new Deferred firing with the outcome."""
        if self.done:
            result = self._result
            return fail(result) if isinstance(result, Failure) else succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def __await__(self) -> Generator[Any, None, None]:
        return self.wait().__await__()


class StoreTxn:
    """See the module docstring."""

    __slots__ = ("db", "batch", "_before", "_applied", "_after", "_failed", "data")

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.batch = db.batch()
        self._before: list[Callable[[], None]] = []
        self._applied: list[Callable[[], None]] = []
        self._after: list[Callable[[], None]] = []
        self._failed: list[Callable[[], None]] = []
        #: Scratch space for the stores taking part (keyed by their name).
        self.data: dict[str, Any] = {}

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run C{fn} synchronously just before the batch is written (last puts)."""
        if fn not in self._before:
            self._before.append(fn)

    def on_applied(self, fn: Callable[[], None]) -> None:
        """
        Run C{fn} once the batch is applied (visible to reads on the
        database, maybe not durable yet): caches later writers rely on.
        """
        self._applied.append(fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run C{fn} once the batch is durable."""
        self._after.append(fn)

    def after_failure(self, fn: Callable[[], None]) -> None:
        """Run C{fn} if writing the batch fails."""
        self._failed.append(fn)

    async def commit(self) -> None:
        """Write the batch atomically and wait until it is durable."""
        await (await self.apply())

    async def apply(self) -> Durability:
        """
        Write the batch atomically; return once it is applied (the
        C{on_applied} callbacks have run), with a L{Durability} to await
        for the moment it is durable (after the C{after_commit} callbacks
        ran).

        With a backend whose writes are visible before they are durable
        (C{writes_visible_at_once}, SQLite) or that answers at once (LMDB),
        this returns without waiting for the commit; with others it waits.

        @raise Exception: the write was refused (nothing applied; the
            C{after_failure} callbacks have run).
        """
        for fn in self._before:
            fn()
        try:
            d = self.db.write(self.batch)
        except BaseException:
            self.abort()
            raise
        if not d.called and not getattr(self.db, "writes_visible_at_once", False):
            try:
                await d
            except BaseException:
                self.abort()
                raise
            d = succeed(None)
        elif d.called and isinstance(d.result, Failure):
            self.abort()
            await d  # raises
        for fn in self._applied:
            fn()
        return Durability(d.addCallbacks(self._durable, self._lost))

    def _durable(self, _: object) -> None:
        for fn in self._after:
            fn()
        self._release()

    def _release(self) -> None:
        """
        Drop the callbacks and scratch data once the outcome is final: they
        are closures over the stores' state and often over this
        transaction itself, so keeping them would leave a reference cycle
        per write for the cyclic garbage collector to find (a tenth of the
        CPU of a send went to collecting them).
        """
        self._before = []
        self._applied = []
        self._after = []
        self._failed = []
        self.data = {}

    def _lost(self, failure: Failure) -> Failure:
        # Applied but never made durable (the backend's commit failed: it
        # refuses writes from now on). Forget what was handed out for it.
        self.abort()
        self._release()
        return failure

    def abort(self) -> None:
        """
        Give the transaction up without writing (an error while building
        it): run the C{after_failure} callbacks so that ids and cache
        entries made for it are forgotten. Calling it twice is harmless.
        """
        failed, self._failed = self._failed, []
        for fn in reversed(failed):
            fn()
