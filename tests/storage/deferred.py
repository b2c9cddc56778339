"""
The "deferred" mode of the conformance and API suites: a wrapper that makes
any backend answer later, as a network backend does.

Every result of a tree or database method (reads, writes, increments,
watches, backups) is delivered on a later reactor turn
(C{callLater(0)}), never at once, so code that assumes a read or write
completes without yielding to the reactor is caught. Calls still reach the
wrapped backend in the order they are made, as with any backend.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from conduit_tw.storage.interfaces import IKeyValueDatabase, IKeyValueTree, IWriteBatch


def later(d: Deferred[Any], reactor: Any = None) -> Deferred[Any]:
    """A Deferred firing like C{d}, but on a later reactor turn; cancelling it cancels C{d}."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]

    out: Deferred[Any] = Deferred(lambda _: d.cancel())

    def deliver(result: Any) -> None:
        def fire() -> None:
            if out.called:
                if isinstance(result, Failure):
                    result.trap(Exception)  # consumed: the waiter cancelled
                return
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)

        reactor.callLater(0, fire)

    d.addBoth(deliver)
    return out


@implementer(IKeyValueTree)
class DeferredTree:
    """A tree whose every result comes on a later reactor turn."""

    def __init__(self, tree: IKeyValueTree) -> None:
        self._tree = tree
        self.name = tree.name

    def get(self, key: bytes) -> Deferred[Any]:
        return later(self._tree.get(key))

    def get_many(self, keys: Iterable[bytes]) -> Deferred[Any]:
        return later(self._tree.get_many(keys))

    def iter_from(self, start: bytes, reverse: bool = False, limit: int | None = None) -> Deferred[Any]:
        return later(self._tree.iter_from(start, reverse, limit))

    def iter_range(
        self, start: bytes, end: bytes | None, reverse: bool = False, limit: int | None = None
    ) -> Deferred[Any]:
        return later(self._tree.iter_range(start, end, reverse, limit))

    def scan_prefix(self, prefix: bytes, reverse: bool = False, limit: int | None = None) -> Deferred[Any]:
        return later(self._tree.scan_prefix(prefix, reverse, limit))

    def insert(self, key: bytes, value: bytes) -> Deferred[Any]:
        return later(self._tree.insert(key, value))

    def remove(self, key: bytes) -> Deferred[Any]:
        return later(self._tree.remove(key))

    def increment(self, key: bytes) -> Deferred[Any]:
        return later(self._tree.increment(key))

    def watch_prefix(self, prefix: bytes) -> Deferred[Any]:
        return later(self._tree.watch_prefix(prefix))


@implementer(IKeyValueDatabase)
class DeferredDatabase:
    """
    Wraps a database so that it answers later (see the module docstring).
    Writes are not visible before their Deferred fires, as far as the
    server may assume (C{writes_visible_at_once} is false).
    """

    writes_visible_at_once = False

    def __init__(self, db: IKeyValueDatabase) -> None:
        self._db = db
        self._trees: dict[str, DeferredTree] = {}

    @property
    def on_fatal(self) -> Any:
        return getattr(self._db, "on_fatal", None)

    @on_fatal.setter
    def on_fatal(self, fn: Any) -> None:
        self._db.on_fatal = fn  # type: ignore[attr-defined]

    def flush(self) -> None:
        """Let a group-committing backend commit now (tests)."""
        flush = getattr(self._db, "flush", None)
        if flush is not None:
            flush()

    def open_tree(self, name: str) -> DeferredTree:
        tree = self._trees.get(name)
        if tree is None:
            tree = self._trees[name] = DeferredTree(self._db.open_tree(name))
        return tree

    def batch(self) -> IWriteBatch:
        return self._db.batch()

    def tree_names(self) -> Deferred[Any]:
        return later(self._db.tree_names())

    def write(self, batch: IWriteBatch) -> Deferred[Any]:
        return later(self._db.write(batch))

    def backup(self, path: str) -> Deferred[Any]:
        return later(self._db.backup(path))

    def close(self) -> None:
        self._db.close()
