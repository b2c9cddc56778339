"""
The storage contract: a database of named, ordered key-value trees.

Every part of the server is written against these interfaces, so a backend
is a handful of methods (see docs/plugins/storage.md). Keys and values are
C{bytes}; keys are ordered bytewise. Every call returns a L{Deferred}, so a
network backend fits; the embedded backends answer with already-fired
Deferreds because that is fastest.

Keys are 1 to 511 bytes long: 511 is LMDB's limit and the empty key does not
exist there, so stores that keep to it run on every backend. Values may be
empty and of any size.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IWriteBatch(Interface):
    """
    A list of changes applied atomically by L{IKeyValueDatabase.write}.

    Changes apply in the order they were added; a later change to the same
    key wins. A batch may touch any number of trees.
    """

    def put(tree: str, key: bytes, value: bytes) -> None:
        """Set C{key} to C{value} in the tree named C{tree}."""

    def delete(tree: str, key: bytes) -> None:
        """Remove C{key} from the tree named C{tree} (no error if absent)."""

    def __len__() -> int:
        """The number of changes in the batch."""

    def __iter__():
        """
        The changes in order, as C{(tree, key, value)} tuples where
        C{value} is C{None} for a delete. Backends read batches only
        through this, so any provider of the interface can be written.
        """


class IKeyValueTree(Interface):
    """One named tree: a sorted map from C{bytes} to C{bytes}."""

    name = Attribute("The tree's name (C{str}).")

    def get(key: bytes):
        """
        Read one key.

        @return: a L{Deferred} firing with the value, or C{None} if absent.
        """

    def get_many(keys):
        """
        Read several keys at once.

        @return: a L{Deferred} firing with a list of values (C{None} for
            absent keys) in the order of C{keys}.
        """

    def iter_from(start: bytes, reverse: bool = False, limit: int | None = None):
        """
        Ordered scan starting at C{start}.

        Forward: keys C{>= start} in ascending order. Reverse: keys
        C{<= start} in descending order.

        @return: a L{Deferred} firing with a list of C{(key, value)}.
        """

    def iter_range(
        start: bytes, end: bytes | None, reverse: bool = False, limit: int | None = None
    ):
        """
        Keys in the half-open range C{[start, end)} (C{end=None}: no upper
        bound), ascending, or descending when C{reverse} is true.

        @return: a L{Deferred} firing with a list of C{(key, value)}.
        """

    def scan_prefix(prefix: bytes, reverse: bool = False, limit: int | None = None):
        """
        Every key starting with C{prefix}, ascending (descending if
        C{reverse}), at most C{limit} of them.

        @return: a L{Deferred} firing with a list of C{(key, value)}.
        """

    def insert(key: bytes, value: bytes):
        """Set one key, atomically. @return: a L{Deferred} firing with C{None}."""

    def remove(key: bytes):
        """Remove one key, atomically. @return: a L{Deferred} firing with C{None}."""

    def increment(key: bytes):
        """
        Atomically add one to the big-endian u64 stored at C{key} (absent
        counts as 0) and store it.

        @return: a L{Deferred} firing with the new value as C{int}.
        """

    def watch_prefix(prefix: bytes):
        """
        Required (the conformance suite checks it; plugins and future
        long-polls use it) although the server's own code waits on its
        notifier instead.

        Wait for the next write (insert, remove, increment, or a batch
        change) of a key starting with C{prefix} in this tree.

        @return: a L{Deferred} that fires with C{None} after that write has
            been committed. Cancelling it unregisters the watch.
        """


class IKeyValueDatabase(Interface):
    """
    A set of named trees with atomic writes across them.

    Besides the methods below, the server relies on:

      - Order: calls take effect in the order they are made. A read sees
        every write whose Deferred has fired (and, if
        L{writes_visible_at_once}, every write already issued).
      - Answering later is allowed everywhere: any Deferred may fire on a
        later reactor turn, and the server stays correct (the conformance
        suite and the API suite run in a "deferred" mode that checks it).
      - An optional synchronous C{flush()}: a backend that groups commits
        commits at once (start-up, tests); others need not have it.
    """

    writes_visible_at_once = Attribute(
        "C{bool}: whether reads see a write as soon as L{write} returned, "
        "before its Deferred fires (group commit). If true, the event "
        "pipeline releases a room's lock before the commit; if false it "
        "holds it until the Deferred fires."
    )

    on_fatal = Attribute(
        "C{None}, or set by the server to a callable taking an exception: "
        "called once if the database lost writes already applied (a failed "
        "group commit) and refuses writes from then on (fail-stop); the "
        "server then exits. A backend that never loses applied writes "
        "never calls it."
    )

    def open_tree(name: str) -> IKeyValueTree:
        """
        Return the tree called C{name}, creating it if it does not exist.
        Synchronous: called once per tree at start-up.
        """

    def batch() -> IWriteBatch:
        """A new, empty write batch for L{write}."""

    def tree_names():
        """
        The name of every tree in the database: opened by this process or
        an earlier one, holding keys or not (the copy command moves every
        tree with it; conduit_tw/storage/copy.py).

        @return: a L{Deferred} firing with a sorted list of C{str}.
        """

    def write(batch: IWriteBatch):
        """
        Apply every change of C{batch} atomically: after a crash either all
        of them are present or none; if any change fails (a value that is
        not C{bytes}, a tree never opened with L{open_tree}), none is
        applied and the Deferred fails. Watches fire after the commit.

        Writes become durable in the order they are issued: when one's
        Deferred fires, every write issued before it is durable too.

        @return: a L{Deferred} firing with C{None} once durable.
        """

    def backup(path: str):
        """
        Write an online, consistent copy of the whole database into the
        directory C{path} (created if needed), which the same backend can
        open.

        @return: a L{Deferred} firing with C{None} when the copy is complete.
        """

    def close() -> None:
        """Release the database. No call is valid afterwards."""


class IStorageBackend(Interface):
    """
    A storage backend, discovered as a Twisted plugin with
    C{getPlugins(IStorageBackend)} and chosen by C{database_backend}.
    """

    name = Attribute("The C{database_backend} value that selects it (C{str}).")
    description = Attribute("One line for operators (C{str}).")
    aliases = Attribute("Other names accepted for it (C{tuple[str, ...]}).")

    def open(path: str, options: dict) -> IKeyValueDatabase:
        """
        Open (creating if needed) the database stored in directory C{path}.
        C{options} holds backend tuning from the config (may be empty).
        """
