"""
L{PeriodicTasks}: the server's housekeeping timers as one
L{twisted.application.service.IService}, started after the server has
loaded its state and stopped (waiting for a run in progress) before the
database closes (conduit_tw/service.py).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.housekeeping")


class PeriodicTasks(Service):
    """
    Runs each added task every C{interval} seconds while running (the
    first run one interval after start). A task that fails is logged and
    runs again at its next time; a slow task delays its own next run, never
    overlaps itself.

    @ivar clock: where time comes from (tests give a
        L{twisted.internet.task.Clock}).
    """

    name = "housekeeping"

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._tasks: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = []
        self._loops: list[tuple[LoopingCall, Deferred[Any]]] = []
        self._running: set[Deferred[Any]] = set()

    def add(self, name: str, interval: float, task: Callable[[], Awaitable[Any]]) -> None:
        """Run C{task} (an C{async} callable) every C{interval} seconds."""
        self._tasks.append((name, interval, task))

    @property
    def task_names(self) -> list[str]:
        """The names of the tasks, in the order they were added."""
        return [name for name, _, _ in self._tasks]

    def run(self, name: str) -> Deferred[Any]:
        """Run one task now (logging instead of raising); fires with its result."""
        for task_name, _, task in self._tasks:
            if task_name == name:
                d = Deferred.fromCoroutine(self._run(name, task))
                if not d.called:
                    self._running.add(d)
                    d.addBoth(lambda r: (self._running.discard(d), r)[1])
                return d
        raise KeyError(name)

    @staticmethod
    async def _run(name: str, task: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await task()
        except Exception:
            log.failure("Housekeeping task {name} failed", name=name)
            return None

    def wait_idle(self) -> Deferred[None]:
        """Fires once no task is running."""
        return defer.gatherResults(list(self._running), consumeErrors=True).addCallback(
            lambda _: None
        )

    def startService(self) -> None:
        """Start one timer per task."""
        super().startService()
        for name, interval, _ in self._tasks:
            loop = LoopingCall(self.run, name)
            loop.clock = self.clock
            self._loops.append((loop, loop.start(interval, now=False)))

    def stopService(self) -> Deferred[Any]:
        """Stop the timers; the Deferred fires once no task is running."""
        super().stopService()
        loops, self._loops = self._loops, []
        for loop, _ in loops:
            if loop.running:
                loop.stop()
        return defer.gatherResults([d for _, d in loops], consumeErrors=True)
