"""Tests for L{conduit_tw.storage.sqlite}."""

from __future__ import annotations

import os
import sqlite3
import threading

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

from conduit_tw.storage.keys import u64
from conduit_tw.storage.sqlite import FILENAME, MAX_PENDING, SQLiteDatabase, WritesRefused
from tests.storage.conformance import BackendTestsMixin, KeyValueDatabaseConformanceMixin
from tests.storage.deferred import DeferredDatabase


class SQLiteConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """The conformance suite on SQLite."""

    def make_database(self, path: str) -> SQLiteDatabase:
        return SQLiteDatabase(path, {})


class SQLiteTests(BackendTestsMixin, unittest.TestCase):
    """What is particular to the SQLite backend."""

    database_class = SQLiteDatabase

    def test_layout(self) -> None:
        """One WITHOUT ROWID table per tree in <path>/conduit.db, in WAL mode."""
        db = self.open()
        db.open_tree("userroomid_joined")
        d = db.open_tree("userroomid_joined").insert(b"k", b"v")
        db.flush()
        self.successResultOf(d)
        conn = sqlite3.connect(os.path.join(self.path, FILENAME))
        self.addCleanup(conn.close)
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'userroomid_joined'"
        ).fetchone()
        self.assertIn("WITHOUT ROWID", sql)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(
            conn.execute('SELECT key, value FROM "userroomid_joined"').fetchall(),
            [(b"k", b"v")],
        )

    def test_synchronous_default_full(self) -> None:
        """
        Durable by default: as C{synchronous = FULL}, but the COMMIT runs
        with C{NORMAL} (1) and the log is fsynced by us afterwards.
        """
        db = self.open()
        self.assertEqual(db.synchronous, "full")
        self.assertTrue(db._needs_sync)
        self.assertEqual(db._cur.execute("PRAGMA synchronous").fetchone()[0], 1)

    def test_synchronous_option(self) -> None:
        db = self.open({"sqlite_synchronous": "NORMAL"})
        self.assertEqual(db._cur.execute("PRAGMA synchronous").fetchone()[0], 1)

    def test_synchronous_off_refused(self) -> None:
        e = self.assertRaises(
            ValueError, SQLiteDatabase, self.path, {"sqlite_synchronous": "off"}
        )
        self.assertIn("sqlite_synchronous", str(e))

    def test_answers_synchronously(self) -> None:
        """
        Embedded: reads return already-fired Deferreds and see applied
        writes at once; writes fire at the commit (L{SQLiteDatabase.flush}).
        """
        db = self.open()
        t = db.open_tree("t")
        inserted = t.insert(b"k", b"v")
        self.assertNoResult(inserted)
        self.assertEqual(self.successResultOf(t.get(b"k")), b"v")
        incremented = t.increment(b"n")
        db.flush()
        self.assertIsNone(self.successResultOf(inserted))
        self.assertEqual(self.successResultOf(incremented), 1)

    def test_text_refused(self) -> None:
        """A str key or value is refused, not stored as TEXT."""
        db = self.open()
        t = db.open_tree("t")
        self.failureResultOf(t.insert(b"k", "text"), sqlite3.IntegrityError)  # type: ignore[arg-type]
        self.failureResultOf(t.insert("k", b"v"), sqlite3.IntegrityError)  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(t.iter_from(b"")), [])

    def test_reserved_tree_names(self) -> None:
        db = self.open()
        self.assertRaises(ValueError, db.open_tree, "sqlite_master")
        self.assertRaises(ValueError, db.open_tree, "")
        t = db.open_tree('odd "name"; DROP')
        d = t.insert(b"k", b"v")
        db.flush()
        self.successResultOf(d)
        self.assertEqual(self.successResultOf(t.get(b"k")), b"v")

    def test_increment_not_u64(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        d = t.insert(b"n", b"abc")
        self.failureResultOf(t.increment(b"n"), ValueError)
        self.assertEqual(self.successResultOf(t.get(b"n")), b"abc")
        db.flush()
        self.successResultOf(d)
        self.assertFalse(db._conn.in_transaction)


class _FailingCommit:
    """A cursor whose C{COMMIT} fails like a full disk (fail-stop tests)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur
        self.fail = True

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail:
            raise sqlite3.OperationalError("database or disk is full")
        return self._cur.execute(sql, *args)


class GroupCommitTests(unittest.TestCase):
    """
    Group commit: writes apply at once in one open transaction and fire
    after the shared COMMIT, run by the (injected) reactor once per turn.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.clock = Clock()

    def open(self) -> SQLiteDatabase:
        db = SQLiteDatabase(self.path, {}, reactor=self.clock)
        self.addCleanup(db.close)
        return db

    def test_one_commit_per_turn(self) -> None:
        """Several writes of one turn share one COMMIT; reads see them at once."""
        db = self.open()
        t = db.open_tree("t")
        db.open_tree("u")
        batch = db.batch()
        batch.put("t", b"a", b"1")
        batch.put("u", b"b", b"2")
        ds = [
            db.write(batch),
            t.insert(b"c", b"3"),
            t.remove(b"a-absent"),
            t.increment(b"n"),
            t.increment(b"n"),
        ]
        for d in ds:
            self.assertNoResult(d)
        self.assertEqual(db.commits, 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        # Applied: visible to reads on the connection before the commit.
        self.assertEqual(self.successResultOf(t.get(b"a")), b"1")
        self.assertEqual(self.successResultOf(t.get(b"n")), u64(2))
        self.clock.advance(0)
        self.assertEqual(db.commits, 1)
        self.assertEqual([self.successResultOf(d) for d in ds], [None, None, None, 1, 2])
        self.assertFalse(db._conn.in_transaction)
        # The next turn's writes make the next group.
        d = t.insert(b"d", b"4")
        self.assertNoResult(d)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(db.commits, 2)
        # Durable for another connection.
        conn = sqlite3.connect(os.path.join(self.path, FILENAME))
        self.addCleanup(conn.close)
        self.assertEqual(
            conn.execute('SELECT key, value FROM "t" ORDER BY key').fetchall(),
            [(b"a", b"1"), (b"c", b"3"), (b"d", b"4"), (b"n", u64(2))],
        )

    def test_empty_batch_alone_fires_at_once(self) -> None:
        db = self.open()
        self.successResultOf(db.write(db.batch()))
        self.assertEqual(db.commits, 0)

    def test_many_pending_commit_at_once(self) -> None:
        """MAX_PENDING waiting writes commit without waiting for the turn's end."""
        db = self.open()
        t = db.open_tree("t")
        ds = [t.insert(u64(i), b"") for i in range(MAX_PENDING)]
        self.assertEqual(db.commits, 1)
        for d in ds:
            self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failing_batch_among_good_ones(self) -> None:
        """A failing batch leaves nothing; the others of its group commit."""
        db = self.open()
        t = db.open_tree("t")
        good1 = db.batch()
        good1.put("t", b"g1", b"1")
        good1.put("t", b"g1b", b"1")
        bad = db.batch()
        bad.put("t", b"bad1", b"x")
        bad.put("t", b"g1", b"overwritten?")
        bad.put("t", b"bad2", "text")  # type: ignore[arg-type]
        unknown = db.batch()
        unknown.put("t", b"bad3", b"x")
        unknown.put("never-opened", b"k", b"x")
        good2 = db.batch()
        good2.put("t", b"g2", b"2")
        d1 = db.write(good1)
        self.failureResultOf(db.write(bad), sqlite3.IntegrityError)
        self.failureResultOf(t.insert(b"bad4", "text"), sqlite3.IntegrityError)  # type: ignore[arg-type]
        self.failureResultOf(db.write(unknown), ValueError)
        d2 = db.write(good2)
        expected = [(b"g1", b"1"), (b"g1b", b"1"), (b"g2", b"2")]
        self.assertEqual(self.successResultOf(t.iter_from(b"")), expected)
        self.clock.advance(0)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual(db.commits, 1)
        db.close()
        db = self.open()
        self.assertEqual(self.successResultOf(db.open_tree("t").iter_from(b"")), expected)

    def test_watches_fire_after_commit(self) -> None:
        """A watch fires after the COMMIT (before the write's Deferred), not at apply."""
        db = self.open()
        t = db.open_tree("t")
        order: list[str] = []
        w1 = t.watch_prefix(b"k")
        w1.addCallback(lambda _: order.append("watch insert"))
        w2 = t.watch_prefix(b"b")
        w2.addCallback(lambda _: order.append("watch batch"))
        d = t.insert(b"k1", b"")
        d.addCallback(lambda _: order.append("insert"))
        batch = db.batch()
        batch.put("t", b"b1", b"")
        db.write(batch).addCallback(lambda _: order.append("batch"))
        self.assertFalse(w1.called)
        self.assertFalse(w2.called)
        self.clock.advance(0)
        self.assertEqual(order, ["watch insert", "watch batch", "insert", "batch"])
        # A failed write wakes nothing.
        w3 = t.watch_prefix(b"z")
        self.failureResultOf(t.insert(b"z", "text"), sqlite3.IntegrityError)  # type: ignore[arg-type]
        self.clock.advance(0)
        self.assertNoResult(w3)
        w3.cancel()
        self.failureResultOf(w3)

    def test_close_commits_pending(self) -> None:
        """close() commits what was applied, also writes made by its callbacks."""
        db = self.open()
        t = db.open_tree("t")
        later: list[Deferred[None]] = []
        d = t.insert(b"k", b"v")
        d.addCallback(lambda _: later.append(t.insert(b"from-callback", b"")))
        db.close()
        self.successResultOf(d)
        self.successResultOf(later[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        db = self.open()
        self.assertEqual(
            self.successResultOf(db.open_tree("t").iter_from(b"")),
            [(b"from-callback", b""), (b"k", b"v")],
        )

    def test_commit_failure_is_fail_stop(self) -> None:
        """
        A failed COMMIT fails every pending write, leaves none of them, and
        the database refuses every later write; reads go on.
        """
        db = self.open()
        t = db.open_tree("t")
        d = t.insert(b"durable", b"")
        self.clock.advance(0)
        self.successResultOf(d)
        failing = db._cur = t._cur = _FailingCommit(db._cur)  # type: ignore[assignment]
        batch = db.batch()
        batch.put("t", b"a", b"")
        pending = [db.write(batch), t.insert(b"b", b""), t.increment(b"n")]
        self.clock.advance(0)
        for p in pending:
            f = self.failureResultOf(p, WritesRefused)
            self.assertIn("full", str(f.value))
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        failing.fail = False  # even if the disk recovers: restart first
        self.failureResultOf(t.insert(b"c", b""), WritesRefused)
        self.failureResultOf(t.remove(b"durable"), WritesRefused)
        self.failureResultOf(t.increment(b"n"), WritesRefused)
        batch = db.batch()
        batch.put("t", b"d", b"")
        self.failureResultOf(db.write(batch), WritesRefused)
        self.failureResultOf(db.write(db.batch()), WritesRefused)
        # Reads answer with the committed data only.
        self.assertEqual(self.successResultOf(t.iter_from(b"")), [(b"durable", b"")])
        db.close()
        db = self.open()
        self.assertEqual(
            self.successResultOf(db.open_tree("t").iter_from(b"")), [(b"durable", b"")]
        )


class WriterThreadTests(unittest.TestCase):
    """
    The writer thread (real reactor): the COMMIT runs on the reactor
    thread, the fsync of the log on the writer thread; reads see writes at
    once, acknowledgements wait for the fsync, the reactor keeps serving.
    """

    def open(self, options: dict | None = None) -> SQLiteDatabase:
        db = SQLiteDatabase(self.mktemp(), options or {})
        self.addCleanup(db.close)
        return db

    def hold_sync(self, db: SQLiteDatabase) -> tuple[threading.Event, threading.Event]:
        """Make the next fsyncs wait for the returned C{release} event."""
        entered, release = threading.Event(), threading.Event()
        real = db._sync_log

        def slow() -> None:
            entered.set()
            release.wait(10)
            real()

        db._sync_log = slow  # type: ignore[method-assign]
        self.addCleanup(release.set)
        return entered, release

    async def test_ack_waits_for_the_fsync(self) -> None:
        db = self.open()
        self.assertTrue(db.threaded)
        t = db.open_tree("t")
        entered, release = self.hold_sync(db)
        d = t.insert(b"k", b"v")
        w2 = t.watch_prefix(b"j")
        d2 = t.insert(b"j", b"1")
        self.assertEqual(self.successResultOf(t.get(b"k")), b"v")  # applied
        # The reactor turns (and commits) while the writer thread waits.
        for _ in range(5):
            await deferLater(reactor, 0.01, lambda: None)
        self.assertTrue(entered.is_set())
        self.assertEqual(db.commits, 1)
        self.assertNoResult(d)
        self.assertNoResult(w2)
        # More writes meanwhile: committed, acknowledged by a later fsync.
        d3 = t.insert(b"m2", b"2")
        await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(db.commits, 2)
        self.assertEqual(self.successResultOf(t.get(b"m2")), b"2")
        release.set()
        await d
        await d2
        await w2
        await d3

    async def test_flush_syncs_at_once(self) -> None:
        """flush() makes everything durable on the calling thread."""
        db = self.open()
        t = db.open_tree("t")
        d = t.insert(b"k", b"v")
        db.flush()
        self.successResultOf(d)
        self.assertEqual(db._unsynced, [])

    async def test_fsync_failure_is_fail_stop(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        await t.insert(b"durable", b"")

        def broken() -> None:
            raise OSError(5, "Input/output error")

        db._sync_log = broken  # type: ignore[method-assign]
        pending = [t.insert(b"a", b""), t.increment(b"n")]
        for p in pending:
            try:
                await p
            except WritesRefused as e:
                self.assertIn("Input/output error", str(e))
            else:
                self.fail("the write was acknowledged")
        self.flushLoggedErrors(OSError)
        self.failureResultOf(t.insert(b"c", b""), WritesRefused)

    async def test_checkpoint_in_the_thread(self) -> None:
        """Without autocheckpoint on the reactor, the thread checkpoints when idle."""
        db = self.open()
        self.assertEqual(db._cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0], 0)
        t = db.open_tree("t")
        for i in range(20):
            await t.insert(u64(i), b"x" * 5000)
        for _ in range(100):
            if db._checkpointer is not None:
                break
            await deferLater(reactor, 0.02, lambda: None)
        busy, log, done = db._cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.assertIsNotNone(db._checkpointer)
        self.assertEqual(log, done)

    async def test_normal_does_not_wait_for_the_thread(self) -> None:
        db = self.open({"sqlite_synchronous": "normal"})
        t = db.open_tree("t")
        self.hold_sync(db)
        await t.insert(b"k", b"v")  # fires at the COMMIT


class DeferredSQLiteConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """
    The conformance suite in "deferred" mode: SQLite answering every call
    on a later reactor turn, as a network backend does (tests/storage/deferred.py).
    """

    def make_database(self, path: str) -> DeferredDatabase:
        return DeferredDatabase(SQLiteDatabase(path, {}))
