"""
The LMDB backend (the C{lmdb} package): C{<path>/data.mdb} and
C{<path>/lock.mdb}, one named sub-database per tree.

Design
======

  - Used from the reactor thread only; every call is a short LMDB
    transaction run synchronously, answered with an already-fired
    L{Deferred}. A batch is one write transaction.
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
from typing import Any, Callable, Iterable

import lmdb  # the PyPI package (absolute import: not this module)
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


class _MustWait(Exception):
    """The map is full while a backup holds a read transaction."""



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
        try:
            with self._env.begin(db=self._dbi) as txn:
                return _succeed(txn.get(key))
        except BaseException:
            return _fail()

    def get_many(self, keys: Iterable[bytes]) -> Deferred[list[bytes | None]]:
        """Read several keys in one snapshot (see L{IKeyValueTree.get_many})."""
        try:
            with self._env.begin(db=self._dbi) as txn:
                get = txn.get
                return _succeed([get(k) for k in keys])
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
        # Keys in [lo, hi) (or [lo, hi] if hi_inclusive), in one snapshot.
        out: list[tuple[bytes, bytes]] = []
        if limit is not None and limit <= 0:
            return _succeed(out)
        try:
            with self._env.begin(db=self._dbi) as txn:
                cur = txn.cursor()
                if not reverse:
                    if not (cur.set_range(lo) if lo else cur.first()):
                        return _succeed(out)
                    items = cur.iternext()
                    if hi is None and limit is None:
                        return _succeed(list(items))
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
                        return _succeed(out)
                    items = cur.iterprev()
                    if not lo and limit is None:
                        return _succeed(list(items))
                    append = out.append
                    for item in items:
                        if item[0] < lo:
                            break
                        append(item)
                        if len(out) == limit:
                            break
            return _succeed(out)
        except BaseException:
            return _fail()

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
        dbi = self._dbi
        return self._db._submit(
            lambda txn: txn.put(key, value, db=dbi) and None, ((self.name, key),)
        )

    def remove(self, key: bytes) -> Deferred[None]:
        """Remove one key (see L{IKeyValueTree.remove})."""
        dbi = self._dbi
        return self._db._submit(
            lambda txn: txn.delete(key, db=dbi) and None, ((self.name, key),)
        )

    def increment(self, key: bytes) -> Deferred[int]:
        """Add one to a u64 counter (see L{IKeyValueTree.increment})."""
        dbi = self._dbi
        name = self.name

        def bump(txn: Any) -> int:
            n = next_counter(txn.get(key, db=dbi), name, key)
            txn.put(key, _U64.pack(n), db=dbi)
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
    """

    #: Each write commits before returning: nothing is visible before it is durable.
    writes_visible_at_once = False
    #: Never called: a failed commit loses only that write (see L{IKeyValueDatabase}).
    on_fatal: Any = None

    def __init__(
        self, path: str, options: dict[str, Any] | None = None, reactor: Any = None
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
        self._watchers = PrefixWatchers()
        self._backups = 0
        self._queued: list[tuple[Callable[[Any], Any], Changes, Deferred[Any]]] | None
        self._queued = None
        self._closing = False

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
            put = txn.put
            delete = txn.delete
            for tree, key, value in batch:
                try:
                    dbi = dbis[tree]
                except KeyError:
                    raise ValueError(f"write: tree {tree!r} was never opened") from None
                if value is None:
                    delete(key, db=dbi)
                else:
                    put(key, value, db=dbi)

        return self._submit(apply, batch)

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
        self._watchers.wake_batch(changes)
        return _succeed(result)

    def _apply(self, fn: Callable[[Any], Any]) -> Any:
        env = self._env
        while True:
            try:
                with env.begin(write=True) as txn:
                    return fn(txn)
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
                    self._env.close()
                    self._abandon_queued()
                else:
                    self._drain()
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
        self._closing = True
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
