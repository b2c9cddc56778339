"""Receipts (public, private, threaded), read markers, and their place in /sync."""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase


def receipts_of(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body.get("rooms", {}).get("join", {}).get(room_id)
    if room is None:
        return {}
    out: dict[str, Any] = {}
    for e in room["ephemeral"]["events"]:
        if e["type"] == "m.receipt":
            for event_id, types in e["content"].items():
                for rtype, users in types.items():
                    for user, data in users.items():
                        out[(rtype, user, data.get("thread_id"))] = (event_id, data)
    return out


class ReceiptTests(SyncTestCase):
    async def _pair(self) -> tuple[str, str, str, str, str]:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        self.alice, self.at, self.bob, self.bt, self.room = alice, at, bob, bt, room
        return alice, at, bob, bt, room

    async def test_public_receipt_in_sync(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        e = await self.send_ok(at, room)
        since_a = (await self.sync(at))["next_batch"]
        await self.receipt(bt, room, e)
        body = await self.sync(at, since=since_a)
        got = receipts_of(body, room)
        self.assertEqual(got[("m.read", bob, None)][0], e)
        self.assertIsInstance(got[("m.read", bob, None)][1]["ts"], int)
        # Initial sync carries current receipts too.
        self.assertIn(("m.read", bob, None), receipts_of(await self.sync(at), room))
        # And nothing new after.
        self.assertNotIn("rooms", await self.sync(at, since=body["next_batch"]))

    async def test_private_receipt_only_owner(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        e = await self.send_ok(at, room)
        since_a = (await self.sync(at))["next_batch"]
        since_b = (await self.sync(bt))["next_batch"]
        await self.receipt(bt, room, e, "m.read.private")
        body_a = await self.sync(at, since=since_a)
        self.assertEqual(receipts_of(body_a, room), {})
        self.assertEqual(receipts_of(await self.sync(at), room), {})
        body_b = await self.sync(bt, since=since_b)
        self.assertEqual(receipts_of(body_b, room)[("m.read.private", bob, None)][0], e)

    async def test_threaded_receipts(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        reply = await self.send_ok(at, room, {
            "msgtype": "m.text", "body": "in thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        })
        main = await self.send_ok(at, room)
        await self.receipt(bt, room, reply, body={"thread_id": root})
        await self.receipt(bt, room, main, body={"thread_id": "main"})
        await self.receipt(bt, room, root)
        got = receipts_of(await self.sync(at), room)
        self.assertEqual(got[("m.read", bob, root)][0], reply)
        self.assertEqual(got[("m.read", bob, "main")][0], main)
        self.assertEqual(got[("m.read", bob, None)][0], root)
        # A reply is not in the main timeline.
        r = await self.receipt(bt, room, reply, body={"thread_id": "main"}, expect=400)
        self.assertEqual(r["errcode"], "M_INVALID_PARAM")
        await self.receipt(bt, room, reply, body={"thread_id": ""}, expect=400)
        await self.receipt(bt, room, reply, body={"thread_id": 5}, expect=400)
        await self.receipt(bt, room, reply, "m.fully_read", body={"thread_id": root}, expect=400)

    async def test_errors(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        e = await self.send_ok(at, room)
        carol, ct = await self.user("carol")
        r = await self.receipt(ct, room, e, expect=403)
        self.assertEqual(r["errcode"], "M_FORBIDDEN")
        await self.receipt(bt, room, "$nope", expect=404)
        await self.receipt(bt, room, e, "m.unknown", expect=400)

    async def test_receipts_never_move_back(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        e1 = await self.send_ok(at, room)
        e2 = await self.send_ok(at, room)
        await self.receipt(bt, room, e2)
        await self.receipt(bt, room, e1)
        got = receipts_of(await self.sync(at), room)
        self.assertEqual(got[("m.read", bob, None)][0], e2)

    async def test_read_markers(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        e1 = await self.send_ok(at, room)
        e2 = await self.send_ok(at, room)
        since = (await self.sync(bt))["next_batch"]
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/read_markers",
            {"m.fully_read": e2, "m.read": e1, "m.read.private": e2}, access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        body = await self.sync(bt, since=since)
        rd = self.joined(body, room)
        self.assertEqual(rd["account_data"]["events"], [{"type": "m.fully_read", "content": {"event_id": e2}}])
        got = receipts_of(body, room)
        self.assertEqual(got[("m.read", bob, None)][0], e1)
        self.assertEqual(got[("m.read.private", bob, None)][0], e2)
        # The fully-read marker never moves back; the receipt endpoint sets it too.
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/read_markers", {"m.fully_read": e1}, access_token=bt,
        )
        self.assertEqual(r.code, 200)
        r = await self.request(
            "GET", f"{V3}/user/{q(bob)}/rooms/{q(room)}/account_data/m.fully_read", access_token=bt,
        )
        self.assertEqual(r.json, {"event_id": e2})
        e3 = await self.send_ok(at, room)
        await self.receipt(bt, room, e3, "m.fully_read")
        r = await self.request(
            "GET", f"{V3}/user/{q(bob)}/rooms/{q(room)}/account_data/m.fully_read", access_token=bt,
        )
        self.assertEqual(r.json, {"event_id": e3})
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/read_markers", {"m.read": 5}, access_token=bt,
        )
        self.assertEqual(r.code, 400)

    async def test_ignored_users_receipts_hidden(self) -> None:
        alice, at, bob, bt, room = await self._pair()
        e = await self.send_ok(at, room)
        await self.receipt(bt, room, e)
        await self.put_account_data(at, alice, "m.ignored_user_list", {"ignored_users": {bob: {}}})
        self.assertEqual(receipts_of(await self.sync(at), room), {})
