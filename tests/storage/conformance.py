"""
The conformance suite every storage backend passes.

Use it by mixing it into a trial C{TestCase} and defining
L{KeyValueDatabaseConformanceMixin.make_database}::

    class MyBackendTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
        def make_database(self, path):
            return MyDatabase(path, {})

Every call is awaited, so backends that answer later (network ones) pass
the same tests as embedded ones that answer at once.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any, Iterator

from twisted.internet import defer
from twisted.internet.defer import CancelledError
from zope.interface import implementer
from zope.interface.verify import verifyObject

from conduit_tw.storage.database import (
    GLOBAL_TREE,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    IncompatibleDatabase,
    check_schema,
)
from conduit_tw.storage.interfaces import (
    IKeyValueDatabase,
    IKeyValueTree,
    IWriteBatch,
)
from conduit_tw.storage.keys import u64

if TYPE_CHECKING:
    from twisted.trial import unittest

# Keys chosen to trip up anything that is not plain bytewise order: NULs,
# 0xFF, keys that are prefixes of others, high-bit bytes (signedness).
ORDERING_KEYS = [
    b"\x00",
    b"\x00\x00",
    b"\x00\x01",
    b"\x01",
    b"a",
    b"a\x00",
    b"a\x00\xff",
    b"ab",
    b"a\xfe",
    b"a\xff",
    b"a\xff\x00",
    b"a\xff\xff",
    b"b",
    b"\x7f",
    b"\x80",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
]


class _Injected(Exception):
    """The failure injected half-way through a batch."""


@implementer(IWriteBatch)
class _ExplodingBatch:
    """An L{IWriteBatch} whose iteration fails after C{fail_after} changes."""

    def __init__(self, fail_after: int) -> None:
        self.ops: list[tuple[str, bytes, bytes | None]] = []
        self.fail_after = fail_after

    def put(self, tree: str, key: bytes, value: bytes) -> None:
        self.ops.append((tree, key, value))

    def delete(self, tree: str, key: bytes) -> None:
        self.ops.append((tree, key, None))

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[tuple[str, bytes, bytes | None]]:
        for i, op in enumerate(self.ops):
            if i == self.fail_after:
                raise _Injected()
            yield op


if TYPE_CHECKING:  # a mixin for TestCase: let type checkers see its methods
    _Base = unittest.TestCase
else:
    _Base = object


class BackendTestsMixin(_Base):
    """
    For the tests particular to one backend: C{self.path}, a fresh
    directory, and L{open}, which opens L{database_class} there (closed at
    cleanup). Mix into C{twisted.trial.unittest.TestCase}.
    """

    #: The backend: called as C{database_class(path, options)}.
    database_class: Any

    def setUp(self) -> None:
        self.path = self.mktemp()

    def open(self, options: dict | None = None) -> Any:
        db = self.database_class(self.path, options)
        self.addCleanup(db.close)
        return db


class KeyValueDatabaseConformanceMixin(_Base):
    """
    Tests of the L{IKeyValueDatabase} contract. Mix into
    C{twisted.trial.unittest.TestCase} and define L{make_database}.
    """

    def make_database(self, path: str) -> IKeyValueDatabase:
        """Open (creating if needed) a database in directory C{path}."""
        raise NotImplementedError(f"{type(self).__name__} must define make_database")

    # -- helpers -------------------------------------------------------------

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        self._open: list[IKeyValueDatabase] = []
        self.addCleanup(self._close_all)
        self.db = self.open(self.path)

    def open(self, path: str) -> IKeyValueDatabase:
        db = self.make_database(path)
        self._open.append(db)
        return db

    def close(self, db: IKeyValueDatabase) -> None:
        self._open.remove(db)
        db.close()

    def _close_all(self) -> None:
        while self._open:
            self._open.pop().close()

    async def fill(self, tree: IKeyValueTree, keys: list[bytes]) -> None:
        shuffled = list(keys)
        random.Random(4).shuffle(shuffled)
        for k in shuffled:
            await tree.insert(k, b"v" + k)

    @staticmethod
    def kv(keys: list[bytes]) -> list[tuple[bytes, bytes]]:
        return [(k, b"v" + k) for k in keys]

    async def assertFails(self, d: Any, *errors: type[BaseException]) -> BaseException:
        try:
            await d
        except errors as e:
            return e
        raise self.failureException(f"{d!r} did not fail with {errors}")

    # -- interfaces ----------------------------------------------------------

    def test_interfaces(self) -> None:
        """Database, tree and batch provide their interfaces."""
        verifyObject(IKeyValueDatabase, self.db)
        tree = self.db.open_tree("things")
        verifyObject(IKeyValueTree, tree)
        self.assertEqual(tree.name, "things")
        batch = self.db.batch()
        verifyObject(IWriteBatch, batch)
        self.assertEqual(len(batch), 0)

    def test_open_tree_twice(self) -> None:
        """Opening a tree again gives the same tree."""
        a = self.db.open_tree("t")
        b = self.db.open_tree("t")
        self.assertEqual(a.name, b.name)

    async def test_tree_names(self) -> None:
        """Every tree holding keys is listed, sorted, also after reopening."""
        await self.db.open_tree("zeta").insert(b"k", b"")
        await self.db.open_tree("alpha \u00e9 \"q\"").insert(b"k", b"v")
        self.db.open_tree("opened")
        names = await self.db.tree_names()
        self.assertEqual(names, sorted(names))
        self.assertTrue({"zeta", "alpha \u00e9 \"q\"", "opened"} <= set(names), names)
        self.close(self.db)
        db = self.open(self.path)
        names = await db.tree_names()
        self.assertTrue({"zeta", "alpha \u00e9 \"q\""} <= set(names), names)

    # -- point reads and writes ----------------------------------------------

    async def test_get_insert_remove(self) -> None:
        t = self.db.open_tree("t")
        self.assertIsNone(await t.get(b"k"))
        self.assertIsNone(await t.insert(b"k", b"v1"))
        self.assertEqual(await t.get(b"k"), b"v1")
        await t.insert(b"k", b"v2")
        self.assertEqual(await t.get(b"k"), b"v2")
        self.assertIsNone(await t.remove(b"k"))
        self.assertIsNone(await t.get(b"k"))
        await t.remove(b"k")  # absent: no error
        await t.insert(b"empty", b"")
        self.assertEqual(await t.get(b"empty"), b"")

    async def test_trees_are_separate(self) -> None:
        a = self.db.open_tree("a")
        b = self.db.open_tree("b")
        await a.insert(b"k", b"in a")
        self.assertIsNone(await b.get(b"k"))
        self.assertEqual(await b.iter_from(b""), [])

    async def test_get_many(self) -> None:
        t = self.db.open_tree("t")
        await t.insert(b"a", b"1")
        await t.insert(b"c", b"3")
        self.assertEqual(
            await t.get_many([b"c", b"b", b"a", b"c"]), [b"3", None, b"1", b"3"]
        )
        self.assertEqual(await t.get_many([]), [])

    async def test_long_keys(self) -> None:
        """Keys up to 511 bytes work, with binary bytes."""
        t = self.db.open_tree("t")
        keys = [b"\xff" * 511, b"\x00" * 511, b"k" * 510 + b"\xff"]
        for k in keys:
            await t.insert(k, k[:3])
        self.assertEqual([k for k, _ in await t.iter_from(b"")], sorted(keys))
        self.assertEqual(await t.get(b"\xff" * 511), b"\xff\xff\xff")

    async def test_big_values(self) -> None:
        """1 MB values, single and in a batch."""
        t = self.db.open_tree("t")
        big = bytes(range(256)) * 4096
        await t.insert(b"one", big)
        batch = self.db.batch()
        for i in range(3):
            batch.put("t", b"many" + u64(i), big[i:] + big[:i])
        await self.db.write(batch)
        self.assertEqual(await t.get(b"one"), big)
        values = await t.get_many([b"many" + u64(i) for i in range(3)])
        self.assertEqual(values, [big[i:] + big[:i] for i in range(3)])

    # -- ordering and scans --------------------------------------------------

    async def test_binary_ordering(self) -> None:
        """Keys come back in bytewise order, both directions."""
        t = self.db.open_tree("t")
        await self.fill(t, ORDERING_KEYS)
        expected = self.kv(sorted(ORDERING_KEYS))
        self.assertEqual(expected, self.kv(ORDERING_KEYS))  # the list is sorted
        self.assertEqual(await t.iter_from(b""), expected)
        self.assertEqual(await t.iter_from(b"\xff" * 8, reverse=True), expected[::-1])
        self.assertEqual(await t.iter_range(b"", None), expected)
        self.assertEqual(await t.iter_range(b"", None, reverse=True), expected[::-1])
        self.assertEqual(await t.scan_prefix(b""), expected)

    async def test_iter_from(self) -> None:
        t = self.db.open_tree("t")
        await self.fill(t, ORDERING_KEYS)
        s = sorted(ORDERING_KEYS)
        # At a key: forward includes it, reverse includes it.
        i = s.index(b"a\xff")
        self.assertEqual(await t.iter_from(b"a\xff"), self.kv(s[i:]))
        self.assertEqual(await t.iter_from(b"a\xff", reverse=True), self.kv(s[: i + 1][::-1]))
        # Between keys.
        probe = b"a\xff\xff\x00"
        j = min(n for n, k in enumerate(s) if k > probe)
        self.assertEqual(s[j], b"b")
        self.assertEqual(await t.iter_from(probe), self.kv(s[j:]))
        self.assertEqual(await t.iter_from(probe, reverse=True), self.kv(s[:j][::-1]))
        # Beyond either end.
        self.assertEqual(await t.iter_from(b"\xff\xff\xff\x00"), [])
        self.assertEqual(await t.iter_from(b"\x00", reverse=True), self.kv([b"\x00"]))
        self.assertEqual(await t.iter_from(b"", reverse=True), [])

    async def test_iter_from_limit(self) -> None:
        t = self.db.open_tree("t")
        await self.fill(t, ORDERING_KEYS)
        s = sorted(ORDERING_KEYS)
        i = s.index(b"a")
        self.assertEqual(await t.iter_from(b"a", limit=3), self.kv(s[i : i + 3]))
        self.assertEqual(
            await t.iter_from(b"a", reverse=True, limit=3), self.kv(s[i - 2 : i + 1][::-1])
        )
        self.assertEqual(await t.iter_from(b"a", limit=0), [])
        self.assertEqual(await t.iter_from(b"\xff", limit=100), self.kv(s[s.index(b"\xff") :]))
        self.assertEqual(await t.iter_from(b"\x00", reverse=True, limit=100), self.kv([b"\x00"]))

    async def test_iter_range(self) -> None:
        t = self.db.open_tree("t")
        await self.fill(t, ORDERING_KEYS)
        s = sorted(ORDERING_KEYS)

        def between(lo: bytes, hi: bytes | None) -> list[bytes]:
            return [k for k in s if k >= lo and (hi is None or k < hi)]

        cases = [
            (b"a", b"b"),
            (b"a\x00", b"a\xff\xff"),
            (b"\x00", b"\x00\x01"),
            (b"\xff", None),
            (b"\xfe", b"\xff\xff"),
            (b"a\x01", b"a\xfe"),  # nothing in between
            (b"b", b"a"),  # empty: start after end
            (b"ab", b"ab"),  # empty: start == end
        ]
        for lo, hi in cases:
            want = between(lo, hi)
            self.assertEqual(await t.iter_range(lo, hi), self.kv(want), (lo, hi))
            self.assertEqual(
                await t.iter_range(lo, hi, reverse=True), self.kv(want[::-1]), (lo, hi)
            )
            for limit in (0, 1, 2):
                self.assertEqual(
                    await t.iter_range(lo, hi, limit=limit), self.kv(want[:limit])
                )
                self.assertEqual(
                    await t.iter_range(lo, hi, reverse=True, limit=limit),
                    self.kv(want[::-1][:limit]),
                )

    async def test_scan_prefix(self) -> None:
        """Prefix scans, including at 0xFF boundaries, with limits and reversed."""
        t = self.db.open_tree("t")
        await self.fill(t, ORDERING_KEYS)
        for prefix in [b"a", b"a\xff", b"a\x00", b"\xff", b"\xff\xff", b"\x00", b"ab", b"zz", b""]:
            want = [k for k in sorted(ORDERING_KEYS) if k.startswith(prefix)]
            self.assertEqual(await t.scan_prefix(prefix), self.kv(want), prefix)
            self.assertEqual(
                await t.scan_prefix(prefix, reverse=True), self.kv(want[::-1]), prefix
            )
            self.assertEqual(await t.scan_prefix(prefix, limit=2), self.kv(want[:2]))
            self.assertEqual(
                await t.scan_prefix(prefix, reverse=True, limit=2), self.kv(want[::-1][:2])
            )

    async def test_scan_prefix_u64(self) -> None:
        """Big-endian counters under a prefix sort numerically."""
        t = self.db.open_tree("t")
        numbers = [0, 1, 255, 256, 65535, 2**32, 2**64 - 1]
        for n in reversed(numbers):
            await t.insert(b"room\xff" + u64(n), b"")
        await t.insert(b"room\xfe", b"")
        await t.insert(b"roon", b"")
        got = await t.scan_prefix(b"room\xff")
        self.assertEqual([k for k, _ in got], [b"room\xff" + u64(n) for n in numbers])
        last = await t.scan_prefix(b"room\xff", reverse=True, limit=1)
        self.assertEqual(last, [(b"room\xff" + u64(2**64 - 1), b"")])

    # -- batches -------------------------------------------------------------

    async def test_batch_mixing_trees(self) -> None:
        a = self.db.open_tree("a")
        b = self.db.open_tree("b")
        await a.insert(b"gone", b"x")
        batch = self.db.batch()
        batch.put("a", b"k1", b"a1")
        batch.put("b", b"k1", b"b1")
        batch.delete("a", b"gone")
        batch.put("a", b"k2", b"first")
        batch.put("a", b"k2", b"second")  # later change wins
        batch.put("b", b"k3", b"b3")
        batch.delete("b", b"k3")
        batch.delete("b", b"never there")
        self.assertEqual(len(batch), 8)
        self.assertIsNone(await self.db.write(batch))
        self.assertEqual(await a.iter_from(b""), [(b"k1", b"a1"), (b"k2", b"second")])
        self.assertEqual(await b.iter_from(b""), [(b"k1", b"b1")])

    async def test_empty_batch(self) -> None:
        self.assertIsNone(await self.db.write(self.db.batch()))

    async def _assert_untouched(self, a: IKeyValueTree, b: IKeyValueTree) -> None:
        self.assertEqual(await a.iter_from(b""), [(b"old", b"a-old")])
        self.assertEqual(await b.iter_from(b""), [(b"old", b"b-old")])

    async def _prepare_atomicity(self) -> tuple[IKeyValueTree, IKeyValueTree]:
        a = self.db.open_tree("a")
        b = self.db.open_tree("b")
        await a.insert(b"old", b"a-old")
        await b.insert(b"old", b"b-old")
        return a, b

    async def test_atomic_bad_value(self) -> None:
        """A batch with a non-bytes value half-way applies nothing."""
        a, b = await self._prepare_atomicity()
        for bad in ["text", 42]:
            batch = self.db.batch()
            batch.put("a", b"new1", b"x")
            batch.delete("a", b"old")
            batch.put("b", b"old", b"changed")
            batch.put("b", b"new2", bad)  # type: ignore[arg-type]
            batch.put("a", b"new3", b"x")
            await self.assertFails(self.db.write(batch), Exception)
            await self._assert_untouched(a, b)

    async def test_atomic_injected_failure(self) -> None:
        """A batch whose iteration fails half-way applies nothing."""
        a, b = await self._prepare_atomicity()
        batch = _ExplodingBatch(fail_after=3)
        batch.put("a", b"new1", b"x")
        batch.delete("a", b"old")
        batch.put("b", b"old", b"changed")
        batch.put("b", b"new2", b"x")
        await self.assertFails(self.db.write(batch), _Injected)
        await self._assert_untouched(a, b)
        # Any IWriteBatch provider works, not only the backend's own.
        whole = _ExplodingBatch(fail_after=99)
        whole.put("a", b"new", b"ok")
        await self.db.write(whole)
        self.assertEqual(await a.get(b"new"), b"ok")

    async def test_atomic_unknown_tree(self) -> None:
        """A batch touching a tree that was never opened applies nothing."""
        a, b = await self._prepare_atomicity()
        batch = self.db.batch()
        batch.put("a", b"new", b"x")
        batch.put("no such tree", b"k", b"v")
        await self.assertFails(self.db.write(batch), Exception)
        await self._assert_untouched(a, b)

    async def test_usable_after_failure(self) -> None:
        """A failed batch leaves the database usable."""
        a, b = await self._prepare_atomicity()
        batch = self.db.batch()
        batch.put("a", b"k", "text")  # type: ignore[arg-type]
        await self.assertFails(self.db.write(batch), Exception)
        batch = self.db.batch()
        batch.put("a", b"k", b"fine")
        await self.db.write(batch)
        await b.insert(b"k2", b"fine")
        self.assertEqual(await a.get(b"k"), b"fine")
        self.assertEqual(await b.get(b"k2"), b"fine")

    # -- increment -----------------------------------------------------------

    async def test_increment(self) -> None:
        t = self.db.open_tree("t")
        self.assertEqual(await t.increment(b"c"), 1)
        self.assertEqual(await t.increment(b"c"), 2)
        self.assertEqual(await t.get(b"c"), u64(2))
        await t.insert(b"d", u64(2**40))
        self.assertEqual(await t.increment(b"d"), 2**40 + 1)
        self.assertEqual(await t.increment(b"other"), 1)

    async def test_increment_concurrent(self) -> None:
        """Increments issued together hand out each number exactly once."""
        t = self.db.open_tree("t")
        results = await defer.gatherResults([t.increment(b"c") for _ in range(200)])
        self.assertEqual(sorted(results), list(range(1, 201)))
        self.assertEqual(await t.get(b"c"), u64(200))

    # -- watches -------------------------------------------------------------

    async def test_watch_insert(self) -> None:
        """A watch fires on a write under its prefix, after the commit."""
        t = self.db.open_tree("t")
        seen = []
        w = t.watch_prefix(b"user\xff")
        w.addCallback(lambda _: t.get(b"user\xffroom"))
        w.addCallback(seen.append)
        await t.insert(b"user", b"")  # shorter than the prefix
        await t.insert(b"user\xfe", b"")  # other prefix
        await t.insert(b"usex\xff", b"")
        self.assertEqual(seen, [])
        await t.insert(b"user\xffroom", b"joined")
        await w
        self.assertEqual(seen, [b"joined"])  # visible to the woken reader

    async def test_watch_fires_once(self) -> None:
        t = self.db.open_tree("t")
        fired = []
        t.watch_prefix(b"a").addCallback(fired.append)
        await t.insert(b"a1", b"")
        await t.insert(b"a2", b"")
        self.assertEqual(fired, [None])

    async def test_watch_other_tree(self) -> None:
        a = self.db.open_tree("a")
        b = self.db.open_tree("b")
        fired = []
        a.watch_prefix(b"k").addCallback(fired.append)
        await b.insert(b"k", b"")
        batch = self.db.batch()
        batch.put("b", b"k1", b"")
        await self.db.write(batch)
        self.assertEqual(fired, [])
        await a.insert(b"k", b"")
        self.assertEqual(fired, [None])

    async def test_watch_remove_increment_batch(self) -> None:
        t = self.db.open_tree("t")
        await t.insert(b"p1", b"")
        for write in [
            lambda: t.remove(b"p1"),
            lambda: t.remove(b"p-absent"),
            lambda: t.increment(b"p-count"),
        ]:
            w = t.watch_prefix(b"p")
            await write()
            await w
        a = self.db.open_tree("a")
        w1 = t.watch_prefix(b"p")
        w2 = t.watch_prefix(b"")  # everything in t
        w3 = t.watch_prefix(b"q")
        w4 = a.watch_prefix(b"z")
        batch = self.db.batch()
        batch.put("t", b"p2", b"")
        batch.delete("t", b"p3")
        batch.put("a", b"z", b"")
        await self.db.write(batch)
        await defer.gatherResults([w1, w2, w4])
        self.assertFalse(w3.called)
        w3.cancel()
        await self.assertFails(w3, CancelledError)

    async def test_watch_many(self) -> None:
        """Many watches on many prefixes: only the matching ones fire."""
        t = self.db.open_tree("t")
        watches = {}
        for i in range(300):
            prefix = b"@user%d:example.org\xff" % i
            watches[prefix] = [t.watch_prefix(prefix), t.watch_prefix(prefix)]
        short = t.watch_prefix(b"@user1")
        await t.insert(b"@user17:example.org\xffdevice", b"")
        for prefix, ws in watches.items():
            for w in ws:
                self.assertEqual(w.called, prefix == b"@user17:example.org\xff", prefix)
        self.assertTrue(short.called)
        for ws in watches.values():
            for w in ws:
                if not w.called:
                    w.cancel()
                    w.addErrback(lambda f: f.trap(CancelledError))

    async def test_watch_not_on_failed_write(self) -> None:
        t = self.db.open_tree("t")
        w = t.watch_prefix(b"k")
        batch = self.db.batch()
        batch.put("t", b"k", "text")  # type: ignore[arg-type]
        await self.assertFails(self.db.write(batch), Exception)
        batch = _ExplodingBatch(fail_after=1)
        batch.put("t", b"k1", b"")
        batch.put("t", b"k2", b"")
        await self.assertFails(self.db.write(batch), _Injected)
        self.assertFalse(w.called)
        await t.insert(b"k", b"")
        await w

    async def test_watch_cancel(self) -> None:
        """A cancelled watch fails with CancelledError and never fires again."""
        t = self.db.open_tree("t")
        w = t.watch_prefix(b"k")
        other = t.watch_prefix(b"k")
        w.cancel()
        await self.assertFails(w, CancelledError)
        await t.insert(b"k", b"")  # must not touch the cancelled one
        await other
        # A watch cancelled from the callback of another one woken by the
        # same write.
        a = t.watch_prefix(b"x")
        b = t.watch_prefix(b"x")
        a.addCallback(lambda _: b.cancel())
        await t.insert(b"x", b"")
        await a
        await self.assertFails(b, CancelledError)

    async def test_watch_rewatch_in_callback(self) -> None:
        """Watching again from a watch's callback waits for the next write."""
        t = self.db.open_tree("t")
        second = []
        first = t.watch_prefix(b"k")
        first.addCallback(lambda _: second.append(t.watch_prefix(b"k")))
        await t.insert(b"k1", b"")
        await first
        self.assertFalse(second[0].called)
        await t.insert(b"k2", b"")
        await second[0]

    async def test_appends_and_inserts_mixed(self) -> None:
        """
        Keys written in ascending order (appends at the end of the tree),
        then between, before and equal to stored ones, in single writes and
        in batches, with the last key removed and written again: every
        read sees one sorted map, in both directions.
        """
        t = self.db.open_tree("t")
        other = self.db.open_tree("u")
        expected: dict[bytes, bytes] = {}
        for i in range(0, 400, 2):  # ascending: each one sorts last
            await t.insert(u64(i), b"a" * 300 + u64(i))
            expected[u64(i)] = b"a" * 300 + u64(i)
        batch = self.db.batch()
        for i in (401, 1, 403, 399, 405):  # last, between, last, between, last
            batch.put("t", u64(i), b"b%d" % i)
            batch.put("u", u64(1000 - i), b"u")
            expected[u64(i)] = b"b%d" % i
        batch.put("t", u64(405), b"again")  # the last key, rewritten in the same batch
        expected[u64(405)] = b"again"
        await self.db.write(batch)
        await t.insert(u64(0), b"first")  # equal to the first key
        expected[u64(0)] = b"first"
        await t.remove(u64(405))  # the last key goes ...
        del expected[u64(405)]
        await t.insert(u64(404), b"c")  # ... so a smaller one sorts last now
        expected[u64(404)] = b"c"
        await t.insert(u64(406), b"d")
        expected[u64(406)] = b"d"
        items = sorted(expected.items())
        self.assertEqual(await t.iter_from(b""), items)
        self.assertEqual(await t.iter_from(u64(1000), reverse=True), items[::-1])
        self.assertEqual(await t.iter_range(u64(399), u64(405)), [
            (k, v) for k, v in items if u64(399) <= k < u64(405)
        ])
        self.assertEqual(await t.get(u64(403)), b"b403")
        self.assertEqual(len(await other.iter_from(b"")), 5)
        self.close(self.db)
        db = self.open(self.path)
        t = db.open_tree("t")
        await t.insert(u64(500), b"e")  # appends after a reopen
        self.assertEqual(await t.iter_from(b""), items + [(u64(500), b"e")])

    # -- durability, backup, schema ------------------------------------------

    async def test_reopen(self) -> None:
        """Data is there after close and reopen."""
        t = self.db.open_tree("t")
        await self.fill(t, ORDERING_KEYS)
        await t.increment(b"n")
        self.close(self.db)
        db = self.open(self.path)
        t = db.open_tree("t")
        self.assertEqual(await t.get(b"n"), u64(1))
        await t.remove(b"n")
        self.assertEqual(await t.iter_from(b""), self.kv(sorted(ORDERING_KEYS)))

    async def test_backup(self) -> None:
        """A backup opens with the same backend and holds the data at backup time."""
        a = self.db.open_tree("a")
        b = self.db.open_tree("b")
        await self.fill(a, ORDERING_KEYS)
        await b.insert(b"big", b"\x01" * 300_000)
        backup = os.path.join(self.path + "-backup", "nested")
        self.assertIsNone(await self.db.backup(backup))
        await a.insert(b"after", b"")
        copy = self.open(backup)
        self.assertEqual(
            await copy.open_tree("a").iter_from(b""), self.kv(sorted(ORDERING_KEYS))
        )
        self.assertEqual(await copy.open_tree("b").get(b"big"), b"\x01" * 300_000)
        # The original still works, and a second backup replaces the first.
        self.close(copy)
        await self.db.backup(backup)
        copy = self.open(backup)
        self.assertEqual(await copy.open_tree("a").get(b"after"), b"")
        # The copy is a database of its own.
        await copy.open_tree("a").insert(b"only in copy", b"")
        self.assertIsNone(await a.get(b"only in copy"))

    async def test_backup_during_writes(self) -> None:
        """Writes go on while a backup runs; the copy is consistent."""
        t = self.db.open_tree("t")
        for i in range(200):
            batch = self.db.batch()
            batch.put("t", b"x" + u64(i), b"%d" % i)
            batch.put("t", b"y" + u64(i), b"%d" % i)
            await self.db.write(batch)
        backup = self.path + "-backup"
        d = self.db.backup(backup)
        for i in range(200, 300):
            batch = self.db.batch()
            batch.put("t", b"x" + u64(i), b"%d" % i)
            batch.put("t", b"y" + u64(i), b"%d" % i)
            await self.db.write(batch)
        await d
        copy = self.open(backup)
        xs = await copy.open_tree("t").scan_prefix(b"x")
        ys = await copy.open_tree("t").scan_prefix(b"y")
        self.assertGreaterEqual(len(xs), 200)
        self.assertEqual([v for _, v in xs], [v for _, v in ys])

    async def test_schema_version(self) -> None:
        """New databases get SCHEMA_VERSION; newer ones are refused untouched."""
        self.assertEqual(await check_schema(self.db), SCHEMA_VERSION)
        g = self.db.open_tree(GLOBAL_TREE)
        self.assertEqual(await g.get(SCHEMA_KEY), u64(SCHEMA_VERSION))
        self.assertEqual(await check_schema(self.db), SCHEMA_VERSION)
        await g.insert(SCHEMA_KEY, u64(SCHEMA_VERSION + 1))
        self.close(self.db)
        db = self.open(self.path)
        e = await self.assertFails(check_schema(db, "here"), IncompatibleDatabase)
        self.assertIn(str(SCHEMA_VERSION + 1), str(e))
        self.assertIn("newer", str(e))
        g = db.open_tree(GLOBAL_TREE)
        self.assertEqual(await g.get(SCHEMA_KEY), u64(SCHEMA_VERSION + 1))
