"""
The PostgreSQL backend: every tree in one table C{conduit_kv (tree, key,
value)} of the database named by C{database_url}, driven by psycopg 3.

Design
======

  - One table for all trees, primary key C{(tree, key)}: L{open_tree}
    stays synchronous and free (no DDL at run time, no 63-byte identifier
    limit on tree names), one B-tree index serves every tree, and a backup
    is one C{COPY}. C{bytea} compares with C{memcmp}, shorter first on a
    tie: exactly our bytewise order. (A comparison with a table per tree
    is not measured yet: both are one B-tree descent per key, and on this
    backend the round trip dominates.)
  - One connection, used only by one dedicated thread (L{_Worker}): every
    call is queued to it in the order it was made and its Deferred fires
    on the reactor thread with the result. The reactor thread never blocks
    on the network. One connection executed in order gives the guarantees
    of the interface for free: a read sees every write issued before it,
    and writes become durable in the order they were issued.
  - Each write (C{write}, C{insert}, C{remove}, C{increment}) is
    committed before its Deferred fires (C{synchronous_commit} is left at
    the server's setting, C{on} by default: durable at commit).
    C{writes_visible_at_once} is C{False}: a write is visible once its
    Deferred fired. Group commit: batches queued one after the other
    while the thread was busy (concurrent requests) are applied in one
    transaction, each in a savepoint of its own (one that fails fails
    alone), with one commit, so one fsync serves up to L{GROUP_LIMIT}
    writes; the order of calls is kept (a queued read ends a group).
  - A batch is read (iterated) and checked on the reactor thread, so a
    batch that fails to iterate, holds a non-C{bytes} value or names a tree
    never opened fails before anything is sent; the rest is one
    transaction.
  - Faults: a lost connection fails the calls in flight with
    L{DatabaseUnavailable} (nothing of a failed write is committed, or all
    of it was: PostgreSQL's commit is atomic) and the next call reconnects.
    Nothing is acknowledged before its commit.
  - One server per database: the connection holds a session advisory lock
    (L{LOCK_ID}); a second process is refused at start-up.
  - L{backup} copies the table from a C{REPEATABLE READ} snapshot (one
    consistent state, taken on a connection of its own in the reactor's
    thread pool) into C{<path>/conduit.pgcopy} (C{COPY ... BINARY}).
    Opening a database whose table is empty, in a directory holding such a
    file, restores it: that is how a backup is opened ("the same backend
    opens it").
"""

from __future__ import annotations

import os
import queue
import struct
import threading
import time
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure
from zope.interface import implementer

from conduit_tw.errors import StorageUnavailable
from conduit_tw.logging import get_logger
from conduit_tw.storage.batch import WriteBatch
from conduit_tw.storage.interfaces import IKeyValueDatabase, IKeyValueTree, IWriteBatch
from conduit_tw.storage.keys import next_counter, prefix_end
from conduit_tw.storage.watchers import PrefixWatchers

#: The file L{PostgreSQLDatabase.backup} writes in its directory.
BACKUP_FILE = "conduit.pgcopy"
#: The session advisory lock the server holds (one server per database).
LOCK_ID = 0x636F6E64756974  # "conduit"
#: Tries, 0.1 s apart, to take the lock before refusing to start.
LOCK_TRIES = 30
TABLE = "conduit_kv"

_U64 = struct.Struct(">Q")

log = get_logger("conduit_tw.storage.postgresql")


class DatabaseUnavailable(StorageUnavailable):
    """
    The connection to PostgreSQL failed or was lost: the call failed (a
    write was not committed) and can be retried; the next call reconnects.
    """


def parse_url(url: str) -> dict[str, Any]:
    """
    Check a libpq connection string or URI.

    @return: its parameters.
    @raise ValueError: it is not one; the message names C{database_url}.
    """
    from psycopg.conninfo import conninfo_to_dict

    if not isinstance(url, str) or not url.strip():
        raise ValueError("database_url: required by the postgresql backend")
    try:
        return conninfo_to_dict(url)
    except Exception as e:
        raise ValueError(f"database_url: not a libpq URI or connection string ({e})") from None


def describe_url(url: str) -> str:
    """C{user@host:port/dbname} of C{url}, without the password."""
    try:
        p = parse_url(url)
    except ValueError:
        return "?"
    host = p.get("host") or "localhost"
    port = p.get("port") or "5432"
    user = p.get("user") or ""
    return f"{user + '@' if user else ''}{host}:{port}/{p.get('dbname') or user or '?'}"


