"""L{Linearizer} and L{LruCache}."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.util.caches import LruCache, scaled
from conduit_tw.util.linearizer import Linearizer


class LinearizerTests(unittest.SynchronousTestCase):
    def test_one_at_a_time_per_key_in_order(self) -> None:
        lin = Linearizer()
        log: list[str] = []
        gates = {name: Deferred() for name in ("a1", "a2", "b1")}

        async def job(key: str, name: str) -> None:
            async with lin.queue(key):
                log.append("start " + name)
                await gates[name]
                log.append("end " + name)

        d1 = Deferred.fromCoroutine(job("a", "a1"))
        d2 = Deferred.fromCoroutine(job("a", "a2"))
        d3 = Deferred.fromCoroutine(job("b", "b1"))
        # a2 waits for a1; b1 runs at once.
        self.assertEqual(log, ["start a1", "start b1"])
        self.assertTrue(lin.is_busy("a"))
        gates["a1"].callback(None)
        self.assertEqual(log, ["start a1", "start b1", "end a1", "start a2"])
        gates["a2"].callback(None)
        gates["b1"].callback(None)
        for d in (d1, d2, d3):
            self.successResultOf(d)
        self.assertFalse(lin.is_busy("a"))
        self.assertEqual(lin._slots, {})

    def test_released_on_error(self) -> None:
        lin = Linearizer()

        async def fail() -> None:
            async with lin.queue("k"):
                raise ValueError("boom")

        self.failureResultOf(Deferred.fromCoroutine(fail()), ValueError)
        self.assertFalse(lin.is_busy("k"))

        async def ok() -> str:
            async with lin.queue("k"):
                return "ran"

        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(ok())), "ran")


class LruCacheTests(unittest.SynchronousTestCase):
    def test_evicts_least_recently_used(self) -> None:
        c: LruCache[str, int] = LruCache(2)
        c.set("a", 1)
        c.set("b", 2)
        self.assertEqual(c.get("a"), 1)  # a is now the most recent
        c.set("c", 3)
        self.assertNotIn("b", c)
        self.assertEqual((c.get("a"), c.get("c")), (1, 3))
        self.assertEqual(c.pop("a"), 1)
        self.assertEqual(len(c), 1)
        self.assertIsNone(c.get("zzz"))

    def test_scaled(self) -> None:
        self.assertEqual(scaled(1000, 0.5), 500)
        self.assertEqual(scaled(10, 0.001), 1)
