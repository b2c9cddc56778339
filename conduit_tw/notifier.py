"""
The notifier: wakes long-polling /sync requests (and, later, senders) the
moment something they care about is committed, without polling storage.

Producers call L{Notifier.notify} after their write has committed, naming
the users and rooms affected; consumers call L{Notifier.wait} with the user
and the rooms they are in. Cost per notification is proportional to the
number of waiters on the named users/rooms, not to all waiters.

A notification that wakes many waiters (a message in a big room) wakes
them L{WAKE_CHUNK} at a time, one chunk per reactor turn: each woken
/sync builds its response at once, and the reactor writes a chunk's
responses out before building the next chunk's, so the first members get
the event after a chunk's worth of work instead of after everyone's.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Waiters woken per reactor turn by one notification (see the module docstring).
WAKE_CHUNK = 16


class _Waiter:
    __slots__ = ("deferred", "keys", "timer")

    def __init__(self, deferred: Deferred[bool], keys: list[tuple[str, str]]) -> None:
        self.deferred = deferred
        self.keys = keys
        self.timer: IDelayedCall | None = None


class Notifier:
    """See the module docstring."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiters: dict[tuple[str, str], set[_Waiter]] = {}
        #: The highest stream position announced so far: /sync's "now".
        self.position = 0
        #: C{None}, or the storage's "committed up to" position
        #: (C{GlobalsStore.committed_upto}, wired by HomeServer): then
        #: L{position} never passes it, and a change announced above it
        #: is held until it does (L{advance}), so no sync answers past a
        #: position whose write is still running (a backend that answers
        #: later commits positions out of order).
        self.committed_upto: Callable[[], int] | None = None
        self._held: list[tuple[int, Iterable[str], Iterable[str]]] = []

    def notify(
        self, position: int = 0, users: Iterable[str] = (), rooms: Iterable[str] = ()
    ) -> None:
        """
        Announce a committed change at stream C{position} that concerns
        C{users} and C{rooms}: every matching waiter fires with C{True}
        (once every position before it is committed, see
        L{committed_upto}).
        """
        if self.committed_upto is not None and position > self.committed_upto():
            self._held.append((position, tuple(users), tuple(rooms)))
            return
        self._announce(position, users, rooms)

    def advance(self) -> None:
        """
        The committed-up-to position moved forward: move L{position} to it
        and announce the held changes it now covers.
        """
        if self.committed_upto is None:
            return
        upto = self.committed_upto()
        held, self._held = self._held, []
        for entry in held:
            if entry[0] > upto:
                self._held.append(entry)
        if upto > self.position:
            self.position = upto
        for position, users, rooms in held:
            if position <= upto:
                self._announce(position, users, rooms)

    def _announce(self, position: int, users: Iterable[str], rooms: Iterable[str]) -> None:
        if position > self.position:
            self.position = position
        woken: set[_Waiter] = set()
        for key in [("u", u) for u in users] + [("r", r) for r in rooms]:
            waiters = self._waiters.get(key)
            if waiters:
                woken.update(waiters)
        if len(woken) <= WAKE_CHUNK:
            for waiter in woken:
                self._finish(waiter, True)
            return
        # Unregistered now (a later notification must not find them), fired
        # a chunk per reactor turn.
        order = list(woken)
        for waiter in order:
            self._unregister(waiter)
        self._fire_chunks(order)

    def _fire_chunks(self, waiters: list[_Waiter]) -> None:
        for waiter in waiters[:WAKE_CHUNK]:
            if not waiter.deferred.called:
                waiter.deferred.callback(True)
        if len(waiters) > WAKE_CHUNK:
            self._clock.callLater(0, self._fire_chunks, waiters[WAKE_CHUNK:])

    def wait(
        self, user_id: str, rooms: Iterable[str], timeout_s: float
    ) -> Deferred[bool]:
        """
        Wait until something concerning C{user_id} or one of C{rooms} is
        notified (fires C{True}) or C{timeout_s} passes (fires C{False}).
        Cancelling the Deferred (e.g. the client went away) unregisters it.
        """
        keys = [("u", user_id)] + [("r", r) for r in rooms]

        def cancel(d: Deferred[bool]) -> None:
            self._unregister(waiter)

        d: Deferred[bool] = Deferred(cancel)
        waiter = _Waiter(d, keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(waiter)
        waiter.timer = self._clock.callLater(max(0.0, timeout_s), self._finish, waiter, False)
        return d

    def waiting(self) -> int:
        """How many distinct waiters are registered (for tests and metrics)."""
        seen: set[_Waiter] = set()
        for waiters in self._waiters.values():
            seen.update(waiters)
        return len(seen)

    def _finish(self, waiter: _Waiter, value: bool) -> None:
        self._unregister(waiter)
        if not waiter.deferred.called:
            waiter.deferred.callback(value)

    def _unregister(self, waiter: _Waiter) -> None:
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        waiter.timer = None
        for key in waiter.keys:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]


def ignore_cancel(failure: Any) -> None:
    """Errback that swallows the CancelledError of an abandoned wait."""
    failure.trap(CancelledError)