#: Marks a write queued with L{_Worker.submit_write}.
_GROUP = object()
_NOTHING = object()
#: The most writes committed together (group commit).
GROUP_LIMIT = 64


class _Worker:
    """
    A thread that owns the connection and runs queued calls in order.
    Results come back to the reactor thread with C{callFromThread}.
    """

    def __init__(self, reactor: Any, name: str) -> None:
        self._reactor = reactor
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._queue.put((fn, args, d))
        return d

    def submit_write(self, group: Callable[[list[Any]], list[Any]], change: Any) -> Deferred[Any]:
        """
        Queue a write: consecutive queued writes are handed to C{group}
        together (group commit), which returns one result per change (an
        exception instance for a change that failed alone) or raises (all
        failed).
        """
        d: Deferred[Any] = Deferred()
        self._queue.put((_GROUP, (group, change), d))
        return d

    def _run(self) -> None:
        call = self._reactor.callFromThread
        held: Any = _NOTHING
        while True:
            if held is _NOTHING:
                job = self._queue.get()
            else:
                job, held = held, _NOTHING
            if job is None:
                return
            fn, args, d = job
            if fn is _GROUP:
                jobs = [job]
                while len(jobs) < GROUP_LIMIT:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is not None and nxt[0] is _GROUP and nxt[1][0] == args[0]:
                        jobs.append(nxt)
                    else:
                        held = nxt  # run after the group, in order
                        break
                self._run_group(args[0], jobs)
                continue
            try:
                result = fn(*args)
            except BaseException:
                call(d.errback, Failure())
            else:
                call(d.callback, result)

    def _run_group(self, group: Callable[[list[Any]], list[Any]], jobs: list[Any]) -> None:
        call = self._reactor.callFromThread
        try:
            results = group([args[1] for _, args, _ in jobs])
        except BaseException:
            failure = Failure()
            for _, _, d in jobs:
                call(d.errback, failure)
            return
        for (_, _, d), result in zip(jobs, results):
            if isinstance(result, BaseException):
                call(d.errback, Failure(result))
            else:
                call(d.callback, result)

    def stop(self) -> None:
        """Run what is queued, then end the thread (waits for it)."""
        self._queue.put(None)
        self._thread.join()


