"""
The prefix-watch registry behind L{IKeyValueTree.watch_prefix}, shared by
every backend (after Conduit's C{watchers.rs}).

A backend calls L{PrefixWatchers.watch} for C{watch_prefix} and
L{PrefixWatchers.wake} / L{PrefixWatchers.wake_batch} I{after} a write has
committed. Each watch fires once, with C{None}, and is then forgotten.

Cost of a write: nothing at all when no watch is registered in its tree
(the common case). Otherwise the watches of a tree are indexed by prefix,
and the written key is checked only against the prefix I{lengths} in use:
one slice and one dict lookup per distinct length (never more than
C{len(key) + 1}), however many watches there are. Thousands of long-polls
on C{user_id + 0xFF} style prefixes cost a few lookups per write, not a
scan of thousands.
"""

from __future__ import annotations

from typing import Iterable

from twisted.internet.defer import Deferred


class _TreeWatches:
    """The watches of one tree."""

    __slots__ = ("by_prefix", "lengths")

    def __init__(self) -> None:
        # prefix -> its waiting Deferreds (a dict keeps order, removes in O(1))
        self.by_prefix: dict[bytes, dict[Deferred[None], None]] = {}
        # prefix length -> how many registered prefixes have that length
        self.lengths: dict[int, int] = {}

    def collect(self, key: bytes, out: list[Deferred[None]]) -> None:
        """Move every watch matching C{key} into C{out}."""
        by_prefix = self.by_prefix
        klen = len(key)
        lengths = self.lengths
        candidates: Iterable[int] = (
            lengths if len(lengths) <= klen else range(klen + 1)
        )
        hits = None
        for n in candidates:
            if n <= klen:
                p = key[:n]
                if p in by_prefix:
                    if hits is None:
                        hits = [p]
                    else:
                        hits.append(p)
        if hits is not None:
            for p in hits:
                out.extend(by_prefix.pop(p))
                self._forget_length(len(p))

    def _forget_length(self, n: int) -> None:
        left = self.lengths[n] - 1
        if left:
            self.lengths[n] = left
        else:
            del self.lengths[n]


class PrefixWatchers:
    """
    Watches keyed by C{(tree name, key prefix)}.

    Not thread-safe: use it from the reactor thread.
    """

    __slots__ = ("_trees",)

    def __init__(self) -> None:
        self._trees: dict[str, _TreeWatches] = {}

    def __len__(self) -> int:
        """The number of pending watches."""
        return sum(
            len(ds) for t in self._trees.values() for ds in t.by_prefix.values()
        )

    def watch(self, tree: str, prefix: bytes) -> Deferred[None]:
        """
        Register a watch.

        @return: a L{Deferred} firing with C{None} at the next L{wake} of a
            key in C{tree} starting with C{prefix}; cancelling it
            unregisters the watch.
        """
        trees = self._trees
        tw = trees.get(tree)
        if tw is None:
            tw = trees[tree] = _TreeWatches()
        waiting = tw.by_prefix.get(prefix)
        if waiting is None:
            waiting = tw.by_prefix[prefix] = {}
            tw.lengths[len(prefix)] = tw.lengths.get(len(prefix), 0) + 1

        def cancel(d: Deferred[None]) -> None:
            # Only reached while still registered: a woken watch has fired,
            # and cancelling a fired Deferred does not call its canceller.
            del waiting[d]
            if not waiting and tw.by_prefix.get(prefix) is waiting:
                del tw.by_prefix[prefix]
                tw._forget_length(len(prefix))
                if not tw.by_prefix and trees.get(tree) is tw:
                    del trees[tree]

        d: Deferred[None] = Deferred(cancel)
        waiting[d] = None
        return d

    def wake(self, tree: str, key: bytes) -> None:
        """Fire every watch in C{tree} whose prefix C{key} starts with."""
        tw = self._trees.get(tree)
        if tw is None:
            return
        fired: list[Deferred[None]] = []
        tw.collect(key, fired)
        if not tw.by_prefix:
            del self._trees[tree]
        # Fire only once the registry is consistent: callbacks may register
        # new watches (a long-poll loop), write again, or cancel a watch
        # that is further down this list.
        _fire(fired)

    def wake_batch(self, changes: Iterable[tuple[str, bytes, object]]) -> None:
        """
        L{wake} for every C{(tree, key, ...)} of a committed batch; each
        watch fires once even if several keys match it.
        """
        trees = self._trees
        if not trees:
            return
        fired: list[Deferred[None]] = []
        for change in changes:
            tw = trees.get(change[0])
            if tw is not None:
                tw.collect(change[1], fired)
                if not tw.by_prefix:
                    del trees[change[0]]
                    if not trees:
                        break
        _fire(fired)


def _fire(fired: list[Deferred[None]]) -> None:
    for d in fired:
        if not d.called:
            d.callback(None)
