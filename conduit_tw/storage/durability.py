"""
Making writes durable off the reactor thread: L{SyncThread}, the dedicated
writer thread of the embedded backends (SQLite, LMDB).

The reactor applies writes (they are visible to reads at once) and numbers
each group of them; the thread makes groups durable in order (an fsync of
SQLite's write-ahead log, or LMDB's write transaction and its syncs) and
reports the highest number it made durable back on the reactor thread,
where the backend fires the Deferreds (the acknowledgements) of every
group up to it. While the thread waits for the disk the reactor keeps
serving; the groups that arrive meanwhile are made durable together by
the next round (one fsync for all of them).

See docs/architecture.md, "Storage: the writer thread".
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from twisted.python.failure import Failure

from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.storage.durability")

class WritesRefused(Exception):
    """
    Writes already applied (visible to reads) could not be made durable
    (a failed C{COMMIT} or fsync): they are lost, and the database refuses
    every write until the server is restarted (fail-stop, see
    L{conduit_tw.storage.sqlite}).
    """


#: Seconds added to every sync, to simulate a slow disk (an SD card) in
#: benchmarks (C{bench/slow_fsync.py}); never set by the server.
simulated_latency = 0.0


def simulate_disk() -> None:
    """Called after each sync by the backends: sleep L{simulated_latency}."""
    if simulated_latency:
        time.sleep(simulated_latency)


def runs_threads(reactor: Any) -> bool:
    """
    Whether C{reactor} can take calls from other threads: a real reactor
    can; a test clock (C{twisted.internet.task.Clock}) cannot, and then a
    backend syncs on the calling thread as before. C{None} is the global
    reactor.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    return callable(getattr(reactor, "callFromThread", None))


class SyncThread:
    """
    A thread that runs C{work(n)} to make everything up to number C{n}
    durable, for the highest C{n} asked with L{request} so far, then calls
    C{done(n)} on the reactor thread. Numbers only grow; one C{work} covers
    every request made before it started.

    If C{work} raises, C{failed(failure)} is called on the reactor thread
    and the thread ends (the backend goes fail-stop). C{idle()}, if given,
    runs in the thread after C{idle_after} seconds without requests
    following some work, and after every C{idle_every} works if that is
    not 0 (SQLite checkpoints then).

    @param reactor: provides C{callFromThread}.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        work: Callable[[int], None],
        done: Callable[[int], None],
        failed: Callable[[Failure], None],
        idle: Callable[[], None] | None = None,
        idle_after: float = 0.25,
        idle_every: int = 0,
    ) -> None:
        self._reactor = reactor
        self._work = work
        self._done = done
        self._failed = failed
        self._idle = idle
        self._idle_after = idle_after
        self._idle_every = idle_every
        self._rounds = 0
        self._cond = threading.Condition()
        self._requested = 0
        #: The highest number made durable by the thread (read under the lock).
        self.handled = 0
        #: Why L{work} failed (then the thread has ended), else C{None}.
        self.failure: Failure | None = None
        self._stopping = False
        self._dirty = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def request(self, n: int) -> None:
        """Ask for everything up to C{n} to be made durable (reactor thread)."""
        with self._cond:
            if n > self._requested:
                self._requested = n
                self._cond.notify()

    def wait(self, n: int, poll: Callable[[], None] | None = None) -> bool:
        """
        Block the calling thread until C{n} is handled (or the thread
        ended); C{poll()} runs every few milliseconds meanwhile (to serve
        requests the thread makes to the reactor thread). Returns whether
        C{n} was handled.
        """
        with self._cond:
            while self.handled < n and self._thread.is_alive():
                self._cond.wait(0.005 if poll is not None else 0.1)
                if poll is not None and self.handled < n:
                    self._cond.release()
                    try:
                        poll()
                    finally:
                        self._cond.acquire()
            return self.handled >= n

    def _run(self) -> None:
        call = self._reactor.callFromThread
        cond = self._cond
        while True:
            idle = False
            with cond:
                while self._requested <= self.handled and not self._stopping:
                    timeout = self._idle_after if self._dirty and self._idle else None
                    if not cond.wait(timeout) and timeout is not None:
                        idle = self._requested <= self.handled
                        break
                if not idle and self._requested <= self.handled:
                    return  # stopping, nothing left
                target = self._requested
            if idle:
                self._housekeeping()
                continue
            try:
                self._work(target)
            except BaseException:
                failure = Failure()
                with cond:
                    self.failure = failure
                    cond.notify_all()
                call(self._failed, failure)
                return
            with cond:
                self.handled = target
                self._dirty = True
                cond.notify_all()
            call(self._done, target)
            self._rounds += 1
            if self._idle_every and not self._rounds % self._idle_every:
                self._housekeeping()

    def _housekeeping(self) -> None:
        """Thread: run C{idle()}; a failure is logged and retried later."""
        self._dirty = False
        if self._idle is None:
            return
        try:
            self._idle()
        except BaseException:
            log.failure("{thread}: idle work failed", thread=self._thread.name)

    def stop(self) -> None:
        """Finish what was requested, then end the thread (waits for it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