@implementer(IKeyValueTree)
class PostgreSQLTree:
    """One tree: the rows of C{conduit_kv} with C{tree = name}."""

    def __init__(self, db: PostgreSQLDatabase, name: str) -> None:
        self.name = name
        self._db = db

    def __repr__(self) -> str:
        return f"<PostgreSQLTree {self.name!r}>"

    def get(self, key: bytes) -> Deferred[bytes | None]:
        """Read one key (see L{IKeyValueTree.get})."""
        return self._db._call(self._db._get, self.name, key)

    def get_many(self, keys: Iterable[bytes]) -> Deferred[list[bytes | None]]:
        """Read several keys in one query (see L{IKeyValueTree.get_many})."""
        return self._db._call(self._db._get_many, self.name, list(keys))

    def iter_from(
        self, start: bytes, reverse: bool = False, limit: int | None = None
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Ordered scan from C{start} (see L{IKeyValueTree.iter_from})."""
        if reverse:
            return self._db._call(self._db._select, self.name, None, start, True, limit)
        return self._db._call(self._db._select, self.name, start, None, False, limit)

    def iter_range(
        self,
        start: bytes,
        end: bytes | None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Keys in C{[start, end)} (see L{IKeyValueTree.iter_range})."""
        return self._db._call(self._db._select, self.name, start, end, reverse, limit, False)

    def scan_prefix(
        self, prefix: bytes, reverse: bool = False, limit: int | None = None
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Keys starting with C{prefix} (see L{IKeyValueTree.scan_prefix})."""
        return self.iter_range(prefix, prefix_end(prefix), reverse, limit)

    def insert(self, key: bytes, value: bytes) -> Deferred[None]:
        """Set one key (see L{IKeyValueTree.insert}); fires after the commit."""
        batch = WriteBatch()
        batch.put(self.name, key, value)
        return self._db.write(batch)

    def remove(self, key: bytes) -> Deferred[None]:
        """Remove one key (see L{IKeyValueTree.remove}); fires after the commit."""
        batch = WriteBatch()
        batch.delete(self.name, key)
        return self._db.write(batch)

    def increment(self, key: bytes) -> Deferred[int]:
        """Add one to a u64 counter (see L{IKeyValueTree.increment})."""
        db = self._db
        d = db._call(db._increment, self.name, key)
        if db._watchers._trees:
            name = self.name

            def wake(n: int) -> int:
                db._watchers.wake(name, key)
                return n

            d.addCallback(wake)
        return d

    def watch_prefix(self, prefix: bytes) -> Deferred[None]:
        """Wait for a write under C{prefix} (see L{IKeyValueTree.watch_prefix})."""
        return self._db._watchers.watch(self.name, prefix)


@implementer(IKeyValueDatabase)
class PostgreSQLDatabase:
    """
    The database at C{options["database_url"]}.

    @param path: a directory: a backup found there (L{BACKUP_FILE}) is
        restored into an empty database; nothing else is kept in it.
    @param options: C{database_url} (libpq URI or connection string,
        required), C{database_password_file} (the password, first line),
        C{database_statement_timeout_ms} (0: none).
    @param reactor: the reactor results are delivered to; the global one
        if C{None}.
    """

    #: A write is visible to reads once its Deferred fired, not before.
    writes_visible_at_once = False

    def __init__(
        self, path: str, options: dict[str, Any] | None = None, reactor: Any = None
    ) -> None:
        options = options or {}
        self.url = options.get("database_url") or ""
        parse_url(self.url)
        timeout = options.get("database_statement_timeout_ms", 0) or 0
        if not isinstance(timeout, int) or timeout < 0:
            raise ValueError(
                f"database_statement_timeout_ms: {timeout!r} is not a number of milliseconds"
            )
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self._reactor = reactor
        self.path = path
        self._timeout = timeout
        self._password: str | None = None
        password_file = options.get("database_password_file")
        if password_file:
            try:
                with open(password_file, encoding="utf-8") as f:
                    self._password = f.readline().rstrip("\r\n")
            except OSError as e:
                raise ValueError(
                    f"database_password_file: cannot read {password_file!r}: {e.strerror}"
                ) from None
        self._conn: Any = None
        self._trees: dict[str, PostgreSQLTree] = {}
        self._watchers = PrefixWatchers()
        self._closed = False
        #: Called once with the error when the database cannot go on; the
        #: PostgreSQL backend never goes fail-stop (a failed write left
        #: nothing behind), so it is never called.
        self.on_fatal: Any = None
        self._worker = _Worker(reactor, f"postgresql {describe_url(self.url)}")
        # Connect (and restore a backup found in path) first; a failure is
        # reported by every call, starting with the schema check.
        self._call(self._restore_if_empty).addErrback(lambda _: None)

    def __repr__(self) -> str:
        return f"<PostgreSQLDatabase {describe_url(self.url)}>"

    # -- on the worker thread -------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        where = describe_url(self.url)
        try:
            conn = psycopg.connect(self.url, **self._connect_args())
        except psycopg.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DatabaseUnavailable(
                f"database_url: cannot connect to PostgreSQL at {where}: {first}"
            ) from None
        try:
            if self._timeout:
                conn.execute(f"SET statement_timeout = {int(self._timeout)}")
            # A server stopped just now (a restart, a copy right after the
            # stop) may hold the lock until PostgreSQL has ended its
            # session: wait a little before refusing.
            for _ in range(LOCK_TRIES):
                (locked,) = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()
                if locked:
                    break
                time.sleep(0.1)
            if not locked:
                raise DatabaseUnavailable(
                    f"database_url: the database {where} is in use by another "
                    "conduit-tw process (it holds the advisory lock); one server per database"
                )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " tree text COLLATE \"C\" NOT NULL,"
                " key bytea NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 511),"
                " value bytea NOT NULL,"
                " PRIMARY KEY (tree, key))"
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        import psycopg

        conn = self._connect()
        try:
            return fn(conn, *args)
        except psycopg.OperationalError as e:
            if conn.closed or conn.broken:
                self._conn = None
                raise DatabaseUnavailable(
                    f"lost the connection to PostgreSQL at {describe_url(self.url)}: "
                    f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}; "
                    "the call failed (nothing of it was committed) and the next one reconnects"
                ) from e
            raise

    def _call(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._closed:
            return fail(DatabaseUnavailable("the database is closed"))
        return self._worker.submit(self._run, fn, *args)

    def _connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
        if self._password is not None:
            args["password"] = self._password
        return args

    def _restore_if_empty(self, conn: Any) -> None:
        source = os.path.join(self.path, BACKUP_FILE)
        if not os.path.exists(source):
            return
        with conn.transaction():
            if conn.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is not None:
                return
            with conn.cursor() as cur, open(source, "rb") as f:
                with cur.copy(f"COPY {TABLE} (tree, key, value) FROM STDIN BINARY") as copy:
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
        log.info("Restored the backup {source} into the empty database", source=source)

    @staticmethod
    def _get(conn: Any, tree: str, key: bytes) -> bytes | None:
        row = conn.execute(
            f"SELECT value FROM {TABLE} WHERE tree = %s AND key = %s", (tree, key)
        ).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _get_many(conn: Any, tree: str, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        rows = conn.execute(
            f"SELECT key, value FROM {TABLE} WHERE tree = %s AND key = ANY(%s)",
            (tree, list(set(keys))),
        ).fetchall()
        found = dict(rows)
        return [found.get(k) for k in keys]

    @staticmethod
    def _select(
        conn: Any,
        tree: str,
        lo: bytes | None,
        hi: bytes | None,
        reverse: bool,
        limit: int | None,
        hi_inclusive: bool = True,
    ) -> list[tuple[bytes, bytes]]:
        if limit is not None and limit <= 0:
            return []
        where = ["tree = %s"]
        args: list[Any] = [tree]
        if lo is not None:
            where.append("key >= %s")
            args.append(lo)
        if hi is not None:
            where.append("key <= %s" if hi_inclusive else "key < %s")
            args.append(hi)
        args.append(limit)
        sql = (
            f"SELECT key, value FROM {TABLE} WHERE {' AND '.join(where)} "
            f"ORDER BY key {'DESC' if reverse else 'ASC'} LIMIT %s"
        )
        return [(bytes(k), bytes(v)) for k, v in conn.execute(sql, args).fetchall()]

    def _apply_group(self, changes: list[tuple[Any, Any]]) -> list[Any]:
        """
        Worker thread: apply several batches in one transaction, each in a
        savepoint (a batch that fails, e.g. a key too long, fails alone),
        with one commit for all (group commit: one fsync). A lost
        connection fails them all, none committed.
        """
        return self._run(self._apply_many, changes)

    @classmethod
    def _apply_many(cls, conn: Any, changes: list[tuple[Any, Any]]) -> list[Any]:
        import psycopg

        if len(changes) == 1:
            cls._apply(conn, *changes[0])
            return [None]
        results: list[Any] = []
        with conn.transaction():
            for puts, deletes in changes:
                try:
                    cls._apply(conn, puts, deletes)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as e:
                    results.append(e)
                else:
                    results.append(None)
        return results

    @staticmethod
    def _apply(conn: Any, puts: list[tuple[str, bytes, bytes]], deletes: list[tuple[str, bytes]]) -> None:
        with conn.transaction():
            with conn.cursor() as cur:
                if deletes:
                    cur.executemany(f"DELETE FROM {TABLE} WHERE tree = %s AND key = %s", deletes)
                if puts:
                    cur.executemany(
                        f"INSERT INTO {TABLE} (tree, key, value) VALUES (%s, %s, %s) "
                        "ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                        puts,
                    )

    @staticmethod
    def _increment(conn: Any, tree: str, key: bytes) -> int:
        with conn.transaction():
            row = conn.execute(
                f"SELECT value FROM {TABLE} WHERE tree = %s AND key = %s FOR UPDATE",
                (tree, key),
            ).fetchone()
            n = next_counter(None if row is None else bytes(row[0]), tree, key)
            conn.execute(
                f"INSERT INTO {TABLE} (tree, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                (tree, key, _U64.pack(n)),
            )
        return n

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- IKeyValueDatabase ---------------------------------------------------

    def open_tree(self, name: str) -> PostgreSQLTree:
        """Return the tree C{name} (rows are created by the first write)."""
        tree = self._trees.get(name)
        if tree is None:
            if not isinstance(name, str) or not name or "\0" in name:
                raise ValueError(f"bad tree name {name!r}")
            tree = self._trees[name] = PostgreSQLTree(self, name)
        return tree

    def batch(self) -> IWriteBatch:
        """A new, empty L{WriteBatch}."""
        return WriteBatch()

    def tree_names(self) -> Deferred[list[str]]:
        """
        Every tree holding a row, and every tree opened by this process
        (see L{IKeyValueDatabase.tree_names}; a tree is rows, so an empty
        one opened by an earlier process is not remembered).
        """
        opened = set(self._trees)
        d = self._call(self._tree_names)
        return d.addCallback(lambda names: sorted(opened.union(names)))

    @staticmethod
    def _tree_names(conn: Any) -> list[str]:
        # A loose index scan: one index descent per tree, not a full scan.
        sql = (
            f"WITH RECURSIVE t(name) AS ("
            f" (SELECT tree FROM {TABLE} ORDER BY tree LIMIT 1)"
            f" UNION ALL SELECT (SELECT tree FROM {TABLE} WHERE tree > t.name"
            f" ORDER BY tree LIMIT 1) FROM t WHERE t.name IS NOT NULL)"
            f" SELECT name FROM t WHERE name IS NOT NULL"
        )
        return [name for (name,) in conn.execute(sql).fetchall()]

    def write(self, batch: IWriteBatch) -> Deferred[None]:
        """
        Apply C{batch} in one transaction (see L{IKeyValueDatabase.write}).
        The batch is read and checked here, on the calling thread; a later
        change of the same key wins.
        """
        try:
            last: dict[tuple[str, bytes], bytes | None] = {}
            trees = self._trees
            for tree, key, value in batch:
                if tree not in trees:
                    raise KeyError(f"tree {tree!r} was never opened")
                if type(key) is not bytes or not 1 <= len(key) <= 511:
                    raise TypeError(f"bad key {key!r:.80} for tree {tree!r}")
                if value is not None and type(value) is not bytes:
                    raise TypeError(f"value for {tree!r} {key!r:.80} is not bytes: {type(value)}")
                last.pop((tree, key), None)  # keep the order of the last change
                last[(tree, key)] = value
        except BaseException:
            return fail()
        if not last:
            return self._call(lambda conn: None)
        puts = [(t, k, v) for (t, k), v in last.items() if v is not None]
        deletes = [(t, k) for (t, k), v in last.items() if v is None]
        if self._closed:
            return fail(DatabaseUnavailable("the database is closed"))
        d = self._worker.submit_write(self._apply_group, (puts, deletes))
        watchers = self._watchers

        def wake(_: None) -> None:
            if watchers._trees:
                for tree, key in last:
                    watchers.wake(tree, key)

        return d.addCallback(wake)

    def backup(self, path: str) -> Deferred[None]:
        """
        Copy every tree from one consistent snapshot (C{REPEATABLE READ})
        into C{<path>/conduit.pgcopy}, in the reactor's thread pool on a
        connection of its own; writes issued before the call are in it.
        """
        from twisted.internet.threads import deferToThreadPool

        url = self.url
        args = self._connect_args()
        reactor = self._reactor
        # Queued behind every earlier write: the snapshot includes them.
        d = self._call(lambda conn: None)
        d.addCallback(
            lambda _: deferToThreadPool(reactor, reactor.getThreadPool(), _backup, url, args, path)
        )
        return d

    def close(self) -> None:
        """Run what is queued, close the connection, end the thread."""
        if self._closed:
            return
        self._worker.submit(self._close_conn).addErrback(
            lambda f: log.failure("Closing the PostgreSQL connection failed", f)
        )
        self._closed = True
        self._worker.stop()


def _backup(url: str, args: dict[str, Any], path: str) -> None:
    """Thread body of L{PostgreSQLDatabase.backup}."""
    import psycopg

    os.makedirs(path, exist_ok=True)
    target = os.path.join(path, BACKUP_FILE)
    partial = target + ".partial"
    with psycopg.connect(url, **args) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with open(partial, "wb") as f, conn.cursor() as cur:
            with cur.copy(
                f"COPY (SELECT tree, key, value FROM {TABLE} ORDER BY tree, key) "
                "TO STDOUT BINARY"
            ) as copy:
                for chunk in copy:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        conn.execute("COMMIT")
    os.replace(partial, target)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
