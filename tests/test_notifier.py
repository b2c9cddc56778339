"""The notifier wakes exactly the waiters concerned."""

from twisted.internet.task import Clock
from twisted.trial import unittest

from conduit_tw.notifier import Notifier


class NotifierTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.n = Notifier(self.clock)

    def test_wake_by_room_and_user(self) -> None:
        d1 = self.n.wait("@a:x", ["!r1:x"], 30)
        d2 = self.n.wait("@b:x", ["!r2:x"], 30)
        self.n.notify(5, rooms=["!r1:x"])
        self.assertTrue(self.successResultOf(d1))
        self.assertNoResult(d2)
        self.n.notify(6, users=["@b:x"])
        self.assertTrue(self.successResultOf(d2))
        self.assertEqual(self.n.position, 6)
        self.assertEqual(self.n.waiting(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        d = self.n.wait("@a:x", [], 10)
        self.clock.advance(9.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertFalse(self.successResultOf(d))
        self.assertEqual(self.n.waiting(), 0)

    def test_cancel_unregisters(self) -> None:
        d = self.n.wait("@a:x", ["!r:x"], 10)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.n.waiting(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
