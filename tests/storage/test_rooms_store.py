"""
The rooms data layer: state compression, short ids, timeline ranges,
backfill/outlier placement, atomic persistence, restart.
"""

from __future__ import annotations

import json
import os
import random
import zlib

from twisted.trial import unittest

from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import get_room_version
from conduit_tw.storage.database import open_database
from conduit_tw.storage.events import BACKFILL, OUTLIER_KIND
from conduit_tw.storage.stores.short import ShortIds
from conduit_tw.storage.stores.state import MAX_LEVEL, StateStore
from conduit_tw.storage.keys import u64
from conduit_tw.storage.stores.timeline import (
    LIVE_BASE, PACKED, PDUS, encode_json, pack_record, unpack_record,
)
from conduit_tw.storage.txn import StoreTxn
from tests.api.rooms import RoomsTestCase


class RoomInfoCacheTests(unittest.TestCase):
    """What never changes about a room is cached for the rooms in use only."""

    async def test_bounded_and_reread(self) -> None:
        from conduit_tw.storage.stores.rooms import RoomStore

        path = self.mktemp()
        os.makedirs(path)
        db = open_database("sqlite", path)
        self.addCleanup(db.close)
        short = ShortIds(db)
        await short.load()
        rooms = RoomStore(db, short, cache_modifier=0.0002)  # 2 rooms
        version = get_room_version("10")
        made = []
        for i in range(5):
            txn = StoreTxn(db)
            made.append(await rooms.add_room(f"!r{i}:test", version, txn))
            await txn.commit()
        self.assertEqual((len(rooms._by_id), len(rooms._by_short)), (2, 2))
        for info in made:  # the evicted ones are read again
            self.assertEqual(await rooms.get_room(info.room_id), info)
            self.assertEqual(await rooms.get_room_by_short(info.short), info)
        self.assertEqual((len(rooms._by_id), len(rooms._by_short)), (2, 2))


class StateStoreTests(unittest.TestCase):
    """Layered state diffs against a plain dict, across a restart."""

    def open(self):
        db = open_database("sqlite", self.path)
        self.addCleanup(db.close)
        return db

    async def make(self):
        db = self.open()
        short = ShortIds(db)
        await short.load()
        return db, short, StateStore(db, short)

    async def test_random_changes_and_forks(self) -> None:
        self.path = self.mktemp()
        os.makedirs(self.path)
        db, short, state = await self.make()
        rnd = random.Random(7)
        truth: dict[int, dict[int, int]] = {0: {}}
        hashes = [0]
        for i in range(1, 1500):
            parent = hashes[-1] if rnd.random() < 0.9 else rnd.choice(hashes)  # forks
            changes = {}
            for _ in range(rnd.choice([1, 1, 1, 2, 5, 40])):
                key = rnd.randrange(1, 400)
                changes[key] = 0 if rnd.random() < 0.05 else i
            txn = StoreTxn(db)
            h = await state.new_state(parent, changes, txn)
            await txn.commit()
            expected = dict(truth[parent])
            for k, v in changes.items():
                if v:
                    expected[k] = v
                else:
                    expected.pop(k, None)
            truth[h] = expected
            hashes.append(h)
        db.close()
        # A new process: nothing cached.
        db, short, state = await self.make()
        for h in rnd.sample(hashes, 300):
            self.assertEqual(await state.full(h), truth[h], h)
            records = 0
            cur = h
            while cur:
                layer = await state.layer(cur)
                records += 1
                if layer.level == 0:
                    break
                cur = layer.parent
            self.assertLessEqual(records, MAX_LEVEL + 1)
            for k in rnd.sample(range(1, 400), 5):
                self.assertEqual(await state.get(h, k), truth[h].get(k))

    async def test_no_full_copies(self) -> None:
        """One change in a big state writes a small record."""
        self.path = self.mktemp()
        os.makedirs(self.path)
        db, short, state = await self.make()
        txn = StoreTxn(db)
        h = await state.new_state(0, {k: k for k in range(1, 5001)}, txn)
        await txn.commit()
        total = 0
        for i in range(200):
            txn = StoreTxn(db)
            h = await state.new_state(h, {6000 + i: 1}, txn)
            total += sum(len(v) for _, _, v in txn.batch if v)
            await txn.commit()
        # A full copy would be 80 kB per change.
        self.assertLess(total / 200, 2000)

    async def test_unchanged_state_keeps_hash(self) -> None:
        self.path = self.mktemp()
        os.makedirs(self.path)
        db, short, state = await self.make()
        txn = StoreTxn(db)
        h = await state.new_state(0, {1: 2}, txn)
        self.assertEqual(await state.new_state(h, {1: 2}, txn), h)
        await txn.commit()


