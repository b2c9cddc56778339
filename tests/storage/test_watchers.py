"""Tests for L{conduit_tw.storage.watchers}."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial import unittest

from conduit_tw.storage.watchers import PrefixWatchers


class PrefixWatchersTests(unittest.SynchronousTestCase):
    """The registry on its own."""

    def setUp(self) -> None:
        self.w = PrefixWatchers()

    def assertEmpty(self) -> None:
        self.assertEqual(len(self.w), 0)
        self.assertEqual(self.w._trees, {})

    def test_wake_matching_only(self) -> None:
        hits = {p: self.w.watch("t", p) for p in [b"", b"a", b"ab", b"abc", b"b", b"abcd"]}
        other = self.w.watch("u", b"a")
        self.w.wake("t", b"abc")
        fired = {p for p, d in hits.items() if d.called}
        self.assertEqual(fired, {b"", b"a", b"ab", b"abc"})
        self.assertFalse(other.called)
        self.assertEqual(len(self.w), 3)
        self.w.wake("t", b"b")
        self.w.wake("t", b"abcd")
        self.w.wake("u", b"a")
        self.assertEmpty()

    def test_once(self) -> None:
        d = self.w.watch("t", b"a")
        self.w.wake_batch([("t", b"a1", None), ("t", b"a2", b"")])
        self.assertIsNone(self.successResultOf(d))
        self.w.wake("t", b"a3")  # nothing registered: no error
        self.assertEmpty()

    def test_cancel_cleans_up(self) -> None:
        ds = [self.w.watch("t", b"p%d" % (i % 3)) for i in range(9)]
        for d in ds:
            d.cancel()
            self.failureResultOf(d, CancelledError)
        self.assertEmpty()
        d = self.w.watch("t", b"p1")
        self.w.wake("t", b"p1")
        self.successResultOf(d)

    def test_cancel_from_callback(self) -> None:
        a = self.w.watch("t", b"k")
        b = self.w.watch("t", b"k")
        a.addCallback(lambda _: b.cancel())
        self.w.wake("t", b"k")
        self.successResultOf(a)
        self.failureResultOf(b, CancelledError)
        self.assertEmpty()

    def test_many_lengths(self) -> None:
        """More distinct prefix lengths than key bytes: still exact."""
        ds = {b"x" * n: self.w.watch("t", b"x" * n) for n in range(1, 60)}
        self.w.wake("t", b"xxx")
        self.assertEqual({p for p, d in ds.items() if d.called}, {b"x", b"xx", b"xxx"})
        self.w.wake("t", b"y" * 100)
        self.assertEqual(len(self.w), 56)
