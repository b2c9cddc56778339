"""Tests for L{conduit_tw.storage.lmdb}."""

from __future__ import annotations

import os
import threading

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from conduit_tw.storage import lmdb as backend
from conduit_tw.storage.keys import u64
from conduit_tw.storage.durability import WritesRefused
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


class LMDBInlineConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """The conformance suite on LMDB committing on the reactor thread (no writer thread)."""

    def make_database(self, path: str) -> LMDBDatabase:
        return LMDBDatabase(path, {"lmdb_map_size": 64 * 1024}, sync_thread=False)


class LMDBTests(BackendTestsMixin, unittest.TestCase):
    """What is particular to the LMDB backend."""

    database_class = LMDBDatabase

    def open(self, options: dict | None = None, sync_thread: bool = True) -> LMDBDatabase:
        db = LMDBDatabase(self.path, options, sync_thread=sync_thread)
        self.addCleanup(db.close)
        return db

    def test_imports_the_lmdb_package(self) -> None:
        """C{import lmdb} inside conduit_tw/storage/lmdb.py is the PyPI package."""
        self.assertIsNot(backend.lmdb, backend)
        self.assertTrue(hasattr(backend.lmdb, "open"))
        self.assertNotIn("conduit_tw", backend.lmdb.__file__)

    async def test_layout(self) -> None:
        db = self.open()
        await db.open_tree("t").insert(b"k", b"v")
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

    async def test_map_grows(self) -> None:
        """A full map is doubled and the write retried, until it fits."""
        db = self.open({"lmdb_map_size": 64 * 1024})
        t = db.open_tree("t")
        before = db.map_size
        big = b"\x07" * (1 << 20)
        await t.insert(b"a", big)
        batch = db.batch()
        for i in range(4):
            batch.put("t", u64(i), big)
        await db.write(batch)
        self.assertEqual(await t.increment(b"n"), 1)
        self.assertGreaterEqual(db.map_size, 5 << 20)
        self.assertGreater(db.map_size, before)
        self.assertEqual(self.successResultOf(t.get(u64(3))), big)

    async def test_reopen_big(self) -> None:
        """A database bigger than the configured map opens and grows."""
        db = LMDBDatabase(self.path, {"lmdb_map_size": 64 * 1024})
        await db.open_tree("t").insert(b"a", b"x" * (2 << 20))
        db.close()
        db = self.open({"lmdb_map_size": 64 * 1024})
        t = db.open_tree("t")
        self.assertEqual(len(self.successResultOf(t.get(b"a"))), 2 << 20)
        await t.insert(b"b", b"y" * (2 << 20))

    def test_map_full_during_backup_waits(self) -> None:
        """
        While a backup holds a read transaction the map cannot be resized: a
        write that fills it waits, and so do later ones, in order.
        """
        db = self.open({"lmdb_map_size": 64 * 1024}, sync_thread=False)
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

    async def test_increment_not_u64(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        await t.insert(b"n", b"abc")
        self.failureResultOf(t.increment(b"n"), ValueError)
        self.assertEqual(self.successResultOf(t.get(b"n")), b"abc")

    async def test_map_full_during_backup_waits_threaded(self) -> None:
        """
        With the writer thread: a write that fills the map during a backup
        waits (and later ones with it) but is visible at once; it commits
        once the backup ended and the map grew.
        """
        db = self.open({"lmdb_map_size": 64 * 1024})
        t = db.open_tree("t")
        db._backups += 1  # as if a backup were running
        order = []
        big = t.insert(b"big", b"x" * (1 << 20))
        small = t.insert(b"small", b"y")
        big.addCallback(lambda _: order.append("big"))
        small.addCallback(lambda _: order.append("small"))
        for _ in range(5):
            await deferLater(reactor, 0.01, lambda: None)
        self.assertNoResult(big)
        self.assertNoResult(small)
        self.assertEqual(self.successResultOf(t.get(b"small")), b"y")  # applied
        db.flush()  # gives up instead of waiting for the backup
        self.assertNoResult(big)
        db._backups -= 1
        db._grow_for_writer()  # what the end of the backup does
        await small
        self.assertEqual(order, ["big", "small"])
        self.assertEqual(db._overlay, {})


class WriterThreadTests(unittest.TestCase):
    """LMDB's writer thread: reads see applied writes, acknowledgements wait for the commit."""

    def open(self) -> LMDBDatabase:
        db = LMDBDatabase(self.mktemp(), {})
        self.addCleanup(db.close)
        return db

    def hold_commits(self, db: LMDBDatabase) -> threading.Event:
        """Make the writer thread wait for the returned event before each commit."""
        release = threading.Event()
        real = db._commit

        def slow(upto: int) -> None:
            release.wait(10)
            real(upto)

        db._writer = None
        db._commit = slow  # type: ignore[method-assign]
        self.addCleanup(release.set)
        return release

    async def test_overlay(self) -> None:
        db = self.open()
        self.assertTrue(db.threaded)
        t = db.open_tree("t")
        for k in (b"a", b"c", b"e", b"g"):
            await t.insert(k, b"old")
        release = self.hold_commits(db)
        batch = db.batch()
        batch.put("t", b"b", b"new")
        batch.delete("t", b"c")
        batch.put("t", b"e", b"new")
        d = db.write(batch)
        n = t.increment(b"n")
        n2 = t.increment(b"n")
        w = t.watch_prefix(b"b")
        await deferLater(reactor, 0.02, lambda: None)
        self.assertNoResult(d)
        self.assertNoResult(w)
        # Every read sees the applied writes.
        self.assertEqual(self.successResultOf(t.get(b"b")), b"new")
        self.assertIsNone(self.successResultOf(t.get(b"c")))
        self.assertEqual(
            self.successResultOf(t.get_many([b"a", b"b", b"c", b"e"])),
            [b"old", b"new", None, b"new"],
        )
        every = [(b"a", b"old"), (b"b", b"new"), (b"e", b"new"), (b"g", b"old"), (b"n", u64(2))]
        self.assertEqual(self.successResultOf(t.iter_from(b"")), every)
        self.assertEqual(self.successResultOf(t.iter_from(b"", limit=2)), every[:2])
        self.assertEqual(
            self.successResultOf(t.iter_from(b"f", reverse=True, limit=3)), every[2::-1]
        )
        self.assertEqual(self.successResultOf(t.iter_range(b"b", b"g")), every[1:3])
        self.assertEqual(
            self.successResultOf(t.iter_range(b"a", b"z", reverse=True, limit=2)),
            every[:2:-1][:2],
        )
        self.assertEqual(self.successResultOf(t.scan_prefix(b"e")), [(b"e", b"new")])
        # Not committed yet: another reader of the file does not see them.
        with db._env.begin(db=db._dbis["t"]) as txn:
            self.assertEqual(txn.get(b"b"), None)
        release.set()
        await d
        self.assertEqual(await n, 1)
        self.assertEqual(await n2, 2)
        await w
        self.assertEqual(db._overlay, {})
        self.assertEqual(self.successResultOf(t.iter_from(b"")), every)

    async def test_checked_on_the_reactor(self) -> None:
        """A bad write fails at once and leaves nothing in the overlay."""
        db = self.open()
        t = db.open_tree("t")
        self.failureResultOf(t.insert(b"k", "text"), TypeError)  # type: ignore[arg-type]
        batch = db.batch()
        batch.put("t", b"a", b"x")
        batch.put("nope", b"a", b"x")
        self.failureResultOf(db.write(batch), ValueError)
        self.assertEqual(db._overlay, {})
        self.assertIsNone(db._writer)

    async def test_commit_failure_is_fail_stop(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        await t.insert(b"durable", b"")

        def broken(upto: int) -> None:
            raise OSError(5, "Input/output error")

        db._writer.stop()
        db._writer = None
        db._commit = broken  # type: ignore[method-assign]
        fatal = []
        db.on_fatal = fatal.append
        d = t.insert(b"lost", b"")
        self.assertEqual(self.successResultOf(t.get(b"lost")), b"")
        try:
            await d
        except WritesRefused as e:
            self.assertIn("Input/output error", str(e))
        else:
            self.fail("the write was acknowledged")
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(len(fatal), 1)
        self.flushLoggedErrors(OSError)
        self.assertIsNone(self.successResultOf(t.get(b"lost")))
        self.failureResultOf(t.insert(b"c", b""), WritesRefused)
        self.failureResultOf(t.increment(b"n"), WritesRefused)


class AppendTests(unittest.TestCase):
    """
    Keys that sort last in their tree are put with C{MDB_APPEND}, which
    leaves full pages behind (L{conduit_tw.storage.lmdb._Appender}); any
    other key, or a stale idea of the last key, takes the plain put.
    """

    sync_thread = True

    def open(self, path: str | None = None) -> LMDBDatabase:
        db = LMDBDatabase(path or self.path, {}, sync_thread=self.sync_thread)
        self.addCleanup(db.close)
        return db

    def setUp(self) -> None:
        self.path = self.mktemp()

    def leaf_pages(self, db: LMDBDatabase, tree: str) -> int:
        db.flush()
        with db._env.begin() as txn:
            return int(txn.stat(db._dbis[tree])["leaf_pages"])

    async def test_ascending_keys_fill_pages(self) -> None:
        """
        700-byte values under ascending keys: 5 fit in a 4 KiB page; the
        plain put splits the fifth one off with the fourth (4 per page).
        """
        db = self.open()
        t = db.open_tree("t")
        for i in range(1, 201):
            await t.insert(u64(i), b"x" * 700)
        self.assertEqual(db._appender.appended, 200)
        self.assertLessEqual(self.leaf_pages(db, "t"), 41)
        plain = self.open(self.mktemp())
        p = plain.open_tree("t")
        for i in range(200, 0, -1):  # descending: only the first is appended
            await p.insert(u64(i), b"x" * 700)
        self.assertEqual(plain._appender.appended, 1)
        self.assertGreaterEqual(self.leaf_pages(plain, "t"), 50)
        self.assertEqual(await t.iter_from(b""), await p.iter_from(b""))

    async def test_not_last_takes_plain_put(self) -> None:
        """Keys before the last one, or equal to it, are put as usual."""
        db = self.open()
        t = db.open_tree("t")
        await t.insert(b"m", b"1")
        await t.insert(b"c", b"2")
        await t.insert(b"m", b"3")
        await t.insert(b"z", b"4")
        self.assertEqual(db._appender.appended, 2)  # b"m" into the empty tree, b"z"
        self.assertEqual(await t.iter_from(b""), [(b"c", b"2"), (b"m", b"3"), (b"z", b"4")])

    async def test_stale_last_key(self) -> None:
        """
        A cached last key that is too small (another process appended) makes
        the append fail in LMDB before it changes anything, and the plain put
        follows; one that is too large only skips the append.
        """
        db = self.open()
        t = db.open_tree("t")
        for k in (b"b", b"d", b"f"):
            await t.insert(k, k)
        dbi = db._dbis["t"]
        db._appender.last[dbi] = b"a"  # as if another process had written d, f
        await t.insert(b"c", b"c")
        self.assertNotIn(dbi, db._appender.last)  # forgotten, read again next time
        db._appender.last[dbi] = b"zz"  # too large
        before = db._appender.appended
        await t.insert(b"g", b"g")
        self.assertEqual(db._appender.appended, before)
        self.assertEqual(await t.iter_from(b""), [(k, k) for k in (b"b", b"c", b"d", b"f", b"g")])
        del db._appender.last[dbi]
        await t.insert(b"h", b"h")  # the last key is read with a cursor, then appended
        self.assertEqual(db._appender.appended, before + 1)
        self.assertEqual(db._appender.last[dbi], b"h")

    async def test_remove_last_key(self) -> None:
        """Removing the last key forgets it: a smaller key appended next is still in order."""
        db = self.open()
        t = db.open_tree("t")
        for k in (b"a", b"b", b"c"):
            await t.insert(k, k)
        batch = db.batch()
        batch.delete("t", b"c")
        batch.put("t", b"bb", b"bb")
        await db.write(batch)
        await t.remove(b"nothing")
        self.assertEqual(await t.iter_from(b""), [(b"a", b"a"), (b"b", b"b"), (b"bb", b"bb")])
        self.assertEqual(db._appender.last[db._dbis["t"]], b"bb")

    async def test_counter_appended(self) -> None:
        """C{increment} of a new last key appends; of an existing one, overwrites."""
        db = self.open()
        t = db.open_tree("t")
        self.assertEqual(await t.increment(b"n"), 1)
        self.assertEqual(await t.increment(b"n"), 2)
        self.assertEqual(await t.get(b"n"), u64(2))

    async def test_old_database(self) -> None:
        """
        A database written without appends (the previous code: plain puts in
        random order, half-full pages) opens; new keys go after its last one.
        """
        import lmdb
        import random

        os.makedirs(self.path)
        env = lmdb.open(self.path, max_dbs=8, map_size=16 << 20)
        old = env.open_db(b"t")
        keys = [u64(i) for i in range(0, 300, 3)]
        random.Random(1).shuffle(keys)
        with env.begin(write=True) as txn:
            for k in keys:
                txn.put(k, b"old" + k, db=old)
        env.close()
        db = self.open()
        t = db.open_tree("t")
        batch = db.batch()
        for i in range(1, 600, 3):  # between the old keys, then past them
            batch.put("t", u64(i), b"new" + u64(i))
        await db.write(batch)
        self.assertEqual(db._appender.appended, 101)  # 298 .. 598
        rows = await t.iter_from(b"")
        self.assertEqual([k for k, _ in rows], sorted(keys + [u64(i) for i in range(1, 600, 3)]))
        self.assertEqual(await t.get(u64(3)), b"old" + u64(3))

    async def test_failed_transaction_forgets(self) -> None:
        """A transaction that failed leaves no cached last key behind (it may be gone)."""
        db = self.open()
        t = db.open_tree("t")
        await t.insert(b"a", b"a")
        self.assertTrue(db._appender.last)
        db._appender.aborted()
        self.assertEqual(db._appender.last, {})
        await t.insert(b"b", b"b")
        self.assertEqual(await t.iter_from(b""), [(b"a", b"a"), (b"b", b"b")])


class InlineAppendTests(AppendTests):
    """L{AppendTests} committing on the calling thread."""

    sync_thread = False

    def test_injected_failure_forgets(self) -> None:
        """A batch that raises midway is aborted: its appends are not remembered."""
        from tests.storage.conformance import _ExplodingBatch, _Injected

        db = self.open()
        t = db.open_tree("t")
        self.successResultOf(t.insert(u64(1), b"a"))
        batch = _ExplodingBatch(fail_after=2)
        for i in range(2, 6):
            batch.put("t", u64(i), b"b")
        self.failureResultOf(db.write(batch), _Injected)
        self.assertEqual(db._appender.last, {})
        self.successResultOf(t.insert(u64(2), b"c"))
        self.assertEqual(self.successResultOf(t.iter_from(b"")), [(u64(1), b"a"), (u64(2), b"c")])
