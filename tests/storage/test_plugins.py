"""Tests for backend discovery and L{conduit_tw.storage.database}."""

from __future__ import annotations

import os
import subprocess
import sys

import twisted.plugins
from twisted.plugin import IPlugin, getPlugins
from twisted.trial import unittest
from zope.interface.verify import verifyObject

import tests
from conduit_tw.storage.database import (
    SCHEMA_KEY,
    SCHEMA_VERSION,
    DatabaseError,
    IncompatibleDatabase,
    UnknownBackend,
    find_backend,
    list_backends,
    open_database,
)
from conduit_tw.storage.interfaces import IKeyValueDatabase, IStorageBackend
from conduit_tw.storage.keys import u64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))


class DiscoveryTests(unittest.TestCase):
    """The built-in backends are Twisted plugins."""

    def test_get_plugins(self) -> None:
        """Both are found by getPlugins(IStorageBackend, twisted.plugins)."""
        list_backends()  # makes sure the checkout's dropins are on the path
        found = {p.name: p for p in getPlugins(IStorageBackend, twisted.plugins)}
        self.assertIn("sqlite", found)
        self.assertIn("lmdb", found)
        for backend in found.values():
            verifyObject(IPlugin, backend)
            verifyObject(IStorageBackend, backend)
            self.assertIsInstance(backend.description, str)
        self.assertEqual(tuple(found["lmdb"].aliases), ("rocksdb",))
        self.assertEqual(tuple(found["sqlite"].aliases), ())

    def test_list_backends(self) -> None:
        names = [b.name for b in list_backends()]
        self.assertEqual(names, sorted(names))
        self.assertTrue({"sqlite", "lmdb"} <= set(names))

    def test_find_by_name_and_alias(self) -> None:
        self.assertEqual(find_backend("sqlite").name, "sqlite")
        self.assertEqual(find_backend(" SQLite ").name, "sqlite")
        self.assertEqual(find_backend("lmdb").name, "lmdb")
        self.assertEqual(find_backend("rocksdb").name, "lmdb")
        self.assertEqual(find_backend("postgresql").name, "postgresql")
        self.assertEqual(find_backend("postgres").name, "postgresql")

    def test_unknown_backend(self) -> None:
        """The error names the wanted backend and lists the available ones."""
        e = self.assertRaises(UnknownBackend, find_backend, "cassandra")
        self.assertIsInstance(e, DatabaseError)
        self.assertIn("'cassandra'", str(e))
        self.assertIn("postgresql", str(e))
        self.assertIn("sqlite", str(e))
        self.assertIn("lmdb", str(e))
        self.assertIn("rocksdb", str(e))
        self.assertRaises(UnknownBackend, open_database, "nope", self.mktemp())

    def test_scanning_is_cheap(self) -> None:
        """Discovering the backends imports neither backend module."""
        code = (
            "import sys\n"
            "from conduit_tw.storage.database import list_backends\n"
            "assert {b.name for b in list_backends()} >= {'sqlite', 'lmdb'}\n"
            "print(sorted(m for m in sys.modules if m.startswith('conduit_tw.storage.')"
            " or m in ('lmdb', 'sqlite3', 'psycopg')))\n"
        )
        env = dict(os.environ, PYTHONPATH=ROOT)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, check=True
        ).stdout.decode()
        for module in ("conduit_tw.storage.sqlite", "conduit_tw.storage.lmdb", "'lmdb'", "sqlite3"):
            self.assertNotIn(module, out)


class OpenDatabaseTests(unittest.TestCase):
    """L{open_database}."""

    def test_open_each(self) -> None:
        """Each backend opens in a new nested directory and records the version."""
        for name in ("sqlite", "lmdb"):
            path = os.path.join(self.mktemp(), "nested", "dir")
            db = open_database(name, path)
            self.addCleanup(db.close)
            verifyObject(IKeyValueDatabase, db)
            self.assertTrue(os.path.isdir(path))
            got = self.successResultOf(db.open_tree("global").get(SCHEMA_KEY))
            self.assertEqual(got, u64(SCHEMA_VERSION))
            # Nothing outside the directory.
            self.assertEqual(os.listdir(os.path.dirname(path)), ["dir"])

    def test_options_passed(self) -> None:
        db = open_database("sqlite", self.mktemp(), {"sqlite_synchronous": "normal"})
        self.addCleanup(db.close)
        self.assertEqual(db.synchronous, "normal")  # type: ignore[attr-defined]
        e = self.assertRaises(
            DatabaseError, open_database, "lmdb", self.mktemp(), {"lmdb_sync": "off"}
        )
        self.assertIn("lmdb_sync", str(e))
        self.assertIsInstance(e.__cause__, ValueError)

    def test_not_a_database(self) -> None:
        """A file that is not a database gives a DatabaseError, not a crash."""
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "conduit.db"), "wb") as f:
            f.write(b"this is not SQLite" * 100)
        e = self.assertRaises(DatabaseError, open_database, "sqlite", path)
        self.assertIn("sqlite backend cannot open", str(e))

    def test_newer_schema_refused(self) -> None:
        """A database from a newer release is refused and left untouched."""
        for name in ("sqlite", "lmdb"):
            path = self.mktemp()
            db = open_database(name, path)
            g = db.open_tree("global")
            d1 = g.insert(SCHEMA_KEY, u64(SCHEMA_VERSION + 5))
            d2 = db.open_tree("t").insert(b"k", b"v")
            db.close()  # commits
            self.successResultOf(d1)
            self.successResultOf(d2)
            e = self.assertRaises(IncompatibleDatabase, open_database, name, path)
            self.assertIn(f"schema version {SCHEMA_VERSION + 5}", str(e))
            self.assertIn(path, str(e))
            # open_database closed it; the data is as it was.
            db = find_backend(name).open(path, {})
            self.addCleanup(db.close)
            g = db.open_tree("global")
            self.assertEqual(
                self.successResultOf(g.get(SCHEMA_KEY)), u64(SCHEMA_VERSION + 5)
            )
            self.assertEqual(self.successResultOf(db.open_tree("t").get(b"k")), b"v")

    def test_garbage_version_refused(self) -> None:
        path = self.mktemp()
        db = open_database("sqlite", path)
        d = db.open_tree("global").insert(SCHEMA_KEY, b"1")
        db.close()  # commits
        self.successResultOf(d)
        e = self.assertRaises(IncompatibleDatabase, open_database, "sqlite", path)
        self.assertIn("not a version number", str(e))
