"""
Notification storage with one row per notified member and live event
(storage/stores/notifications.py): GET /notifications across rooms, rows
written before the actions moved into C{usernotif}, actions that are not
the defaults', and unread counts counted on without a rescan.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from conduit_tw.storage.keys import SEP, u64
from conduit_tw.storage.stores.notifications import BY_ROOM, BY_STREAM
from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase


class NotificationRowsTests(SyncTestCase):
    async def _pair(self) -> tuple[str, str, str, str]:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        return alice, at, bob, bt

    async def _room(self, at: str, bt: str) -> str:
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        return room

    async def _list(self, token: str, **params: Any) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        r = await self.request("GET", f"{V3}/notifications?{query}", access_token=token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_one_row_per_member_and_event(self) -> None:
        alice, at, bob, bt = await self._pair()
        room = await self._room(at, bt)
        db = self.hs.db
        before = len(await db.open_tree(BY_STREAM).iter_from(b""))
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "hi"})
        self.assertEqual(len(await db.open_tree(BY_STREAM).iter_from(b"")), before)
        rows = await db.open_tree(BY_ROOM).scan_prefix(bob.encode() + SEP)
        self.assertEqual(len(rows), 1)

    async def test_list_across_rooms_newest_first(self) -> None:
        alice, at, bob, bt = await self._pair()
        rooms = [await self._room(at, bt) for _ in range(3)]
        ids = []
        for i in range(7):
            ids.append(await self.send_ok(at, rooms[i % 3], {"msgtype": "m.text", "body": f"m{i}"}))
        seen: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if token:
                params["from"] = token
            body = await self._list(bt, **params)
            seen += [n["event"]["event_id"] for n in body["notifications"]]
            token = body.get("next_token")
            if not token:
                break
        self.assertEqual(seen, list(reversed(ids)))
        body = await self._list(bt)
        self.assertEqual([n["room_id"] for n in body["notifications"]][:3], [rooms[0], rooms[2], rooms[1]])

    async def test_rows_from_before_the_change_are_listed(self) -> None:
        """Rows without inline actions are listed from their usernotif_stream twin."""
        alice, at, bob, bt = await self._pair()
        room = await self._room(at, bt)
        old = await self.send_ok(at, room, {"msgtype": "m.text", "body": "old"})
        # Rewrite bob's row for it in the old layout: flags only, and the twin.
        store = self.hs.event_store
        ev = await store.get_event(old)
        key = bob.encode() + SEP + u64(ev.shortroomid) + u64(ev.order)
        actions = ["notify", {"set_tweak": "sound", "value": "old"}]
        batch = self.hs.db.batch()
        batch.put(BY_ROOM, key, bytes((0,)))
        batch.put(
            BY_STREAM, bob.encode() + SEP + u64(ev.position),
            struct.pack(">QQQB", ev.shortroomid, ev.short, ev.order, 0)
            + json.dumps(actions).encode(),
        )
        await self.hs.db.write(batch)
        new = await self.send_ok(at, room, {
            "msgtype": "m.text", "body": "new", "m.mentions": {"user_ids": [bob]},
        })
        body = await self._list(bt)
        got = [(n["event"]["event_id"], n["actions"]) for n in body["notifications"]]
        self.assertEqual([g[0] for g in got], [new, old])
        self.assertEqual(got[1][1], actions)
        self.assertIn({"set_tweak": "highlight"}, got[0][1])
        self.hs.notifications._counts.clear()
        counts = self.joined(await self.sync(bt), room)["unread_notifications"]
        self.assertEqual(counts, {"notification_count": 2, "highlight_count": 1})

    async def test_custom_actions_kept(self) -> None:
        alice, at, bob, bt = await self._pair()
        room = await self._room(at, bt)
        actions = ["notify", {"set_tweak": "sound", "value": "bell.ogg"}, {"set_tweak": "x", "value": [1]}]
        r = await self.request(
            "PUT", f"{V3}/pushrules/global/room/{q(room)}", {"actions": actions}, access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "ding"})
        body = await self._list(bt)
        self.assertEqual(body["notifications"][0]["actions"], actions)

    async def test_counts_taken_on_and_not_twice(self) -> None:
        """
        Cached counts take a new notification once it is durable, unless
        they were computed after its batch was applied (they count it).
        """
        alice, at, bob, bt = await self._pair()
        room = await self._room(at, bt)
        self.assertEqual(self.joined(await self.sync(bt), room)["unread_notifications"]["notification_count"], 0)
        handler = self.hs.notifications
        short = (await self.hs.event_store.get_room(room)).short
        # Counts computed between apply and commit of the next event.
        db = self.hs.db
        orig = db.write

        def write(batch: Any) -> Any:
            d = orig(batch)
            if any(tree == BY_ROOM for tree, _, _ in batch):
                handler._counts.pop((bob, short))
                from twisted.internet.defer import ensureDeferred
                ensureDeferred(handler.room_counts(bob, short))
            return d

        db.write = write
        try:
            await self.send_ok(at, room, {"msgtype": "m.text", "body": "one"})
        finally:
            db.write = orig
        self.assertEqual((await handler.room_counts(bob, short)).notifications, 1)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "two"})
        counts = await handler.room_counts(bob, short)
        self.assertEqual((counts.notifications, counts.highlights), (2, 0))
        handler._counts.clear()
        self.assertEqual((await handler.room_counts(bob, short)).notifications, 2)