class PackedRecordTests(unittest.TestCase):
    """L{pack_record} and L{unpack_record}, the event record codec."""

    def test_round_trip(self) -> None:
        """Records of every shape come back byte for byte."""
        records = [
            ["$e", {}],
            ["$" + "a" * 43, {"type": "m.room.message", "content": {"body": "héllo ✓ " * 50}}],
            ["$x", {"content": {"body": "z" * 70000}}, {"tx": ["DEV", "t1"]}],
            ["$y", {"content": {"data": [i * 7919 % 1000 for i in range(3000)]}}],
        ]
        for record in records:
            raw = encode_json(record)
            stored = pack_record(raw)
            self.assertEqual(unpack_record(stored), raw)
            self.assertLessEqual(len(stored), len(raw))

    def test_same_bytes_as_a_fresh_compressor(self) -> None:
        """
        Deflating with a copy of the primed compressor gives exactly what a
        new compressor given the dictionary gives (records written before
        and after the change are alike), again and again.
        """
        from conduit_tw.storage.stores.timeline import _WBITS, _ZDICT

        for i in range(50):
            raw = encode_json(["$e%d" % i, {"content": {"body": "message %d " % i * (i + 1)}}])
            fresh = zlib.compressobj(6, zlib.DEFLATED, _WBITS, 6, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
            deflated = fresh.compress(raw) + fresh.flush()
            stored = pack_record(raw)
            if stored[0] == PACKED:
                self.assertEqual(stored[1:], deflated)
            else:
                self.assertGreaterEqual(len(deflated) + 1, len(raw))

    def test_small_or_incompressible_stay_plain(self) -> None:
        """A record that would not shrink is stored as its JSON, which starts with C{[}."""
        raw = encode_json(["$e", {}])
        self.assertEqual(pack_record(raw), raw)
        noise = encode_json(["$e", {"k": os.urandom(600).hex()}])
        stored = pack_record(noise)
        self.assertIn(stored[0], (PACKED, ord("[")))
        self.assertEqual(unpack_record(stored), noise)

    def test_message_shrinks(self) -> None:
        """A typical message record loses over a third of its size."""
        record = [
            "$4zLmEFiJh34ct93Vi9UBrAlE6hNGds_TzK_OZeuJE_8",
            {
                "auth_events": [
                    "$JEbi1H_u3929cMLaOsWFd7N9U19n9C0TatLP0Mf8EUc",
                    "$LpqTRgouwpp91thGw76jxN2cM8V-Du0uLtXAV3yeGqY",
                ],
                "content": {"body": "message 124", "msgtype": "m.text"},
                "depth": 1093,
                "hashes": {"sha256": "hmLH/X29QCLy9YZdjC/uZy393XxH6vlXXNSuV0OpPnM"},
                "origin_server_ts": 1796313574382,
                "prev_events": ["$PM12tagEotR93sSBFFO1GSykoSMybTIa1lSulKbcq_E"],
                "room_id": "!rpshXX98xsAKS5OWjpBUDQYW0K3fDme75ica84xWlo8",
                "sender": "@s13567507x6:localhost",
                "signatures": {"localhost": {"ed25519:a_IWMQ": "Msw/9lV/Xl5n9qbDpI/yhPQI6ri4Zh"
                                             "FxeGg6xR2wEe8tPz0G8sHsCL9wB129/sIWm1Tst5cjwYJFVHQiqSMICA"}},
                "type": "m.room.message",
            },
            {"tx": ["VNHWSXAVDC", "b135.30766311478290"]},
        ]
        raw = encode_json(record)
        stored = pack_record(raw)
        self.assertEqual(stored[0], PACKED)
        self.assertLess(len(stored), len(raw) * 0.65)


class EventStoreTests(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.store = self.hs.event_store

    async def test_state_at_old_events_after_many_changes(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        names = []
        for i in range(60):
            r = await self.put_state(self.at, room, "m.room.name", {"name": "n%d" % i})
            names.append(r.json["event_id"])
            await self.put_state(self.at, room, "org.example.k", {"i": i}, state_key="k%d" % (i % 7))
        await self.restart()
        store = self.hs.event_store
        for i in (0, 13, 37, 59):
            ev = await store.get_event(names[i])
            after = await store.state_at_event(ev, before=False)
            self.assertEqual(after[("m.room.name", "")], names[i])
            before = await store.state_at_event(ev)
            if i:
                self.assertEqual(before[("m.room.name", "")], names[i - 1])
            name_ev = await store.state_event(ev.state_after, "m.room.name", "")
            self.assertEqual(name_ev.content, {"name": "n%d" % i})
            k_keys = [k for k in after if k[0] == "org.example.k"]
            self.assertEqual(len(k_keys), min(i, 7))
        current = await store.current_state_ids(room)
        self.assertEqual(current[("m.room.name", "")], names[-1])
        self.assertEqual(len([k for k in current if k[0] == "org.example.k"]), 7)

    async def test_timeline_ranges(self) -> None:
        room = await self.create_room(self.at)
        ids = [await self.send_ok(self.at, room, {"body": str(i)}) for i in range(10)]
        events = [await self.store.get_event(e) for e in ids]
        orders = [e.order for e in events]
        self.assertEqual(orders, sorted(orders))
        self.assertTrue(all(o > LIVE_BASE for o in orders))
        self.assertEqual(events[3].position, orders[3] - LIVE_BASE)
        fwd = await self.store.timeline_range(room, orders[2], True, 3)
        self.assertEqual([e.event_id for e in fwd], ids[2:5])
        back = await self.store.timeline_range(room, orders[5], False, 3)
        self.assertEqual([e.event_id for e in back], [ids[5], ids[4], ids[3]])
        bounded = await self.store.timeline_range(room, orders[2], True, 100, end=orders[4])
        self.assertEqual([e.event_id for e in bounded], ids[2:4])
        bounded = await self.store.timeline_range(room, orders[6], False, 100, end=orders[4])
        self.assertEqual([e.event_id for e in bounded], [ids[6], ids[5]])
        since = await self.store.events_since(room, events[7].position)
        self.assertEqual([e.event_id for e in since], ids[8:])
        latest = await self.store.latest_events(room, 2)
        self.assertEqual([e.event_id for e in latest], [ids[9], ids[8]])
        # Another room's events never leak into the range.
        room2 = await self.create_room(self.at)
        await self.send_ok(self.at, room2)
        self.assertEqual(len(await self.store.timeline_range(room, orders[9], True, 10)), 1)
        rows = await self.store.timeline.since_position(events[8].position, 100)
        self.assertEqual(rows[0][0], events[9].position)

    async def remote_event(self, room: str, sender: str, body: str, prev: list[str], depth: int) -> Event:
        """An event as another server would send it (unsigned by us; storage does not care)."""
        version = get_room_version("10")
        pdu = {
            "room_id": room, "sender": sender, "type": "m.room.message",
            "content": {"body": body}, "origin_server_ts": 1, "depth": depth,
            "prev_events": prev, "auth_events": [], "hashes": {"sha256": "x"}, "signatures": {},
        }
        return Event(pdu, "$remote-" + body, version)

    async def test_backfill_and_outliers(self) -> None:
        room = await self.create_room(self.at, room_version="10")
        first = await self.send_ok(self.at, room)
        statehash = await self.store.current_statehash(room)
        older = await self.store.persist(
            await self.remote_event(room, "@x:remote", "old1", [], 1), kind=BACKFILL,
            state_before=statehash,
        )
        oldest = await self.store.persist(
            await self.remote_event(room, "@x:remote", "old2", [], 1), kind=BACKFILL,
            state_before=statehash,
        )
        self.assertLess(oldest.order, older.order)
        self.assertLess(older.order, LIVE_BASE)
        self.assertIsNone(older.position)
        outlier = await self.store.persist(
            await self.remote_event(room, "@x:remote", "out", [], 1), kind=OUTLIER_KIND
        )
        self.assertEqual(outlier.order, 0)
        everything = await self.store.timeline_range(room, 0, True, 100)
        self.assertEqual([e.event_id for e in everything[:2]], [oldest.event_id, older.event_id])
        self.assertNotIn(outlier.event_id, [e.event_id for e in everything])
        self.assertEqual(everything[-1].event_id, first)
        # Backfill does not move the room head.
        info = await self.store.get_room(room)
        head = await self.store.head(info)
        self.assertEqual(head.extremities, frozenset([first]))
        # Persisting the same event again returns the stored one.
        again = await self.store.persist(
            await self.remote_event(room, "@x:remote", "old1", [], 1), kind=BACKFILL,
            state_before=statehash,
        )
        self.assertEqual(again.order, older.order)

    async def test_remote_event_with_state_maps(self) -> None:
        """The persist API takes a state-before map and a resolved current state."""
        room = await self.create_room(self.at, room_version="10")
        state = await self.store.current_state_ids(room)
        head = await self.store.head(await self.store.get_room(room))
        (prev,) = head.extremities
        ev = await self.remote_event(room, "@x:remote", "fed", [prev], head.depth + 1)
        stored = await self.store.persist(ev, state_before=state, current_state=state)
        self.assertEqual(await self.store.state_at_event(stored), state)
        self.assertEqual(await self.store.current_state_ids(room), state)
        new_head = await self.store.head(await self.store.get_room(room))
        self.assertEqual(new_head.extremities, frozenset([stored.event_id]))

    async def test_failed_write_leaves_nothing(self) -> None:
        room = await self.create_room(self.at)
        before = await self.store.current_state_ids(room)
        info = await self.store.get_room(room)
        head = await self.store.head(info)
        db = self.hs.db
        real_write = db.write

        def failing_write(batch):
            raise OSError("disk full")

        self.patch(db, "write", failing_write)
        r = await self.put_state(self.at, room, "org.example.new", {"a": 1}, state_key="brand-new-key")
        self.assertEqual(r.code, 500)
        self.patch(db, "write", real_write)
        self.assertEqual(await self.store.current_state_ids(room), before)
        self.assertIs(await self.store.head(info), head)
        self.assertIsNone(await self.store.short.get_shortstatekey("org.example.new", "brand-new-key"))
        self.flushLoggedErrors(OSError)
        # The server goes on; ids handed out for the failed write are never reused wrongly.
        r = await self.put_state(self.at, room, "org.example.new", {"a": 2}, state_key="brand-new-key")
        self.assertEqual(r.code, 200, r.body)
        await self.restart()
        r = await self.get_state(self.at, room, "org.example.new", "brand-new-key")
        self.assertEqual(r.json, {"a": 2})
        eid = await self.send_ok(self.at, room)
        self.assertEqual((await self.get_event(self.at, room, eid)).code, 200)

    async def test_failed_room_creation_leaves_nothing(self) -> None:
        db = self.hs.db
        real_write = db.write
        self.patch(db, "write", lambda batch: (_ for _ in ()).throw(OSError("disk full")))
        r = await self.request("POST", "/_matrix/client/v3/createRoom", {"name": "x"}, access_token=self.at)
        self.assertEqual(r.code, 500)
        self.flushLoggedErrors(OSError)
        self.patch(db, "write", real_write)
        admin_room = self.hs.admin_room.room_id  # alice, the first user, is in it
        self.assertEqual(await self.store.joined_room_ids(self.alice), [admin_room])
        self.assertEqual([r.room_id for r in await self.store.rooms.all_rooms()], [admin_room])
        room = await self.create_room(self.at, name="y")
        self.assertEqual(sorted(await self.store.joined_room_ids(self.alice)), sorted([admin_room, room]))

    async def test_records_packed(self) -> None:
        """Event records are stored packed and read back as sent, also after a restart."""
        room = await self.create_room(self.at)
        eid = await self.send_ok(self.at, room, {"msgtype": "m.text", "body": "packed ✓"}, txn="tp1")
        stored = await self.store.get_event(eid)
        raw = await self.hs.db.open_tree(PDUS).get(u64(stored.short))
        self.assertEqual(raw[0], PACKED)
        self.assertEqual(json.loads(unpack_record(raw)), [eid, stored.pdu, stored.extras])
        self.assertEqual(stored.extras["tx"][1], "tp1")
        await self.restart()
        again = await self.hs.event_store.get_event(eid)
        self.assertIsNot(again, stored)
        self.assertEqual(again.pdu, stored.pdu)
        self.assertEqual(again.extras, stored.extras)
        r = await self.get_event(self.at, room, eid)
        self.assertEqual(r.json["content"]["body"], "packed ✓")
        self.assertEqual(r.json["unsigned"]["transaction_id"], "tp1")

    async def test_plain_records_still_read(self) -> None:
        """
        Records written before packing (plain JSON) are read as before, and
        a redaction rewrites one packed.
        """
        room = await self.create_room(self.at)
        eid = await self.send_ok(self.at, room, {"msgtype": "m.text", "body": "old format"})
        stored = await self.store.get_event(eid)
        tree = self.hs.db.open_tree(PDUS)
        plain = unpack_record(await tree.get(u64(stored.short)))
        self.assertEqual(plain[:1], b"[")
        await tree.insert(u64(stored.short), plain)  # as the previous code wrote it
        await self.restart()
        old = await self.hs.event_store.get_event(eid)
        self.assertEqual(old.pdu, stored.pdu)
        self.assertEqual(old.extras, stored.extras)
        r = await self.get_event(self.at, room, eid)
        self.assertEqual(r.json["content"]["body"], "old format")
        r = await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{room}/redact/{eid}/tr1", {}, access_token=self.at
        )
        self.assertEqual(r.code, 200, r.body)
        raw = await self.hs.db.open_tree(PDUS).get(u64(stored.short))
        self.assertEqual(raw[0], PACKED)
        r = await self.get_event(self.at, room, eid)
        self.assertEqual(r.json["content"], {})

    async def test_short_ids_survive_restart(self) -> None:
        room = await self.create_room(self.at)
        last = self.store.short._next.copy()
        await self.restart()
        self.assertEqual(self.hs.event_store.short._next, last)
        await self.send_ok(self.at, room)
        self.assertEqual(self.hs.event_store.short._next[b"event"], last[b"event"] + 1)


class LmdbEventStoreTests(EventStoreTests):
    backend = "lmdb"
