"""
Password hashing with argon2id (argon2-cffi), bounded in memory.

Hashing and verifying are slow and memory-hard by design: each hash in
flight holds C{memory_kib} of memory for tens of milliseconds. Both run in
the reactor's thread pool, so they never block other requests, but at most
C{concurrency} of them at once: the others wait in order of arrival, so the
memory they take is C{concurrency * memory_kib} however many logins arrive
together. When more than C{queue_limit} are already waiting, the request is
refused with 429 C{M_LIMIT_EXCEEDED} and a C{retry_after_ms} estimated from
the queue (client-server-api "Rate limiting": the answer the spec lists for
C{/login}, C{/register} and C{/account/password}, and one clients retry on
their own; a 503 would not be).

The default parameters are OWASP's first argon2id recommendation
(m=19 MiB, t=2, p=1), which fits small machines; hashes made with other
parameters keep verifying (argon2 hashes carry their parameters) and the
login handler re-hashes them with today's on the next successful login
(L{Passwords.needs_rehash}).

Verification is constant-time in argon2; for an unknown user we still
verify against a dummy hash, so response time does not tell whether an
account exists.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet import threads
from twisted.internet.defer import DeferredSemaphore

from conduit_tw.handlers.ratelimit import limit_exceeded

T = TypeVar("T")

#: OWASP Password Storage Cheat Sheet, argon2id: 19 MiB, 2 iterations, 1 lane.
DEFAULT_MEMORY_KIB = 19 * 1024
DEFAULT_ITERATIONS = 2
#: Hashes computed at once (each holds C{memory_kib}).
DEFAULT_CONCURRENCY = 2
#: Hash requests that may wait for a slot before new ones get a 429.
DEFAULT_QUEUE_LIMIT = 64
#: First guess of one hash's duration (seconds), before any was measured.
_FIRST_ESTIMATE_S = 0.05


#: glibc's C{M_MMAP_THRESHOLD} parameter of C{mallopt(3)}.
_M_MMAP_THRESHOLD = -3


def _large_blocks_from_mmap(threshold: int = 1024 * 1024) -> None:
    """
    Make glibc serve blocks of C{threshold} bytes and more with C{mmap}, so
    argon2's memory goes back to the system when a hash ends. Left to itself,
    glibc raises the threshold after the first free of such a block and then
    keeps up to one hash's memory per thread-pool thread in its per-thread
    arenas (measured: 40 hashes of 19 MiB, 2 at a time on 10 threads, leave
    209 MB resident; with this, 14 MB). Nothing happens on other C libraries.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, threshold)


def make_hasher(memory_kib: int, iterations: int, parallelism: int = 1) -> PasswordHasher:
    """An argon2id hasher with these parameters (32-byte hash, 16-byte salt)."""
    return PasswordHasher(
        time_cost=iterations, memory_cost=memory_kib, parallelism=parallelism,
        hash_len=32, salt_len=16, type=Type.ID,
    )


class Passwords:
    """Hash and check passwords off the reactor thread, a bounded number at once."""

    def __init__(
        self,
        reactor: Any,
        hasher: PasswordHasher | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        self._reactor = reactor
        _large_blocks_from_mmap()
        #: Tests may swap in a cheaper hasher.
        self.hasher = hasher or make_hasher(DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS)
        self._dummy_hash: str | None = None
        self._slots = DeferredSemaphore(max(1, concurrency))
        self.queue_limit = queue_limit
        #: Running mean of one hash's wall time, for C{retry_after_ms}.
        self._mean_s = _FIRST_ESTIMATE_S
        #: Most hashes ever running at once (for tests and curious operators).
        self.peak_running = 0
        self._running = 0

    @property
    def concurrency(self) -> int:
        """Hashes computed at once."""
        return self._slots.limit

    @property
    def waiting(self) -> int:
        """Hash requests waiting for a slot."""
        return len(self._slots.waiting)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """C{fn(*args)} in the thread pool once a slot is free, in order of arrival."""
        if self._slots.tokens == 0 and self.waiting >= self.queue_limit:
            raise limit_exceeded(
                math.ceil((self.waiting / self.concurrency + 1) * self._mean_s * 1000),
                "Too many password checks in progress",
            )
        await self._slots.acquire()
        self._running += 1
        self.peak_running = max(self.peak_running, self._running)
        began = time.monotonic()
        try:
            pool = getattr(self._reactor, "getThreadPool", None)
            if pool is None:
                return fn(*args)
            return await threads.deferToThreadPool(self._reactor, pool(), fn, *args)
        finally:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - began)
            self._running -= 1
            self._slots.release()

    async def hash(self, password: str) -> str:
        """The PHC-format argon2id hash of C{password}."""
        return await self._in_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """
        Whether C{password} matches C{password_hash}. A None hash (unknown
        user, or an account without password) is checked against a dummy
        hash and is never a match.

        @raise MatrixError: 429 M_LIMIT_EXCEEDED when too many hashes wait.
        """
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a password of anyone")
            await self._in_thread(self._check, self._dummy_hash, password)
            return False
        return await self._in_thread(self._check, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than today's."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
