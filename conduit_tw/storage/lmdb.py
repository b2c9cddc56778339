"""
The LMDB backend (the C{lmdb} package): C{<path>/data.mdb} and
C{<path>/lock.mdb}, one named sub-database per tree.

Design
======

  - Reads run on the reactor thread, each a short LMDB read transaction
    answered with an already-fired L{Deferred}.
  - Writes: the writer thread (L{conduit_tw.storage.durability.SyncThread})
    runs the write transactions and their syncs, so the reactor never
    waits for the disk. A write is applied at once to the I{overlay}, a
    dict per tree of the keys written but not committed yet, which every
    read consults first (a scan merges it in): reads see applied writes
    at once (C{writes_visible_at_once}). The thread commits every write
    queued while it was busy in one transaction (group commit: one pair
    of fsyncs for all of them), in order; their Deferreds fire, and their
    watches wake, on the reactor thread once that transaction is durable,
    and their overlay entries are dropped then. Batches are checked on
    the reactor thread (trees opened, key sizes, bytes values) so that a
    bad one fails at once and never reaches the thread; a failure there
    (an I/O error) loses applied writes: fail-stop, as with SQLite
    (L{WritesRefused}, C{on_fatal}; reads then see committed data only).
    With a reactor that cannot take calls from threads (a test clock), or
    C{sync_thread=False}, each write is one transaction committed on the
    calling thread, as before.
  - The map (LMDB's fixed address-space reservation) grows by itself: a
    transaction that hits C{MapFullError} is aborted, the map doubled with
    C{set_mapsize} and the transaction run again. LMDB forbids resizing
    while any transaction of the process is open; ours never outlive a
    call, except the read transaction of a running L{LMDBDatabase.backup}.
    So the map is pre-grown before a backup, and if it still fills up during
    one, that write and every later one wait, in order, for the backup to
    end (their Deferreds fire then).
  - Backup is C{env.copy(compact=True)} in a thread: a consistent snapshot
    (one read transaction), compacted, while writes go on.
  - LMDB keys are 1 to 511 bytes (see L{conduit_tw.storage.interfaces}).
  - Appends fill pages (L{_Appender}): a key that sorts after every key
    of its tree is put with C{MDB_APPEND}, so the page that overflows
    keeps all its entries and the new key starts the next page; a plain
    put splits a page in the middle and leaves it half full for good.

Durability: C{sync} and C{metasync} on by default
=================================================

LMDB never overwrites live pages (copy-on-write B+tree; a commit ends by
writing one of two meta pages), so it cannot be corrupted by a process
crash: at commit LMDB has written the pages into the kernel, which
finishes the job after a C{kill -9}. Power loss is the other question:

  - C{lmdb_sync = "full"} (default; C{sync=True, metasync=True}): data
    pages and then the meta page are fsynced at every commit, so an
    acknowledged write survives power loss. See L{conduit_tw.storage.sqlite}
    for why we insist: a lost acknowledged write rewinds the stream counter
    and reuses sync tokens already handed out.
  - C{lmdb_sync = "normal"} (C{metasync=False}): one fsync per commit
    instead of two; a power loss can undo the last transaction, never
    corrupt the file. Process crashes are still safe.
  - C{NOSYNC} / C{writemap} are not offered: with them a power loss can
    corrupt the database.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
from collections import deque
from typing import Any, Callable, Iterable

import lmdb  # the PyPI package (absolute import: not this module)
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

DATA_FILE = "data.mdb"
DEFAULT_MAP_SIZE = 64 << 20
DEFAULT_MAX_DBS = 256

_SYNC = {"full": True, "normal": False}  # -> metasync
_U64 = struct.Struct(">Q")

_succeed = defer.succeed
_fail = defer.fail

Changes = Iterable[tuple[str, bytes, Any]]
#: A write, checked: (tree, key, value or None for a delete).
Op = tuple[str, bytes, "bytes | None"]

#: Longest key LMDB takes (its default C{MDB_MAXKEYSIZE}).
MAX_KEY = 511

log = get_logger("conduit_tw.storage.lmdb")


def _as_bytes(value: Any, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"LMDB {what}s must be bytes, not {type(value).__name__}")


def _checked(tree: str, key: Any, value: Any, dbis: dict[str, Any]) -> Op:
    """One change of a write, checked on the reactor thread (see the module docstring)."""
    if tree not in dbis:
        raise ValueError(f"write: tree {tree!r} was never opened")
    key = _as_bytes(key, "key")
    if not 0 < len(key) <= MAX_KEY:
        raise ValueError(f"LMDB keys must be 1 to {MAX_KEY} bytes long (got {len(key)})")
    return (tree, key, None if value is None else _as_bytes(value, "value"))


class _MustWait(Exception):
    """The map is full while a backup holds a read transaction."""


class _Appender:
    """
    Puts and deletes of the thread that writes (one at a time: LMDB's
    write lock), with C{MDB_APPEND} for keys that sort last in their tree.

    A key greater than the tree's last key is appended: when the last
    page is full LMDB leaves it full and starts a new page with the key
    alone, where a plain put splits the page in the middle, leaving a
    half-empty page behind at every split of an ordered stream of keys
    (short event IDs, stream positions). The last key of each tree is
    cached (read with a cursor when unknown). LMDB checks the order
    itself: an append of a key that does not sort last fails with
    C{MDB_KEYEXIST} before it changes anything (py-lmdb's C{put} returns
    C{False}), e.g. when another process wrote a greater key, and the
    plain put follows; a cached key that is too large (after a delete or
    an aborted transaction) only skips appends until it is read again.
    So the cache decides how pages are filled, never what is stored.
    """

    __slots__ = ("last", "appended")

    def __init__(self) -> None:
        #: dbi -> the tree's last key (b"" when empty); absent: unknown.
        self.last: dict[Any, bytes] = {}
        #: Puts done with MDB_APPEND (tests, bench/lmdb_usage.py).
        self.appended = 0

    def put(self, txn: Any, dbi: Any, key: bytes, value: bytes) -> None:
        """C{txn.put}, appending if C{key} sorts after the tree's last key."""
        last = self.last.get(dbi)
        if last is None:
            cursor = txn.cursor(db=dbi)
            last = self.last[dbi] = cursor.key() if cursor.last() else b""
        if key > last:
            if txn.put(key, value, db=dbi, append=True):
                self.last[dbi] = key
                self.appended += 1
                return
            del self.last[dbi]  # another process wrote a greater key
        txn.put(key, value, db=dbi)

    def delete(self, txn: Any, dbi: Any, key: bytes) -> None:
        """C{txn.delete}; deleting the last key makes it unknown."""
        txn.delete(key, db=dbi)
        if self.last.get(dbi) == key:
            del self.last[dbi]

    def aborted(self) -> None:
        """A write transaction was aborted: forget what it changed."""
        self.last.clear()



