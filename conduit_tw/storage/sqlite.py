"""
The SQLite backend: C{<path>/conduit.db}, one C{WITHOUT ROWID} table per
tree (C{key BLOB PRIMARY KEY, value BLOB NOT NULL}), write-ahead log.

Design
======

  - One connection, used only from the reactor thread. Every call runs
    synchronously and returns an already-fired L{Deferred}: a point read is
    a few microseconds, far less than a thread hop would cost. The one slow
    operation, L{SQLiteDatabase.backup}, runs in the reactor's thread pool
    on a connection of its own.
  - The SQL of every tree is built once, in L{SQLiteDatabase.open_tree};
    the statement cache is sized so that every tree's statements stay
    prepared.
  - A batch is one C{BEGIN IMMEDIATE ... COMMIT}; any failure rolls it
    back, so nothing of it is applied. The tables check C{typeof(...) =
    'blob'} so a C{str} or C{int} is refused instead of being stored as
    TEXT or INTEGER (which would also sort apart from every blob).

Durability: C{synchronous = FULL} by default
============================================

Our rule is that nothing acknowledged is ever lost. A write is
acknowledged when its Deferred fires: the client gets its event id, a
federation peer gets the 200 for its transaction (and will never resend
it), and the global stream counter has moved, so sync tokens above the old
value may already be in clients' hands.

  - Process crash (C{kill -9}, OOM killer, a bug): every level but C{OFF}
    survives it. At C{COMMIT} SQLite has written the WAL frames into the
    operating system; the kernel finishes the job without us.
  - Power loss or kernel crash: with C{NORMAL}, WAL mode syncs only at
    checkpoints, so the transactions committed since the last one roll back
    (the file stays consistent, but acknowledged writes vanish). The
    counter then goes backwards and sync tokens already handed out get
    reused for other events: clients silently miss them. With C{FULL} the
    WAL is fsynced at every commit, so an acknowledged write is on disk.

C{FULL} costs one fsync per commit, that is per L{IKeyValueDatabase.write}
or single-key write, not per key (a whole event is one batch); reads are
unaffected. A homeserver commits tens of times a second, not thousands,
so we pay it. Operators who accept losing the last moments before a power
cut (a throwaway test server, a battery-backed box) can set the backend
option C{sqlite_synchronous = "normal"}, which is still safe against
process crashes and never corrupts the file. C{"extra"} is accepted;
C{"off"} is refused, because a power cut can then corrupt the database.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from typing import Any, Iterable

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from conduit_tw.storage.batch import WriteBatch
from conduit_tw.storage.interfaces import (
    IKeyValueDatabase,
    IKeyValueTree,
    IWriteBatch,
)
from conduit_tw.storage.keys import next_counter, prefix_end
from conduit_tw.storage.watchers import PrefixWatchers

FILENAME = "conduit.db"

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}
_U64 = struct.Struct(">Q")
_NO_LIMIT = -1  # SQLite: a negative LIMIT means no limit

_succeed = defer.succeed
_fail = defer.fail


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'



@implementer(IKeyValueTree)
class SQLiteTree:
    """One tree: a table of the database. Made by L{SQLiteDatabase.open_tree}."""

    __slots__ = (
        "name",
        "_db",
        "_cur",
        "_get",
        "_put",
        "_del",
        "_ge_asc",
        "_ge_lt_asc",
        "_le_desc",
        "_ge_desc",
        "_ge_lt_desc",
    )

    def __init__(self, db: SQLiteDatabase, name: str) -> None:
        self.name = name
        self._db = db
        self._cur = db._cur
        t = _quote(name)
        sel = f"SELECT key, value FROM {t} WHERE "
        self._get = f"SELECT value FROM {t} WHERE key = ?"
        self._put = f"INSERT OR REPLACE INTO {t} (key, value) VALUES (?, ?)"
        self._del = f"DELETE FROM {t} WHERE key = ?"
        self._ge_asc = sel + "key >= ? ORDER BY key ASC LIMIT ?"
        self._ge_lt_asc = sel + "key >= ? AND key < ? ORDER BY key ASC LIMIT ?"
        self._le_desc = sel + "key <= ? ORDER BY key DESC LIMIT ?"
        self._ge_desc = sel + "key >= ? ORDER BY key DESC LIMIT ?"
        self._ge_lt_desc = sel + "key >= ? AND key < ? ORDER BY key DESC LIMIT ?"

    def __repr__(self) -> str:
        return f"<SQLiteTree {self.name!r}>"

    def get(self, key: bytes) -> Deferred[bytes | None]:
        """Read one key (see L{IKeyValueTree.get})."""
        try:
            row = self._cur.execute(self._get, (key,)).fetchone()
        except BaseException:
            return _fail()
        return _succeed(None if row is None else row[0])

    def get_many(self, keys: Iterable[bytes]) -> Deferred[list[bytes | None]]:
        """Read several keys (see L{IKeyValueTree.get_many})."""
        execute = self._cur.execute
        sql = self._get
        out: list[bytes | None] = []
        append = out.append
        try:
            for key in keys:
                row = execute(sql, (key,)).fetchone()
                append(None if row is None else row[0])
        except BaseException:
            return _fail()
        return _succeed(out)

    def _select(self, sql: str, args: tuple[Any, ...]) -> Deferred[list[tuple[bytes, bytes]]]:
        try:
            return _succeed(self._cur.execute(sql, args).fetchall())
        except BaseException:
            return _fail()

    def iter_from(
        self, start: bytes, reverse: bool = False, limit: int | None = None
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Ordered scan from C{start} (see L{IKeyValueTree.iter_from})."""
        lim = _NO_LIMIT if limit is None else limit
        return self._select(self._le_desc if reverse else self._ge_asc, (start, lim))

    def iter_range(
        self,
        start: bytes,
        end: bytes | None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Keys in C{[start, end)} (see L{IKeyValueTree.iter_range})."""
        lim = _NO_LIMIT if limit is None else limit
        if end is None:
            return self._select(self._ge_desc if reverse else self._ge_asc, (start, lim))
        return self._select(
            self._ge_lt_desc if reverse else self._ge_lt_asc, (start, end, lim)
        )

    def scan_prefix(
        self, prefix: bytes, reverse: bool = False, limit: int | None = None
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Keys starting with C{prefix} (see L{IKeyValueTree.scan_prefix})."""
        return self.iter_range(prefix, prefix_end(prefix), reverse, limit)

    def insert(self, key: bytes, value: bytes) -> Deferred[None]:
        """Set one key (see L{IKeyValueTree.insert})."""
        try:
            self._cur.execute(self._put, (key, value))
        except BaseException:
            return _fail()
        self._db._watchers.wake(self.name, key)
        return _succeed(None)

    def remove(self, key: bytes) -> Deferred[None]:
        """Remove one key (see L{IKeyValueTree.remove})."""
        try:
            self._cur.execute(self._del, (key,))
        except BaseException:
            return _fail()
        self._db._watchers.wake(self.name, key)
        return _succeed(None)

    def increment(self, key: bytes) -> Deferred[int]:
        """Add one to a u64 counter (see L{IKeyValueTree.increment})."""
        cur = self._cur
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute(self._get, (key,)).fetchone()
                n = next_counter(None if row is None else row[0], self.name, key)
                cur.execute(self._put, (key, _U64.pack(n)))
                cur.execute("COMMIT")
            except BaseException:
                self._db._rollback()
                raise
        except BaseException:
            return _fail()
        self._db._watchers.wake(self.name, key)
        return _succeed(n)

    def watch_prefix(self, prefix: bytes) -> Deferred[None]:
        """Wait for a write under C{prefix} (see L{IKeyValueTree.watch_prefix})."""
        return self._db._watchers.watch(self.name, prefix)


@implementer(IKeyValueDatabase)
class SQLiteDatabase:
    """
    A database in C{<path>/conduit.db}.

    @param path: the directory (created if needed).
    @param options: backend options: C{sqlite_synchronous} (C{"full"},
        the default, C{"normal"} or C{"extra"}; see the module docstring)
        and C{db_cache_capacity_mb} (page cache, default 64).
    @param reactor: the reactor whose thread pool runs L{backup}; the
        global one if C{None}.
    """

    def __init__(
        self, path: str, options: dict[str, Any] | None = None, reactor: Any = None
    ) -> None:
        options = options or {}
        level = str(options.get("sqlite_synchronous", "full")).lower()
        if level not in _SYNCHRONOUS:
            raise ValueError(
                f"sqlite_synchronous must be one of {sorted(_SYNCHRONOUS)}, "
                f"not {level!r} ('off' can corrupt the database on power loss)"
            )
        cache_mb = float(options.get("db_cache_capacity_mb", 64))
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.filename = os.path.join(path, FILENAME)
        self._reactor = reactor
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = sqlite3.connect(
            self.filename, isolation_level=None, cached_statements=4096
        )
        self._cur = self._conn.cursor()
        try:
            mode = self._cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"{self.filename}: cannot use WAL (got {mode!r})")
            self._cur.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[level]}")
            self._cur.execute(f"PRAGMA cache_size = {-int(cache_mb * 1024)}")
        except BaseException:
            self._conn.close()
            raise
        self.synchronous = level
        self._trees: dict[str, SQLiteTree] = {}
        self._put: dict[str, str] = {}
        self._del: dict[str, str] = {}
        self._watchers = PrefixWatchers()
        self._closed = False

    def __repr__(self) -> str:
        return f"<SQLiteDatabase {self.filename!r}>"

    def open_tree(self, name: str) -> SQLiteTree:
        """Return the tree C{name}, creating its table if needed."""
        tree = self._trees.get(name)
        if tree is not None:
            return tree
        if not isinstance(name, str) or not name or "\0" in name:
            raise ValueError(f"bad tree name {name!r}")
        if name.lower().startswith("sqlite_"):
            raise ValueError(f"tree names starting with 'sqlite_' are reserved: {name!r}")
        self._cur.execute(
            f"CREATE TABLE IF NOT EXISTS {_quote(name)} ("
            " key BLOB NOT NULL PRIMARY KEY CHECK (typeof(key) = 'blob'),"
            " value BLOB NOT NULL CHECK (typeof(value) = 'blob')"
            ") WITHOUT ROWID"
        )
        tree = self._trees[name] = SQLiteTree(self, name)
        self._put[name] = tree._put
        self._del[name] = tree._del
        return tree

    def batch(self) -> WriteBatch:
        """A new, empty L{WriteBatch}."""
        return WriteBatch()

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._cur.execute("ROLLBACK")

    def write(self, batch: IWriteBatch) -> Deferred[None]:
        """Apply C{batch} in one transaction (see L{IKeyValueDatabase.write})."""
        execute = self._cur.execute
        put = self._put
        delete = self._del
        tree = None
        try:
            execute("BEGIN IMMEDIATE")
            try:
                for tree, key, value in batch:
                    if value is None:
                        execute(delete[tree], (key,))
                    else:
                        execute(put[tree], (key, value))
                execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except KeyError:
            if tree is not None and tree not in put:
                return _fail(ValueError(f"write: tree {tree!r} was never opened"))
            return _fail()
        except BaseException:
            return _fail()
        self._watchers.wake_batch(batch)
        return _succeed(None)

    def backup(self, path: str) -> Deferred[None]:
        """
        Copy the database into C{<path>/conduit.db} with SQLite's online
        backup API, in a thread, from a connection of its own: WAL lets the
        server keep writing while the copy reads one consistent snapshot.
        """
        if self._reactor is None:
            from twisted.internet import reactor
        else:
            reactor = self._reactor
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(
            reactor, reactor.getThreadPool(), _backup, self.filename, path
        )

    def close(self) -> None:
        """Close the connection; pending watches never fire."""
        if not self._closed:
            self._closed = True
            self._conn.close()


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup(source: str, path: str) -> None:
    """Thread body of L{SQLiteDatabase.backup}."""
    os.makedirs(path, exist_ok=True)
    target = os.path.join(path, FILENAME)
    partial = target + ".partial"
    for leftover in (partial, partial + "-wal", partial + "-shm", partial + "-journal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one consistent snapshot
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
    finally:
        src.close()
    _fsync(partial)
    # A stale WAL next to the new file would be replayed into it: remove
    # the old one first (after the copy succeeded).
    for stale in (target + "-wal", target + "-shm"):
        if os.path.exists(stale):
            os.remove(stale)
    os.replace(partial, target)
    _fsync(path, directory=True)
