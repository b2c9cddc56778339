"""The bound on password hashing: slots, order, the queue limit (real thread pool)."""

from __future__ import annotations

import threading
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from conduit_tw.errors import MatrixError
from conduit_tw.handlers.passwords import Passwords, make_hasher


class _Watched(PasswordHasher):
    """A cheap argon2id hasher that records how many hashes run at once and their order."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=256, parallelism=1)
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.order: list[str] = []
        #: When set, hashes wait for it (to fill the queue).
        self.gate: threading.Event | None = None

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.order.append(str(password))
        try:
            if self.gate is not None:
                self.gate.wait(10)
            else:
                threading.Event().wait(0.02)  # long enough for the others to pile up
            return super().hash(password)
        finally:
            with self._lock:
                self.now -= 1


def _run(coro: Any) -> Deferred[Any]:
    return Deferred.fromCoroutine(coro)


class BoundTests(unittest.TestCase):
    """L{Passwords} never runs more than C{concurrency} hashes at once."""

    async def test_concurrent_hashes_bounded(self) -> None:
        hasher = _Watched()
        passwords = Passwords(reactor, hasher, concurrency=2, queue_limit=100)
        names = [f"pw{i}" for i in range(12)]
        hashes = await gatherResults([_run(passwords.hash(n)) for n in names])
        self.assertEqual(hasher.most, 2)
        self.assertEqual(passwords.peak_running, 2)
        # Queued in order of arrival (two threads may swap neighbours on the way in).
        for i, name in enumerate(hasher.order):
            self.assertLessEqual(abs(names.index(name) - i), 1, hasher.order)
        for n, h in zip(names, hashes):
            self.assertTrue(await passwords.verify(h, n))
        self.assertEqual(hasher.most, 2)

    async def test_queue_full_is_429_and_queued_ones_succeed(self) -> None:
        hasher = _Watched()
        hasher.gate = threading.Event()
        passwords = Passwords(reactor, hasher, concurrency=1, queue_limit=2)
        running = [_run(passwords.hash("a")), _run(passwords.hash("b")), _run(passwords.hash("c"))]
        self.assertEqual(passwords.waiting, 2)
        with self.assertRaises(MatrixError) as cm:
            await passwords.hash("d")
        err = cm.exception
        self.assertEqual((err.code, err.errcode), (429, "M_LIMIT_EXCEEDED"))
        self.assertGreater(err.extra["retry_after_ms"], 0)
        with self.assertRaises(MatrixError):
            await passwords.verify(None, "anything")  # unknown users wait in the same queue
        hasher.gate.set()
        a, b, c = await gatherResults(running)
        self.assertTrue(await passwords.verify(c, "c"))
        self.assertEqual(hasher.most, 1)
        self.assertEqual(passwords.waiting, 0)

    async def test_other_parameters_verify_and_need_rehash(self) -> None:
        old = await deferToThread(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=2).hash, "pw")
        passwords = Passwords(reactor, make_hasher(512, 1))
        self.assertTrue(await passwords.verify(old, "pw"))
        self.assertFalse(await passwords.verify(old, "other"))
        self.assertTrue(passwords.needs_rehash(old))
        new = await passwords.hash("pw")
        self.assertIn("m=512,t=1,p=1", new)
        self.assertFalse(passwords.needs_rehash(new))
        self.assertTrue(passwords.needs_rehash("not a hash"))