@implementer(IKeyValueTree)
class LMDBTree:
    """One tree: a named LMDB database. Made by L{LMDBDatabase.open_tree}."""

    __slots__ = ("name", "_db", "_env", "_dbi")

    def __init__(self, db: LMDBDatabase, name: str, dbi: Any) -> None:
        self.name = name
        self._db = db
        self._env = db._env
        self._dbi = dbi

    def __repr__(self) -> str:
        return f"<LMDBTree {self.name!r}>"

    def get(self, key: bytes) -> Deferred[bytes | None]:
        """Read one key (see L{IKeyValueTree.get})."""
        overlay = self._db._overlay.get(self.name)
        if overlay:
            applied = overlay.get(key)
            if applied is not None:
                return _succeed(applied[1])
        try:
            with self._env.begin(db=self._dbi) as txn:
                return _succeed(txn.get(key))
        except BaseException:
            return _fail()

    def get_many(self, keys: Iterable[bytes]) -> Deferred[list[bytes | None]]:
        """Read several keys in one snapshot (see L{IKeyValueTree.get_many})."""
        overlay = self._db._overlay.get(self.name)
        try:
            with self._env.begin(db=self._dbi) as txn:
                get = txn.get
                if not overlay:
                    return _succeed([get(k) for k in keys])
                out = []
                for k in keys:
                    applied = overlay.get(k)
                    out.append(get(k) if applied is None else applied[1])
                return _succeed(out)
        except BaseException:
            return _fail()

    def _scan(
        self,
        lo: bytes,
        hi: bytes | None,
        reverse: bool,
        limit: int | None,
        hi_inclusive: bool = False,
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        # Keys in [lo, hi) (or [lo, hi] if hi_inclusive), in one snapshot,
        # with the applied writes of the overlay merged in.
        if limit is not None and limit <= 0:
            return _succeed([])
        try:
            overlay = self._db._overlay.get(self.name)
            if overlay:
                inside = [
                    k
                    for k in overlay
                    if k >= lo and (hi is None or k < hi or (hi_inclusive and k == hi))
                ]
                if inside:
                    # Each overlay key hides at most one stored item.
                    wider = None if limit is None else limit + len(inside)
                    found = dict(self._scan_db(lo, hi, reverse, wider, hi_inclusive))
                    for k in inside:
                        value = overlay[k][1]
                        if value is None:
                            found.pop(k, None)
                        else:
                            found[k] = value
                    merged = sorted(found.items(), reverse=reverse)
                    return _succeed(merged if limit is None else merged[:limit])
            return _succeed(self._scan_db(lo, hi, reverse, limit, hi_inclusive))
        except BaseException:
            return _fail()

    def _scan_db(
        self,
        lo: bytes,
        hi: bytes | None,
        reverse: bool,
        limit: int | None,
        hi_inclusive: bool,
    ) -> list[tuple[bytes, bytes]]:
        # What is committed: keys in [lo, hi) (or [lo, hi]), one snapshot.
        out: list[tuple[bytes, bytes]] = []
        with self._env.begin(db=self._dbi) as txn:
            cur = txn.cursor()
            if not reverse:
                if not (cur.set_range(lo) if lo else cur.first()):
                    return out
                items = cur.iternext()
                if hi is None and limit is None:
                    return list(items)
                append = out.append
                for item in items:
                    if hi is not None and item[0] >= hi:
                        break
                    append(item)
                    if len(out) == limit:
                        break
            else:
                if hi is None:
                    ok = cur.last()
                elif cur.set_range(hi):
                    if hi_inclusive and cur.key() == hi:
                        ok = True
                    else:
                        ok = cur.prev()
                else:
                    ok = cur.last()
                if not ok:
                    return out
                items = cur.iterprev()
                if not lo and limit is None:
                    return list(items)
                append = out.append
                for item in items:
                    if item[0] < lo:
                        break
                    append(item)
                    if len(out) == limit:
                        break
        return out

    def iter_from(
        self, start: bytes, reverse: bool = False, limit: int | None = None
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Ordered scan from C{start} (see L{IKeyValueTree.iter_from})."""
        if reverse:
            return self._scan(b"", start, True, limit, hi_inclusive=True)
        return self._scan(start, None, False, limit)

    def iter_range(
        self,
        start: bytes,
        end: bytes | None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Keys in C{[start, end)} (see L{IKeyValueTree.iter_range})."""
        return self._scan(start, end, reverse, limit)

    def scan_prefix(
        self, prefix: bytes, reverse: bool = False, limit: int | None = None
    ) -> Deferred[list[tuple[bytes, bytes]]]:
        """Keys starting with C{prefix} (see L{IKeyValueTree.scan_prefix})."""
        return self._scan(prefix, prefix_end(prefix), reverse, limit)

    def insert(self, key: bytes, value: bytes) -> Deferred[None]:
        """Set one key (see L{IKeyValueTree.insert})."""
        db = self._db
        if db.threaded:
            return db._queue_write(((self.name, key, value),), None)
        dbi = self._dbi
        return db._submit(
            lambda txn: db._appender.put(txn, dbi, key, value), ((self.name, key),)
        )

    def remove(self, key: bytes) -> Deferred[None]:
        """Remove one key (see L{IKeyValueTree.remove})."""
        db = self._db
        if db.threaded:
            return db._queue_write(((self.name, key, None),), None)
        dbi = self._dbi
        return db._submit(
            lambda txn: db._appender.delete(txn, dbi, key), ((self.name, key),)
        )

    def increment(self, key: bytes) -> Deferred[int]:
        """Add one to a u64 counter (see L{IKeyValueTree.increment})."""
        dbi = self._dbi
        name = self.name
        db = self._db
        if db.threaded:
            # The current value, applied or committed, is read here: the
            # increments of the reactor thread see each other.
            try:
                key = _checked(name, key, None, db._dbis)[1]
                overlay = db._overlay.get(name)
                applied = overlay.get(key) if overlay else None
                if applied is None:
                    with self._env.begin(db=dbi) as txn:
                        current = txn.get(key)
                else:
                    current = applied[1]
                n = next_counter(current, name, key)
            except BaseException:
                return _fail()
            return db._queue_write(((name, key, _U64.pack(n)),), n)

        def bump(txn: Any) -> int:
            n = next_counter(txn.get(key, db=dbi), name, key)
            db._appender.put(txn, dbi, key, _U64.pack(n))
            return n

        return self._db._submit(bump, ((name, key),))

    def watch_prefix(self, prefix: bytes) -> Deferred[None]:
        """Wait for a write under C{prefix} (see L{IKeyValueTree.watch_prefix})."""
        return self._db._watchers.watch(self.name, prefix)


@implementer(IKeyValueDatabase)
class LMDBDatabase:
    """
    An LMDB environment in directory C{path}.

    @param options: backend options: C{lmdb_sync} (C{"full"}, the default,
        or C{"normal"}; see the module docstring), C{lmdb_map_size}
        (initial map size in bytes, default 64 MiB; it grows by itself),
        C{lmdb_max_dbs} (most trees, default 256).
    @param reactor: the reactor whose thread pool runs L{backup}; the
        global one if C{None}.
    @param sync_thread: commit on the writer thread (the default), or on
        the calling thread as a reactor without threads (a test clock)
        gets; C{bench/slow_fsync.py} compares the two.
    """

    #: Reads see a write as soon as L{write} returned (the overlay).
    writes_visible_at_once = True

    def __init__(
        self,
        path: str,
        options: dict[str, Any] | None = None,
        reactor: Any = None,
        sync_thread: bool = True,
    ) -> None:
        options = options or {}
        level = choice_option(
            options, "lmdb_sync", _SYNC, "full",
            "no-sync modes can corrupt the database on power loss",
        )
        map_size = int(options.get("lmdb_map_size", DEFAULT_MAP_SIZE))
        os.makedirs(path, exist_ok=True)
        data = os.path.join(path, DATA_FILE)
        if os.path.exists(data):
            # Room to grow without resizing right after start-up.
            map_size = max(map_size, 2 * os.path.getsize(data))
        self.path = path
        self.sync = level
        self._reactor = reactor
        self._env = lmdb.open(
            path,
            map_size=map_size,
            max_dbs=int(options.get("lmdb_max_dbs", DEFAULT_MAX_DBS)),
            subdir=True,
            sync=True,
            metasync=_SYNC[level],
            writemap=False,
            lock=True,
        )
        self._env.reader_check()  # drop reader slots of killed processes
        self._trees: dict[str, LMDBTree] = {}
        self._dbis: dict[str, Any] = {}
        self._appender = _Appender()
        self._watchers = PrefixWatchers()
        self._backups = 0
        self._queued: list[tuple[Callable[[Any], Any], Changes, Deferred[Any]]] | None
        self._queued = None
        self._closing = False
        #: Whether writes are committed on the writer thread.
        self.threaded = sync_thread and runs_threads(reactor)
        #: Called once with the L{WritesRefused} if the writer thread lost
        #: applied writes (fail-stop); the server exits then.
        self.on_fatal: Any = None
        # -- the writer thread (module docstring)
        #: tree -> key -> (write number, value or None): applied, not committed.
        self._overlay: dict[str, dict[bytes, tuple[int, bytes | None]]] = {}
        #: Numbered writes for the thread: (number, [(dbi, key, value)]).
        self._to_commit: deque[tuple[int, list[tuple[Any, bytes, bytes | None]]]] = deque()
        #: Writes waiting for their commit: (number, Deferred, result, ops).
        self._waiting: deque[tuple[int, Deferred[Any], Any, tuple[Op, ...]]] = deque()
        self._applied = 0
        self._writer: SyncThread | None = None
        self._refused: WritesRefused | None = None
        #: The thread found the map full: it waits until the reactor grew it.
        self._grow_wanted = threading.Event()
        self._grown = threading.Event()

    def __repr__(self) -> str:
        return f"<LMDBDatabase {self.path!r}>"

    @property
    def map_size(self) -> int:
        """The current map size in bytes."""
        return int(self._env.info()["map_size"])

    def open_tree(self, name: str) -> LMDBTree:
        """Return the tree C{name}, creating its sub-database if needed."""
        tree = self._trees.get(name)
        if tree is not None:
            return tree
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad tree name {name!r}")
        dbi = self._open_db(name)
        self._dbis[name] = dbi
        tree = self._trees[name] = LMDBTree(self, name, dbi)
        return tree

    def _open_db(self, name: str) -> Any:
        while True:
            try:
                return self._env.open_db(name.encode("utf-8"), create=True)
            except lmdb.MapFullError:
                self._grow()

    def batch(self) -> WriteBatch:
        """A new, empty L{WriteBatch}."""
        return WriteBatch()

    def tree_names(self) -> Deferred[list[str]]:
        """
        Every tree: the named sub-databases, which LMDB lists as the keys
        of its main database (see L{IKeyValueDatabase.tree_names}).
        """
        try:
            with self._env.begin() as txn:
                names = [bytes(k).decode("utf-8") for k, _ in txn.cursor()]
        except BaseException:
            return _fail()
        return _succeed(sorted(names))

    def write(self, batch: IWriteBatch) -> Deferred[None]:
        """Apply C{batch} in one write transaction (see L{IKeyValueDatabase.write})."""
        dbis = self._dbis

        def apply(txn: Any) -> None:
            put = self._appender.put
            delete = self._appender.delete
            for tree, key, value in batch:
                try:
                    dbi = dbis[tree]
                except KeyError:
                    raise ValueError(f"write: tree {tree!r} was never opened") from None
                if value is None:
                    delete(txn, dbi, key)
                else:
                    put(txn, dbi, key, value)

        if self.threaded:
            return self._queue_write(batch, None)
        return self._submit(apply, batch)

    # -- the writer thread ---------------------------------------------------

    def _queue_write(self, changes: Iterable[tuple[str, bytes, Any]], result: Any) -> Deferred[Any]:
        """Check and apply a write to the overlay; queue it for the thread."""
        if self._refused is not None:
            return _fail(self._refused)
        if self._closing:
            return _fail(RuntimeError("the database is closed"))
        dbis = self._dbis
        try:
            ops = tuple([_checked(tree, key, value, dbis) for tree, key, value in changes])
        except BaseException:
            return _fail()
        if not ops:
            return _succeed(result)
        self._applied += 1
        n = self._applied
        overlay = self._overlay
        for tree, key, value in ops:
            applied = overlay.get(tree)
            if applied is None:
                applied = overlay[tree] = {}
            applied[key] = (n, value)
        self._to_commit.append((n, [(dbis[tree], key, value) for tree, key, value in ops]))
        d: Deferred[Any] = Deferred()
        self._waiting.append((n, d, result, ops))
        writer = self._writer
        if writer is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            writer = self._writer = SyncThread(
                reactor, f"lmdb-writer {self.path}", self._commit, self._committed, self._lost
            )
        writer.request(n)
        return d

    def _commit(self, upto: int) -> None:
        """Writer thread: commit the queued writes up to number C{upto}, in one transaction."""
        queue = self._to_commit
        ops: list[tuple[Any, bytes, bytes | None]] = []
        while queue and queue[0][0] <= upto:
            ops.extend(queue.popleft()[1])
        env = self._env
        appender = self._appender
        while True:
            try:
                with env.begin(write=True) as txn:
                    put = appender.put
                    delete = appender.delete
                    for dbi, key, value in ops:
                        if value is None:
                            delete(txn, dbi, key)
                        else:
                            put(txn, dbi, key, value)
                break
            except (lmdb.MapFullError, lmdb.MapResizedError):
                appender.aborted()
                # Only the reactor thread may resize (no transaction of the
                # process may be open then): ask it, and wait.
                self._grown.clear()
                self._grow_wanted.set()
                self._writer_reactor().callFromThread(self._grow_for_writer)
                self._grown.wait()
            except BaseException:
                appender.aborted()
                raise
        simulate_disk()

    def _writer_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    def _grow_for_writer(self) -> None:
        """Reactor thread: double the map for the waiting writer thread."""
        if not self._grow_wanted.is_set() or self._backups:
            return  # done already, or after the backup (see backup())
        self._grow_wanted.clear()
        self._grow()
        self._grown.set()

    def _committed(self, upto: int) -> None:
        """Reactor thread: the writes up to number C{upto} are durable."""
        waiting = self._waiting
        overlay = self._overlay
        done = []
        while waiting and waiting[0][0] <= upto:
            item = waiting.popleft()
            done.append(item)
            for tree, key, _ in item[3]:
                applied = overlay.get(tree)
                if applied is not None:
                    entry = applied.get(key)
                    if entry is not None and entry[0] <= upto:
                        del applied[key]
                        if not applied:
                            del overlay[tree]
        if not done:
            return
        watchers = self._watchers
        if watchers._trees:
            for _, _, _, ops in done:
                watchers.wake_batch(ops)
        for _, d, result, _ in done:
            if not d.called:  # a waiter may have cancelled it
                d.callback(result)

    def _lost(self, failure: Failure) -> None:
        """Reactor thread: a commit failed; its writes and the later ones are lost (fail-stop)."""
        if self._refused is not None:
            return
        self._refused = refused = WritesRefused(
            f"{self.path}: committing failed ({failure.getErrorMessage()}); "
            "the database refuses writes until the server is restarted"
        )
        refused.__cause__ = failure.value
        waiting, self._waiting = self._waiting, deque()
        self._overlay = {}
        self._to_commit.clear()
        log.critical(
            "{db}: a commit failed: {error}. {lost} applied writes are lost and "
            "failed; refusing every further write (fail-stop). Restart the server "
            "once the cause (disk full? I/O error?) is fixed.",
            db=self.path,
            error=failure.getErrorMessage(),
            lost=len(waiting),
            log_failure=failure,
        )
        for _, d, _, _ in waiting:
            if not d.called:
                d.errback(Failure(refused))
        fatal, self.on_fatal = self.on_fatal, None
        if fatal is not None:
            fatal(refused)

    def flush(self) -> None:
        """
        Wait (blocking this thread) until every write issued so far is
        committed, and fire their Deferreds (start-up, tests, close,
        backup). With a backup running and the map full it returns early:
        those writes wait for the backup.
        """
        writer = self._writer
        if writer is None:
            return
        upto = self._applied

        def poll() -> None:
            if self._backups and self._grow_wanted.is_set():
                raise _MustWait()
            self._grow_for_writer()

        try:
            handled = writer.wait(upto, poll=poll)
        except _MustWait:
            return
        if handled:
            self._committed(upto)
        elif writer.failure is not None:
            self._lost(writer.failure)

    # -- the write path ------------------------------------------------------

    def _submit(self, fn: Callable[[Any], Any], changes: Changes) -> Deferred[Any]:
        """Run C{fn(txn)} in a write transaction, then wake watchers."""
        if self._queued is not None:
            d: Deferred[Any] = Deferred()
            self._queued.append((fn, changes, d))
            return d
        try:
            result = self._apply(fn)
        except _MustWait:
            d = Deferred()
            self._queued = [(fn, changes, d)]
            return d
        except BaseException:
            return _fail()
        simulate_disk()
        self._watchers.wake_batch(changes)
        return _succeed(result)

    def _apply(self, fn: Callable[[Any], Any]) -> Any:
        env = self._env
        while True:
            try:
                try:
                    with env.begin(write=True) as txn:
                        return fn(txn)
                except BaseException:
                    self._appender.aborted()
                    raise
            except lmdb.MapFullError:
                if self._backups:
                    raise _MustWait() from None
                self._grow()
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # adopt the size another process set
            except lmdb.BadValsizeError as e:
                raise ValueError(f"LMDB keys must be 1 to 511 bytes long ({e})") from None

    def _grow(self) -> None:
        self._env.set_mapsize(self.map_size * 2)

    def _drain(self) -> None:
        """Run the writes that waited for a backup, in order."""
        queued = self._queued
        while queued and not self._backups:
            fn, changes, d = queued[0]
            try:
                result = self._apply(fn)
            except _MustWait:
                return
            except BaseException:
                del queued[0]
                d.errback()
                continue
            del queued[0]
            self._watchers.wake_batch(changes)
            d.callback(result)
        if not queued and self._queued is queued:
            self._queued = None

    # -- backup and close ----------------------------------------------------

    def backup(self, path: str) -> Deferred[None]:
        """
        Copy the environment into C{<path>/data.mdb} (compacted), in a
        thread, from one consistent snapshot; writes go on meanwhile.
        """
        if self._reactor is None:
            from twisted.internet import reactor
        else:
            reactor = self._reactor
        from twisted.internet.threads import deferToThreadPool

        if not self._backups:
            self.flush()  # the copy includes the writes applied before the call
            # Leave room so that writes rarely have to wait for the copy.
            info = self._env.info()
            used = (info["last_pgno"] + 1) * self._env.stat()["psize"]
            if used * 2 > info["map_size"]:
                self._env.set_mapsize(info["map_size"] * 2)
        self._backups += 1
        d = deferToThreadPool(reactor, reactor.getThreadPool(), _copy, self._env, path)

        def finished(result: Any) -> Any:
            self._backups -= 1
            if not self._backups:
                if self._closing:
                    if self._writer is not None:
                        self._grow_for_writer()  # if it waited for the map
                        self._writer.stop()
                    self._env.close()
                    self._abandon_queued()
                else:
                    self._drain()
                    self._grow_for_writer()
            return result

        return d.addBoth(finished)

    def _abandon_queued(self) -> None:
        queued, self._queued = self._queued or [], None
        for _, _, d in queued:
            d.errback(RuntimeError("database closed before this write could run"))

    def close(self) -> None:
        """Close the environment (after a running backup); pending watches never fire."""
        if self._closing:
            return
        # Commit what was applied, also writes made by the callbacks.
        for _ in range(100):
            if not self._waiting:
                break
            self.flush()
            if self._backups:
                break
        self._closing = True
        if self._writer is not None and not self._backups:
            self._writer.stop()
        if not self._backups:
            self._env.close()


def _copy(env: Any, path: str) -> None:
    """Thread body of L{LMDBDatabase.backup}."""
    os.makedirs(path, exist_ok=True)
    partial = os.path.join(path, ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    os.mkdir(partial)
    env.copy(partial, compact=True)
    copied = os.path.join(partial, DATA_FILE)
    fd = os.open(copied, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(copied, os.path.join(path, DATA_FILE))
    shutil.rmtree(partial, ignore_errors=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
