"""Tests for L{conduit_tw.storage.lmdb}."""

from __future__ import annotations

import os

from twisted.trial import unittest

from conduit_tw.storage import lmdb as backend
from conduit_tw.storage.keys import u64
from conduit_tw.storage.lmdb import LMDBDatabase
from tests.storage.conformance import BackendTestsMixin, KeyValueDatabaseConformanceMixin


class LMDBConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """The conformance suite on LMDB."""

    def make_database(self, path: str) -> LMDBDatabase:
        return LMDBDatabase(path, {})


class LMDBSmallMapConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """The conformance suite on LMDB with a map that must keep growing."""

    def make_database(self, path: str) -> LMDBDatabase:
        return LMDBDatabase(path, {"lmdb_map_size": 64 * 1024})


class LMDBTests(BackendTestsMixin, unittest.TestCase):
    """What is particular to the LMDB backend."""

    database_class = LMDBDatabase

    def test_imports_the_lmdb_package(self) -> None:
        """C{import lmdb} inside conduit_tw/storage/lmdb.py is the PyPI package."""
        self.assertIsNot(backend.lmdb, backend)
        self.assertTrue(hasattr(backend.lmdb, "open"))
        self.assertNotIn("conduit_tw", backend.lmdb.__file__)

    def test_layout(self) -> None:
        db = self.open()
        self.successResultOf(db.open_tree("t").insert(b"k", b"v"))
        self.assertTrue(os.path.exists(os.path.join(self.path, "data.mdb")))

    def test_sync_default_full(self) -> None:
        db = self.open()
        flags = db._env.flags()
        self.assertTrue(flags["sync"])
        self.assertTrue(flags["metasync"])
        self.assertFalse(flags["writemap"])

    def test_sync_option(self) -> None:
        db = self.open({"lmdb_sync": "normal"})
        self.assertTrue(db._env.flags()["sync"])
        self.assertFalse(db._env.flags()["metasync"])

    def test_sync_off_refused(self) -> None:
        e = self.assertRaises(ValueError, LMDBDatabase, self.path, {"lmdb_sync": "off"})
        self.assertIn("lmdb_sync", str(e))

    def test_map_grows(self) -> None:
        """A full map is doubled and the write retried, until it fits."""
        db = self.open({"lmdb_map_size": 64 * 1024})
        t = db.open_tree("t")
        before = db.map_size
        big = b"\x07" * (1 << 20)
        self.successResultOf(t.insert(b"a", big))
        batch = db.batch()
        for i in range(4):
            batch.put("t", u64(i), big)
        self.successResultOf(db.write(batch))
        self.assertEqual(self.successResultOf(t.increment(b"n")), 1)
        self.assertGreaterEqual(db.map_size, 5 << 20)
        self.assertGreater(db.map_size, before)
        self.assertEqual(self.successResultOf(t.get(u64(3))), big)

    def test_reopen_big(self) -> None:
        """A database bigger than the configured map opens and grows."""
        db = LMDBDatabase(self.path, {"lmdb_map_size": 64 * 1024})
        self.successResultOf(db.open_tree("t").insert(b"a", b"x" * (2 << 20)))
        db.close()
        db = self.open({"lmdb_map_size": 64 * 1024})
        t = db.open_tree("t")
        self.assertEqual(len(self.successResultOf(t.get(b"a"))), 2 << 20)
        self.successResultOf(t.insert(b"b", b"y" * (2 << 20)))

    def test_map_full_during_backup_waits(self) -> None:
        """
        While a backup holds a read transaction the map cannot be resized: a
        write that fills it waits, and so do later ones, in order.
        """
        db = self.open({"lmdb_map_size": 64 * 1024})
        t = db.open_tree("t")
        db._backups += 1  # as if a backup were running
        order = []
        big = t.insert(b"big", b"x" * (1 << 20))
        small = t.insert(b"small", b"y")
        big.addCallback(lambda _: order.append("big"))
        small.addCallback(lambda _: order.append("small"))
        watch = t.watch_prefix(b"s")
        self.assertNoResult(big)
        self.assertNoResult(small)
        self.assertIsNone(self.successResultOf(t.get(b"small")))
        db._backups -= 1
        db._drain()
        self.assertEqual(order, ["big", "small"])
        self.successResultOf(watch)
        self.assertIsNone(db._queued)
        self.assertEqual(self.successResultOf(t.get(b"small")), b"y")

    def test_key_size_limit(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        f = self.failureResultOf(t.insert(b"k" * 512, b"v"), ValueError)
        self.assertIn("511", str(f.value))
        self.failureResultOf(t.insert(b"", b"v"), ValueError)

    def test_increment_not_u64(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        self.successResultOf(t.insert(b"n", b"abc"))
        self.failureResultOf(t.increment(b"n"), ValueError)
        self.assertEqual(self.successResultOf(t.get(b"n")), b"abc")
