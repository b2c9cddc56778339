"""
Stream positions and read-then-write sections when storage answers later
(issue 19). Writes reserve positions in order but commit in any order, and /sync's "now" (the
notifier's position) must never pass a position whose write is still
running (L{GlobalsStore.committed_upto}); read-then-write sections
(receipts, short ids) stay correct when their reads yield to the reactor.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial import unittest

from conduit_tw.notifier import Notifier
from conduit_tw.storage.sqlite import SQLiteDatabase
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.short import ShortIds
from conduit_tw.storage.txn import StoreTxn
from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase
from tests.storage.deferred import DeferredDatabase


class CommittedUpToTests(unittest.TestCase):
    """L{GlobalsStore} tracks pending positions; the L{Notifier} holds back."""

    def setUp(self) -> Deferred[None]:
        path = os.path.abspath(self.mktemp())
        self.db = DeferredDatabase(SQLiteDatabase(path))
        self.addCleanup(self.db.close)
        self.db.open_tree("data")
        self.globals = GlobalsStore(self.db)
        self.notifier = Notifier(reactor)
        self.notifier.committed_upto = self.globals.committed_upto
        self.globals.on_advance = self.notifier.advance

        async def load() -> None:
            self.notifier.position = await self.globals.current_position()

        return Deferred.fromCoroutine(load())

    async def txn_at(self, room: str) -> tuple[StoreTxn, int]:
        txn = StoreTxn(self.db)
        position = await self.globals.reserve_position(txn)
        txn.batch.put("data", room.encode(), b"%d" % position)
        self.globals.put_position_on_commit(txn)
        notifier = self.notifier
        txn.after_commit(lambda: notifier.notify(position, rooms=[room]))
        return txn, position

    async def test_out_of_order_commits(self) -> None:
        """A later position committed first is announced only after the earlier one."""
        start = self.notifier.position
        a, pa = await self.txn_at("!a")
        b, pb = await self.txn_at("!b")
        self.assertEqual((pa, pb), (start + 1, start + 2))
        waiter = self.notifier.wait("@u:test", ["!b"], 30)
        await b.commit()
        self.assertEqual(self.notifier.position, start)
        self.assertFalse(waiter.called)
        await a.commit()
        self.assertEqual(self.notifier.position, pb)
        self.assertTrue(await waiter)

    async def test_failed_write_releases(self) -> None:
        """A position whose write failed holds nothing back."""
        start = self.notifier.position
        a, pa = await self.txn_at("!a")
        b, pb = await self.txn_at("!b")
        await b.commit()
        a.batch.put("never opened", b"k", b"v")  # the write fails
        with self.assertRaises((KeyError, ValueError)):
            await a.commit()
        self.assertEqual(self.notifier.position, pb)
        self.assertGreater(pb, start)

    async def test_stream_position_block(self) -> None:
        """stream_position() is pending for its block, released on success or error."""
        start = self.notifier.position
        async with self.globals.stream_position() as p1:
            async with self.globals.stream_position() as p2:
                await self.db.open_tree("data").insert(b"x", b"")
            self.notifier.notify(p2, users=["@u:test"])
            self.assertEqual(self.notifier.position, start)
        self.notifier.notify(p1, users=["@u:test"])
        self.assertEqual(self.notifier.position, p2)
        with self.assertRaises(ZeroDivisionError):
            async with self.globals.stream_position():
                1 / 0
        self.assertEqual(self.globals.committed_upto(), p2 + 1)
        async with self.globals.stream_position(needed=False) as none:
            self.assertEqual(none, 0)


class ShortIdRaceTests(unittest.TestCase):
    """Short ids looked up and created at once by two writers, storage answering later."""

    async def test_one_id_per_state_key(self) -> None:
        path = os.path.abspath(self.mktemp())
        db = DeferredDatabase(SQLiteDatabase(path))
        self.addCleanup(db.close)
        short = ShortIds(db)
        await short.load()
        a, b = StoreTxn(db), StoreTxn(db)
        # Both miss the cache; their reads are answered on a later turn.
        sks = await gatherResults([
            Deferred.fromCoroutine(short.get_or_create_shortstatekey("m.room.member", "@a:t", a)),
            Deferred.fromCoroutine(short.get_or_create_shortstatekey("m.room.member", "@a:t", b)),
        ])
        self.assertEqual(sks[0], sks[1])
        rooms = await gatherResults([
            Deferred.fromCoroutine(short.get_or_create_shortroomid("!r:t", a)),
            Deferred.fromCoroutine(short.get_or_create_shortroomid("!r:t", b)),
        ])
        self.assertEqual(rooms[0][0], rooms[1][0])
        # a fails, b commits: b's data refers to ids whose records b wrote.
        a.abort()
        await b.commit()
        fresh = ShortIds(db)
        self.assertEqual(await fresh.get_shortstatekey("m.room.member", "@a:t"), sks[0])
        self.assertEqual(await fresh.get_shortroomid("!r:t"), rooms[0][0])


class ReceiptRaceTests(SyncTestCase):
    """Concurrent receipts of one user in one room, storage answering later."""

    backend = "deferred"

    async def test_concurrent_receipts(self) -> None:
        """
        Receipts sent at once for several events keep exactly one receipt
        (the newest event's), never one moving back, in sync and storage.
        """
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        events = [await self.send_ok(at, room) for _ in range(5)]
        since = (await self.sync(at))["next_batch"]
        answers = await gatherResults([
            self.request(
                "POST", f"{V3}/rooms/{q(room)}/receipt/m.read/{q(e)}", {}, access_token=bt
            )
            for e in reversed(events)  # the newest first: the rest must not move it back
        ] + [
            self.request(
                "POST", f"{V3}/rooms/{q(room)}/receipt/m.read/{q(e)}", {}, access_token=bt
            )
            for e in events
        ])
        self.assertEqual({r.code for r in answers}, {200})
        body = await self.sync(at, since=since)
        content = [
            e["content"] for e in body["rooms"]["join"][room]["ephemeral"]["events"]
            if e["type"] == "m.receipt"
        ]
        readers = [
            (event_id, user)
            for c in content for event_id, types in c.items()
            for user in types.get("m.read", {})
        ]
        self.assertEqual(readers, [(events[-1], bob)])
        initial = await self.sync(at)
        content = [
            e["content"] for e in initial["rooms"]["join"][room]["ephemeral"]["events"]
            if e["type"] == "m.receipt"
        ]
        bobs = [
            event_id for c in content for event_id, types in c.items()
            if bob in types.get("m.read", {})
        ]
        self.assertEqual(bobs, [events[-1]])


class ConcurrentCreationTests(SyncTestCase):
    """Rooms created at once by one user, storage answering later."""

    backend = "deferred"

    async def test_concurrent_create_room(self) -> None:
        """
        Every room gets the creator's membership under the one short id
        of its state key (a lookup that missed the cache must not make a
        second one while its read is answered).
        """
        await self.user("admin")  # the first user is joined to #admins
        alice, at = await self.user("alice")  # her member state key is new
        answers = await gatherResults([
            self.request("POST", f"{V3}/createRoom", {"name": f"r{i}"}, access_token=at)
            for i in range(8)
        ])
        self.assertEqual([r.code for r in answers], [200] * 8, [r.body for r in answers])
        rooms = {r.json["room_id"] for r in answers}
        joined = await self.request("GET", f"{V3}/joined_rooms", access_token=at)
        self.assertTrue(rooms <= set(joined.json["joined_rooms"]))
        for room in rooms:
            await self.send_ok(at, room)
