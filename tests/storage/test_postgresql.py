"""Tests for L{conduit_tw.storage.postgresql} on a throw-away cluster (tests/postgresql.py)."""

from __future__ import annotations

import os

from twisted.trial import unittest

from conduit_tw.storage.postgresql import BACKUP_FILE, PostgreSQLDatabase
from tests.postgresql import database_url
from tests.storage.conformance import KeyValueDatabaseConformanceMixin


class PostgreSQLConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """
    The conformance suite on PostgreSQL. Each directory stands for one
    database; opening a directory that holds a backup restores it into a
    new, empty database (that is how this backend opens a backup).
    """

    def make_database(self, path: str) -> PostgreSQLDatabase:
        urls = self.__dict__.setdefault("_urls", {})
        if path not in urls or os.path.exists(os.path.join(path, BACKUP_FILE)):
            urls[path] = database_url(self)
        return PostgreSQLDatabase(path, {"database_url": urls[path]})


class GroupCommitTests(unittest.TestCase):
    """Writes queued together are committed together, each atomic on its own."""

    async def test_group_commit(self) -> None:
        db = PostgreSQLDatabase(self.mktemp(), {"database_url": database_url(self)})
        self.addCleanup(db.close)
        tree = db.open_tree("t")
        await tree.insert(b"warm", b"")  # connected
        groups: list[int] = []
        real = PostgreSQLDatabase._apply_many.__func__  # type: ignore[attr-defined]
        real_apply = PostgreSQLDatabase._apply

        def apply_many(cls: type, conn: object, changes: list) -> list:
            groups.append(len(changes))
            return real(cls, conn, changes)

        def apply(conn: object, puts: list, deletes: list) -> None:
            if any(k == b"boom" for _, k, _ in puts):
                with conn.transaction():  # type: ignore[attr-defined]
                    conn.execute("INSERT INTO conduit_kv VALUES ('t', 'x', 'y')")  # type: ignore[attr-defined]
                    conn.execute("SELECT 1 / 0")  # type: ignore[attr-defined]
            real_apply(conn, puts, deletes)

        self.patch(PostgreSQLDatabase, "_apply_many", classmethod(apply_many))
        self.patch(PostgreSQLDatabase, "_apply", staticmethod(apply))
        writes = []
        for i in range(40):
            batch = db.batch()
            batch.put("t", b"k%02d" % i, b"%d" % i)
            batch.put("t", b"boom" if i == 20 else b"j%02d" % i, b"")
            writes.append(db.write(batch))
        results = []
        for d in writes:
            try:
                results.append(await d)
            except Exception as e:
                results.append(e)
        self.assertEqual(results[:20] + results[21:], [None] * 39)
        self.assertIsInstance(results[20], Exception)
        self.assertLess(len(groups), 40)  # some writes shared a commit
        rows = dict(await tree.scan_prefix(b"k"))
        self.assertEqual(sorted(rows), [b"k%02d" % i for i in range(40) if i != 20])
        self.assertIsNone(await tree.get(b"x"))  # the failed one left nothing
        self.assertEqual(len(await tree.scan_prefix(b"j")), 39)
