"""Tests for L{conduit_tw.storage.copy}: copying a database between backends and verifying it."""

from __future__ import annotations

import os

from twisted.trial import unittest

from conduit_tw.storage import copy as copy_module
from conduit_tw.storage.copy import (
    CopyError,
    TargetNotEmpty,
    copy_database,
    digest_tree,
    verify_copy,
)
from conduit_tw.storage.keys import u64
from conduit_tw.storage.lmdb import LMDBDatabase
from conduit_tw.storage.sqlite import SQLiteDatabase
from tests.storage.deferred import DeferredDatabase


class CopyTests(unittest.TestCase):
    """SQLite to LMDB (and a source answering later), in pages smaller than the trees."""

    def setUp(self) -> None:
        self.patch(copy_module, "PAGE", 7)
        self.patch(copy_module, "BATCH_ROWS", 10)
        self.source = SQLiteDatabase(os.path.abspath(self.mktemp()))
        self.addCleanup(self.source.close)
        self.target = LMDBDatabase(os.path.abspath(self.mktemp()))
        self.addCleanup(self.target.close)

    async def fill(self) -> None:
        batch = self.source.batch()
        for name, n in (("a", 50), ("b", 7), ("c", 1), ("empty", 0)):
            self.source.open_tree(name)
            for i in range(n):
                batch.put(name, u64(i) + b"\xff" * (i % 3), b"v%d" % i * i)
        batch.put("a", b"\x00", b"")
        batch.put("a", b"\xff" * 511, b"last")
        await self.source.write(batch)

    async def test_copy_and_verify(self) -> None:
        await self.fill()
        seen = []
        copied = await copy_database(DeferredDatabase(self.source), self.target, seen.append)
        self.assertEqual({d.name: d.rows for d in copied}, {"a": 52, "b": 7, "c": 1, "empty": 0})
        self.assertEqual([p.tree for p in seen if p.tree_done], ["a", "b", "c", "empty"])
        self.assertEqual(seen[-1].rows, 60)
        checked = await verify_copy(self.source, self.target, copied)
        self.assertEqual([(d.rows, d.sha256) for d in checked], [(d.rows, d.sha256) for d in copied])
        for name in ("a", "b", "c"):
            self.assertEqual(
                await self.target.open_tree(name).iter_from(b""),
                await self.source.open_tree(name).iter_from(b""),
            )

    async def test_target_not_empty(self) -> None:
        await self.fill()
        await self.target.open_tree("other").insert(b"k", b"")
        with self.assertRaises(TargetNotEmpty):
            await copy_database(self.source, self.target)
        self.assertEqual(await self.target.tree_names(), ["other"])

    async def test_verify_finds_a_changed_row(self) -> None:
        await self.fill()
        copied = await copy_database(self.source, self.target)
        await self.target.open_tree("b").insert(u64(3), b"changed")
        with self.assertRaises(CopyError) as e:
            await verify_copy(self.source, self.target, copied)
        self.assertIn("tree 'b'", str(e.exception))
        self.assertIn("verification failed", str(e.exception))

    async def test_verify_finds_a_changed_source(self) -> None:
        await self.fill()
        copied = await copy_database(self.source, self.target)
        await self.source.open_tree("c").insert(b"new", b"")
        with self.assertRaises(CopyError) as e:
            await verify_copy(self.source, self.target, copied)
        self.assertIn("the source changed during the copy", str(e.exception))

    async def test_digest_is_of_rows_in_order(self) -> None:
        """Same rows, same digest; a key/value boundary moved, another digest."""
        t = self.source.open_tree("x")
        await t.insert(b"ab", b"c")
        u = self.target.open_tree("x")
        await u.insert(b"a", b"bc")
        self.assertNotEqual((await digest_tree(t)).sha256, (await digest_tree(u)).sha256)
