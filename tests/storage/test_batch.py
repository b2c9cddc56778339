"""Tests for L{conduit_tw.storage.batch}."""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from conduit_tw.storage.batch import WriteBatch
from conduit_tw.storage.interfaces import IWriteBatch


class WriteBatchTests(unittest.SynchronousTestCase):
    def test_changes_in_order(self) -> None:
        b = WriteBatch()
        verifyObject(IWriteBatch, b)
        b.put("a", b"k", b"v")
        b.delete("b", b"k")
        b.put("a", b"k", b"")
        self.assertEqual(len(b), 3)
        self.assertEqual(list(b), [("a", b"k", b"v"), ("b", b"k", None), ("a", b"k", b"")])

    def test_put_none_refused(self) -> None:
        """None would read as a delete: refused at once."""
        b = WriteBatch()
        self.assertRaises(TypeError, b.put, "a", b"k", None)
        self.assertEqual(len(b), 0)
