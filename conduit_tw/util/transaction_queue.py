"""
Per-target transaction loops, shared by the federation sender (one target
per destination server) and the appservice sender (one per appservice).

For each target at most one coroutine sends (L{TransactionQueues._kick}
starts it, or marks the state dirty when one runs); a failed transaction
is kept as C{pending} and retried unchanged after a backoff that starts at
C{initial_backoff_s} and doubles up to C{backoff_limit_s}; C{stop} cancels
the timers and the transactions in flight (the queues are persisted by the
subclass, so nothing is lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure


@dataclass
class Transaction:
    """A transaction handed out: its ID, body and the queue keys it carries."""

    txn_id: str
    body: dict[str, Any]
    keys: list[bytes]


@dataclass
class QueueState:
    """What a sender knows about one target, in memory."""

    #: A coroutine is sending to it (one transaction in flight at most).
    sending: bool = False
    #: More was queued while sending: look at the queue again.
    dirty: bool = False
    #: The failed transaction to retry as it is (same ID, same content).
    pending: Transaction | None = None
    backoff_s: float = 0.0
    retry: IDelayedCall | None = None


S = TypeVar("S", bound=QueueState)


class TransactionQueues(Generic[S]):
    """
    The loop machinery; subclasses write C{_run(target, state)} (send until
    the queue is empty, calling L{_failed} on an error) and C{_new_state}.
    """

    #: The first retry delay, in seconds.
    initial_backoff_s: float = 10.0
    #: How targets are named in log lines ("destination", "appservice").
    what = "target"

    def __init__(self, reactor: IReactorTime, backoff_limit_s: float, log: Logger) -> None:
        self.reactor = reactor
        self.backoff_limit_s = backoff_limit_s
        self._log = log
        self._states: dict[str, S] = {}
        self._running: set[Deferred[None]] = set()
        self._stopped = False

    def _new_state(self) -> S:
        raise NotImplementedError

    async def _run(self, target: str, state: S) -> None:
        raise NotImplementedError

    def _state(self, target: str) -> S:
        state = self._states.get(target)
        if state is None:
            state = self._states[target] = self._new_state()
        return state

    def stop(self) -> Deferred[None]:
        """
        Cancel the retry timers and the transactions in flight (they stay
        queued and are sent again after a restart); nothing is written
        afterwards. The Deferred fires once no transaction is running.
        """
        self._stopped = True
        for state in self._states.values():
            if state.retry is not None and state.retry.active():
                state.retry.cancel()
        for d in list(self._running):
            d.cancel()
        return Deferred.fromCoroutine(self.wait_idle())

    async def wait_idle(self) -> None:
        """Return once no transaction is being sent (retries may be scheduled)."""
        while self._running:
            await DeferredList(list(self._running))

    def _kick(self, target: str) -> None:
        if self._stopped:
            return
        state = self._state(target)
        if state.sending:
            state.dirty = True
            return
        if state.retry is not None and state.retry.active():
            return  # backing off: the retry takes everything queued
        state.sending = True
        d = Deferred.fromCoroutine(self._run(target, state))
        self._running.add(d)

        def done(_: object) -> None:
            self._running.discard(d)
            state.sending = False

        def failed(f: Failure) -> None:
            if not (self._stopped and f.check(CancelledError)):
                self._log.failure("Sending to {what} {target} failed", f, what=self.what, target=target)

        d.addErrback(failed)
        d.addBoth(done)

    def _failed(self, target: str, state: S, error: Exception) -> None:
        """Schedule the retry of C{state.pending} after the next backoff."""
        state.backoff_s = min(
            max(self.initial_backoff_s, state.backoff_s * 2), float(self.backoff_limit_s)
        )
        self._log.info(
            "Transaction to {what} {target} failed ({err!r}); retrying in {s}s",
            what=self.what, target=target, err=error, s=state.backoff_s,
        )
        state.retry = self.reactor.callLater(state.backoff_s, self._retry, target)

    def _retry(self, target: str) -> None:
        state = self._states.get(target)
        if state is not None:
            state.retry = None
        self._kick(target)
