"""
The SQLite backend: C{<path>/conduit.db}, one C{WITHOUT ROWID} table per
tree (C{key BLOB PRIMARY KEY, value BLOB NOT NULL}), write-ahead log.

Design
======

  - One connection, used only from the reactor thread. Reads run
    synchronously and return an already-fired L{Deferred}: a point read is
    a few microseconds, far less than a thread hop would cost. The one slow
    operation, L{SQLiteDatabase.backup}, runs in the reactor's thread pool
    on a connection of its own; the writer thread (below) has its own
    descriptor of the log and its own connection for checkpoints.
  - The SQL of every tree is built once, in L{SQLiteDatabase.open_tree};
    the statement cache is sized so that every tree's statements stay
    prepared.
  - Group commit. Writes (L{SQLiteDatabase.write}, C{insert}, C{remove},
    C{increment}) are applied at once, inside one open transaction
    (C{BEGIN IMMEDIATE} by the first write after a commit), so reads on
    the connection see them immediately. Each batch runs inside a
    C{SAVEPOINT}: a failing batch is rolled back to it, leaving nothing of
    itself and nothing else undone, and its Deferred fails at once. The
    Deferreds of the applied writes fire once the shared C{COMMIT} is
    durable (see "Writer thread" below); the C{COMMIT}
    runs once per reactor turn (C{reactor.callLater(0)}) or at once when
    L{MAX_PENDING} writes are waiting, on L{SQLiteDatabase.flush},
    L{SQLiteDatabase.backup} and L{SQLiteDatabase.close}. Prefix watches
    fire after the C{COMMIT}, before the write Deferreds. The tables check
    C{typeof(...) = 'blob'} so a C{str} or C{int} is refused instead of
    being stored as TEXT or INTEGER (which would also sort apart from every
    blob).

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

C{FULL} costs one fsync per C{COMMIT}, and thanks to group commit a
C{COMMIT} covers every write of a reactor turn (all the events, receipts,
notifications ... applied during it), not one write; reads are unaffected.
Operators who accept losing the last moments before a power cut (a
throwaway test server, a battery-backed box) can set the backend option
C{sqlite_synchronous = "normal"}, which is still safe against process
crashes and never corrupts the file. C{"extra"} is accepted; C{"off"} is
refused, because a power cut can then corrupt the database.

Group commit keeps the rule: a write's Deferred fires only after the
C{COMMIT} that made it durable. Writes become durable in the order they
were applied (one transaction stream), so code may build on a write that
is applied but not durable yet (the next event of a room on the previous
one): a crash loses a suffix of the applied writes, never a prefix, and
never anything acknowledged. What it does not give: a reader on this
connection may see applied data up to one reactor turn before it is
durable; anything that acknowledges (answers a client, notifies a sync)
must wait for the Deferred.

Writer thread
=============

The C{COMMIT} of a turn runs on the reactor thread with C{PRAGMA
synchronous = NORMAL}: in WAL mode it writes the log's frames into the
kernel (enough for a process crash) and does not fsync. The writer thread
(L{conduit_tw.storage.durability.SyncThread}) then C{fdatasync}s the
C{-wal} file, which makes every C{COMMIT} that returned before the call
durable, exactly what C{FULL} does at each commit; only then do the
watches wake and the Deferreds fire (on the reactor thread, in order).
Commits made while the thread waits for the disk share its next fsync.
Checkpoints, which SQLite would run inside a C{COMMIT}
(C{wal_autocheckpoint}, two fsyncs), are turned off on our connection and
run by the thread (C{PASSIVE}, on a connection of its own) when writes
pause and every L{CHECKPOINT_EVERY} syncs. A failed fsync is fail-stop
like a failed C{COMMIT}. L{SQLiteDatabase.flush} does all of it at once
on the calling thread; so does every commit when the reactor cannot take
calls from threads (a test clock) or with C{sync_thread=False}. With
C{sqlite_synchronous = "normal"} writes are acknowledged at the C{COMMIT}.
See docs/architecture.md, "Storage: the writer thread".

Fail-stop. If a C{COMMIT} fails (disk full, I/O error), or an error makes
SQLite roll back the whole open transaction, the writes applied since the
last commit are gone although in-memory state above us (caches, counters)
already believes in them. The database then logs a critical error, fails
the Deferreds of every pending write with L{WritesRefused}, and refuses
every later write with it; reads go on (committed data). The server must
be restarted (after fixing the disk): it never acknowledges, or builds
on, data that is not stored.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
from typing import Any, Iterable

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from conduit_tw.logging import get_logger
from conduit_tw.storage.batch import WriteBatch
from conduit_tw.storage.durability import (
    SyncThread,
    WritesRefused,
    runs_threads,
    simulate_disk,
)
from conduit_tw.storage.interfaces import (
    IKeyValueDatabase,
    IKeyValueTree,
    IWriteBatch,
)
from conduit_tw.storage.keys import next_counter, prefix_end
from conduit_tw.storage.options import choice_option
from conduit_tw.storage.watchers import PrefixWatchers

FILENAME = "conduit.db"

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}
_U64 = struct.Struct(">Q")
_NO_LIMIT = -1  # SQLite: a negative LIMIT means no limit

#: Writes waiting for the C{COMMIT} above which it runs at once instead of
#: at the end of the reactor turn (bounds the transaction and the latency
#: of a turn that writes a lot).
MAX_PENDING = 1000

#: The writer thread checkpoints the write-ahead log into the database file
#: after this many syncs, and whenever writes pause (see L{SyncThread}).
CHECKPOINT_EVERY = 256

_succeed = defer.succeed
_fail = defer.fail

log = get_logger("conduit_tw.storage.sqlite")


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

    # One statement is atomic by itself (a failing one is undone without
    # ending the transaction), so single-key writes need no savepoint.

    def insert(self, key: bytes, value: bytes) -> Deferred[None]:
        """Set one key (see L{IKeyValueTree.insert}); fires after the commit."""
        return self._write_one(self._put, (key, value), key)

    def remove(self, key: bytes) -> Deferred[None]:
        """Remove one key (see L{IKeyValueTree.remove}); fires after the commit."""
        return self._write_one(self._del, (key,), key)

    def _write_one(self, sql: str, params: tuple[Any, ...], key: bytes) -> Deferred[None]:
        """Apply one statement in the open transaction; fires after the commit."""
        db = self._db
        if db._refused is not None or not db._in_txn:
            failed = db._begin()
            if failed is not None:
                return failed
        try:
            self._cur.execute(sql, params)
        except BaseException:
            return db._failed_write()
        return db._pending_write(None, (self.name, key))

    def increment(self, key: bytes) -> Deferred[int]:
        """Add one to a u64 counter (see L{IKeyValueTree.increment})."""
        db = self._db
        if db._refused is not None or not db._in_txn:
            failed = db._begin()
            if failed is not None:
                return failed
        cur = self._cur
        try:
            # Inside the open transaction: increments of the same turn see
            # each other, so each number is handed out once.
            row = cur.execute(self._get, (key,)).fetchone()
            n = next_counter(None if row is None else row[0], self.name, key)
            cur.execute(self._put, (key, _U64.pack(n)))
        except BaseException:
            return db._failed_write()
        return db._pending_write(n, (self.name, key))

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
    @param sync_thread: make commits durable on the writer thread (the
        default) rather than on the reactor thread; the latter is what a
        reactor that cannot take calls from threads (a test clock) gets,
        and what C{bench/slow_fsync.py} compares with.
    """

    def __init__(
        self,
        path: str,
        options: dict[str, Any] | None = None,
        reactor: Any = None,
        sync_thread: bool = True,
    ) -> None:
        options = options or {}
        level = choice_option(
            options, "sqlite_synchronous", _SYNCHRONOUS, "full",
            "'off' can corrupt the database on power loss",
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
            # The COMMIT itself never waits for the disk: durability comes
            # from our own fsync of the log (module docstring, "Writer thread").
            self._cur.execute("PRAGMA synchronous = NORMAL")
            self._cur.execute(f"PRAGMA cache_size = {-int(cache_mb * 1024)}")
            # The savepoint of each batch keeps the original of every page it
            # changes in a sub-journal: in memory, not in a temporary file.
            self._cur.execute("PRAGMA temp_store = MEMORY")
        except BaseException:
            self._conn.close()
            raise
        self.synchronous = level
        #: Whether commits are made durable on the writer thread.
        self.threaded = sync_thread and runs_threads(reactor)
        if self.threaded:
            # Checkpoints (two fsyncs each) run on the writer thread too.
            self._cur.execute("PRAGMA wal_autocheckpoint = 0")
        self._trees: dict[str, SQLiteTree] = {}
        self._put: dict[str, str] = {}
        self._del: dict[str, str] = {}
        self._watchers = PrefixWatchers()
        self._closed = False
        # -- group commit (see the module docstring)
        #: Whether our transaction (BEGIN IMMEDIATE) is open.
        self._in_txn = False
        #: Applied writes waiting for the COMMIT: (Deferred, result, what
        #: to wake: a batch, or a (tree, key) pair).
        self._pending: list[tuple[Deferred[Any], Any, Any]] = []
        self._commit_call: Any = None
        #: Set once a COMMIT failed: every write fails with it (fail-stop).
        self._refused: WritesRefused | None = None
        #: How many COMMITs ran (tests and metrics).
        self.commits = 0
        # -- durability (module docstring, "Writer thread")
        #: Whether a COMMIT is durable only after our fsync of the log.
        self._needs_sync = level != "normal"
        #: Committed groups waiting for the fsync: (commit number, writes).
        self._unsynced: list[tuple[int, list[tuple[Deferred[Any], Any, Any]]]] = []
        self._syncer: SyncThread | None = None
        self._wal_fd: int | None = None
        self._wal_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._syncs = 0
        #: Called once with the L{WritesRefused} when the database goes
        #: fail-stop; the server uses it to exit, because its in-memory
        #: caches may still hold the lost writes.
        self.on_fatal: Any = None

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

    def tree_names(self) -> Deferred[list[str]]:
        """Every tree: the tables of the file (see L{IKeyValueDatabase.tree_names})."""
        try:
            rows = self._cur.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            ).fetchall()
        except BaseException:
            return defer.fail()
        return defer.succeed(sorted(name for (name,) in rows))

    #: Writes are visible to reads as soon as L{write} returns, before they
    #: are durable (L{conduit_tw.storage.txn.StoreTxn.apply} relies on it).
    writes_visible_at_once = True

    def write(self, batch: IWriteBatch) -> Deferred[None]:
        """
        Apply C{batch} atomically in the open transaction (see
        L{IKeyValueDatabase.write}); the Deferred fires after the commit.
        """
        if self._refused is not None or not self._in_txn:
            if not len(batch) and self._refused is None:
                return _succeed(None)  # nothing to apply, nothing pending
            failed = self._begin()
            if failed is not None:
                return failed
        execute = self._cur.execute
        put = self._put
        delete = self._del
        tree = None
        try:
            execute("SAVEPOINT w")
            for tree, key, value in batch:
                if value is None:
                    execute(delete[tree], (key,))
                else:
                    execute(put[tree], (key, value))
            execute("RELEASE w")
        except BaseException as e:
            error = e
            if isinstance(e, KeyError) and tree is not None and tree not in put:
                error = ValueError(f"write: tree {tree!r} was never opened")
            if self._conn.in_transaction:
                try:
                    execute("ROLLBACK TO w")
                    execute("RELEASE w")
                except BaseException:
                    self._refuse_writes(Failure(), "rolling back a failed batch")
            return self._failed_write(error)
        return self._pending_write(None, batch)

    # -- group commit ---------------------------------------------------------

    def _begin(self) -> Deferred[Any] | None:
        """Open our transaction; a failed Deferred if writes cannot go on."""
        if self._refused is not None:
            return _fail(self._refused)
        if self._closed:
            return _fail(sqlite3.ProgrammingError("the database is closed"))
        try:
            self._cur.execute("BEGIN IMMEDIATE")
        except BaseException:
            return _fail()
        self._in_txn = True
        return None

    def _failed_write(self, error: BaseException | None = None) -> Deferred[Any]:
        """
        A write failed and was undone by itself (statement or savepoint);
        if SQLite rolled the whole transaction back instead, the pending
        writes are lost too: fail-stop.
        """
        failure = Failure(error) if error is not None else Failure()
        if self._in_txn and not self._conn.in_transaction:
            if self._pending:
                self._refuse_writes(failure, "a failed write rolled the transaction back")
            else:
                self._in_txn = False  # nothing else was in it: nothing lost
        return _fail(failure)

    def _pending_write(self, result: Any, changes: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending = self._pending
        pending.append((d, result, changes))
        if len(pending) >= MAX_PENDING:
            self._commit(False)
        elif self._commit_call is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            self._commit_call = reactor.callLater(0, self._scheduled_commit)
        return d

    def _scheduled_commit(self) -> None:
        self._commit_call = None
        self._commit(False)

    def flush(self) -> None:
        """
        Commit the open transaction now and make it durable on this thread
        (one fsync of the log with C{FULL}), then wake the watches and fire
        the Deferreds of every write it made durable, in the order they
        were applied. The writer thread does this by itself after the
        commit of every reactor turn; call it to make writes durable at
        once (start-up, tests, backup, close).
        """
        self._commit(True)

    def _commit(self, now: bool) -> None:
        """
        COMMIT the open transaction (which does not wait for the disk),
        then make it durable: at once on this thread if C{now} (or without
        a writer thread), else by asking the writer thread.
        """
        call = self._commit_call
        if call is not None:
            self._commit_call = None
            if call.active():
                call.cancel()
        if self._in_txn:
            pending = self._pending
            self._pending = []
            try:
                self._cur.execute("COMMIT")
            except BaseException:
                self._refuse_writes(Failure(), "COMMIT failed", pending)
                return
            self._in_txn = False
            self.commits += 1
            if self._needs_sync:
                self._unsynced.append((self.commits, pending))
            else:
                self._fire(pending)  # NORMAL: durable enough at COMMIT
            if self.threaded and not now:
                # Even with NORMAL: the thread checkpoints after syncs.
                self._sync_thread().request(self.commits)
                return
        if self._unsynced and (now or not self.threaded):
            done = self.commits
            try:
                self._sync_log()
            except BaseException:
                self._sync_failed(Failure())
                return
            self._synced(done)

    # -- the writer thread ----------------------------------------------------

    def _sync_thread(self) -> SyncThread:
        syncer = self._syncer
        if syncer is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            syncer = self._syncer = SyncThread(
                reactor,
                f"sqlite-writer {self.path}",
                self._thread_sync,
                self._synced,
                self._sync_failed,
                idle=self._checkpoint,
                idle_every=CHECKPOINT_EVERY,
            )
        return syncer

    def _thread_sync(self, _: int) -> None:
        """Writer thread: make every COMMIT made so far durable."""
        if self._needs_sync:
            self._sync_log()

    def _sync_log(self) -> None:
        """
        fsync the write-ahead log (any thread): every COMMIT that returned
        before this call is then durable, as with C{synchronous = FULL}.
        """
        fd = self._wal_fd
        if fd is None:
            with self._wal_lock:
                if self._wal_fd is None:
                    # The log exists once a COMMIT wrote to it; SQLite keeps
                    # it (and this file) while our connection is open. Its
                    # directory entry is made durable once.
                    self._wal_fd = os.open(self.filename + "-wal", os.O_RDONLY)
                    _fsync(self.path, directory=True)
                fd = self._wal_fd
        os.fdatasync(fd)
        simulate_disk()

    def _checkpoint(self) -> None:
        """
        Writer thread: copy the log into the database file (a C{PASSIVE}
        checkpoint never blocks the reactor's connection), so that the log
        restarts from its beginning instead of growing.
        """
        conn = self._checkpointer
        if conn is None:
            conn = self._checkpointer = sqlite3.connect(
                self.filename, isolation_level=None, check_same_thread=False
            )
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        simulate_disk()

    def _synced(self, done: int) -> None:
        """Reactor thread: every COMMIT up to number C{done} is durable."""
        unsynced = self._unsynced
        while unsynced and unsynced[0][0] <= done:
            self._fire(unsynced.pop(0)[1])
            unsynced = self._unsynced  # a callback may have flushed

    def _sync_failed(self, failure: Failure) -> None:
        """An fsync of the log failed: committed writes may be lost (fail-stop)."""
        if self._refused is not None or self._closed:
            return
        lost = [w for _, group in self._unsynced for w in group] + self._pending
        self._unsynced = []
        self._refuse_writes(failure, "syncing the write-ahead log failed", lost)

    def _fire(self, pending: list[tuple[Deferred[Any], Any, Any]]) -> None:
        """Wake the watches, then fire the Deferreds, of durable writes."""
        watchers = self._watchers
        if watchers._trees:
            for _, _, changes in pending:
                if type(changes) is tuple:
                    watchers.wake(changes[0], changes[1])
                else:
                    watchers.wake_batch(changes)
        for d, result, _ in pending:
            if not d.called:  # a waiter may have cancelled it
                d.callback(result)

    def _refuse_writes(
        self,
        failure: Failure,
        what: str,
        pending: list[tuple[Deferred[Any], Any, Any]] | None = None,
    ) -> None:
        """Fail-stop (module docstring): lose the open transaction, refuse writes."""
        if pending is None:
            pending = self._pending
        self._pending = []
        lost = len(pending)
        if self._refused is None:
            self._refused = WritesRefused(
                f"{self.filename}: {what} ({failure.getErrorMessage()}); "
                "the database refuses writes until the server is restarted"
            )
            self._refused.__cause__ = failure.value
        log.critical(
            "{db}: {what}: {error}. {lost} applied writes since the last commit are "
            "lost and failed; refusing every further write (fail-stop). Restart the "
            "server once the cause (disk full? I/O error?) is fixed.",
            db=self.filename,
            what=what,
            error=failure.getErrorMessage(),
            lost=lost,
            log_failure=failure,
        )
        self._in_txn = False
        try:
            if self._conn.in_transaction:
                self._cur.execute("ROLLBACK")
        except BaseException:
            log.failure("{db}: ROLLBACK after a failed commit failed", db=self.filename)
        refused = self._refused
        for d, _, _ in pending:
            if not d.called:
                d.errback(Failure(refused))
        fatal, self.on_fatal = self.on_fatal, None
        if fatal is not None:
            fatal(refused)

    def backup(self, path: str) -> Deferred[None]:
        """
        Copy the database into C{<path>/conduit.db} with SQLite's online
        backup API, in a thread, from a connection of its own: WAL lets the
        server keep writing while the copy reads one consistent snapshot
        (which includes the writes applied before the call: they are
        committed first).
        """
        self.flush()
        if self._reactor is None:
            from twisted.internet import reactor
        else:
            reactor = self._reactor
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(
            reactor, reactor.getThreadPool(), _backup, self.filename, path
        )

    def close(self) -> None:
        """
        Commit the writes applied so far (their Deferreds fire), then close
        the connection; pending watches never fire.
        """
        if self._closed:
            return
        # The Deferreds fired by a commit may write again: commit those too.
        for _ in range(100):
            if not self._in_txn and not self._unsynced:
                break
            self.flush()
        self._closed = True
        if self._syncer is not None:
            self._syncer.stop()
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._in_txn:
            self._refuse_writes(
                Failure(sqlite3.ProgrammingError("writes still coming at close")),
                "closing while writes keep arriving",
            )
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
