"""Tests for L{conduit_tw.storage.sqlite}."""

from __future__ import annotations

import os
import sqlite3

from twisted.trial import unittest

from conduit_tw.storage.sqlite import FILENAME, SQLiteDatabase
from tests.storage.conformance import KeyValueDatabaseConformanceMixin


class SQLiteConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """The conformance suite on SQLite."""

    def make_database(self, path: str) -> SQLiteDatabase:
        return SQLiteDatabase(path, {})


class SQLiteTests(unittest.TestCase):
    """What is particular to the SQLite backend."""

    def setUp(self) -> None:
        self.path = self.mktemp()

    def open(self, options: dict | None = None) -> SQLiteDatabase:
        db = SQLiteDatabase(self.path, options)
        self.addCleanup(db.close)
        return db

    def test_layout(self) -> None:
        """One WITHOUT ROWID table per tree in <path>/conduit.db, in WAL mode."""
        db = self.open()
        db.open_tree("userroomid_joined")
        self.successResultOf(db.open_tree("userroomid_joined").insert(b"k", b"v"))
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
        """Durable by default: synchronous = FULL (2)."""
        db = self.open()
        self.assertEqual(db.synchronous, "full")
        self.assertEqual(db._cur.execute("PRAGMA synchronous").fetchone()[0], 2)

    def test_synchronous_option(self) -> None:
        db = self.open({"sqlite_synchronous": "NORMAL"})
        self.assertEqual(db._cur.execute("PRAGMA synchronous").fetchone()[0], 1)

    def test_synchronous_off_refused(self) -> None:
        e = self.assertRaises(
            ValueError, SQLiteDatabase, self.path, {"sqlite_synchronous": "off"}
        )
        self.assertIn("sqlite_synchronous", str(e))

    def test_answers_synchronously(self) -> None:
        """Embedded: every call returns an already-fired Deferred."""
        db = self.open()
        t = db.open_tree("t")
        self.assertIsNone(self.successResultOf(t.insert(b"k", b"v")))
        self.assertEqual(self.successResultOf(t.get(b"k")), b"v")
        self.assertEqual(self.successResultOf(t.increment(b"n")), 1)

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
        self.successResultOf(t.insert(b"k", b"v"))
        self.assertEqual(self.successResultOf(t.get(b"k")), b"v")

    def test_increment_not_u64(self) -> None:
        db = self.open()
        t = db.open_tree("t")
        self.successResultOf(t.insert(b"n", b"abc"))
        self.failureResultOf(t.increment(b"n"), ValueError)
        self.assertEqual(self.successResultOf(t.get(b"n")), b"abc")
        self.assertFalse(db._conn.in_transaction)
