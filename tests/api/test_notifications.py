"""Unread notification counts in /sync (push rules, receipts, threads), GET /notifications, pushers."""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase


class CountsTests(SyncTestCase):
    async def _room(self, **kw: Any) -> tuple[str, str, str, str, str]:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat", name="Counts", **kw)
        await self.join(bt, room)
        return alice, at, bob, bt, room

    async def counts(self, token: str, room: str, **kw: Any) -> dict[str, Any]:
        body = await self.sync(token, **kw)
        return self.joined(body, room)

    async def test_messages_and_mentions_count(self) -> None:
        alice, at, bob, bt, room = await self._room()
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "one"})
        await self.send_ok(at, room, {"msgtype": "m.notice", "body": "bot"})  # suppressed
        e3 = await self.send_ok(at, room, {
            "msgtype": "m.text", "body": "hey bob", "m.mentions": {"user_ids": [bob]},
        })
        r = await self.counts(bt, room)
        self.assertEqual(r["unread_notifications"], {"notification_count": 2, "highlight_count": 1})
        # The sender's own messages never count for them.
        r = await self.counts(at, room)
        self.assertEqual(r["unread_notifications"], {"notification_count": 0, "highlight_count": 0})
        # The count appears in the same incremental sync as the event.
        since = (await self.sync(bt))["next_batch"]
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "four"})
        body = await self.sync(bt, since=since)
        self.assertEqual(
            self.joined(body, room)["unread_notifications"], {"notification_count": 3, "highlight_count": 1}
        )
        # A receipt resets what it covers.
        await self.receipt(bt, room, e3)
        body2 = await self.sync(bt, since=body["next_batch"])
        self.assertEqual(
            self.joined(body2, room)["unread_notifications"], {"notification_count": 1, "highlight_count": 0}
        )

    async def test_private_receipt_and_own_message_reset(self) -> None:
        alice, at, bob, bt, room = await self._room()
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "1"})
        e2 = await self.send_ok(at, room, {"msgtype": "m.text", "body": "2"})
        await self.receipt(bt, room, e2, "m.read.private")
        r = await self.counts(bt, room)
        self.assertEqual(r["unread_notifications"]["notification_count"], 0)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "3"})
        self.assertEqual((await self.counts(bt, room))["unread_notifications"]["notification_count"], 1)
        # Sending a message marks everything before it read.
        await self.send_ok(bt, room, {"msgtype": "m.text", "body": "reply"})
        self.assertEqual((await self.counts(bt, room))["unread_notifications"]["notification_count"], 0)

    async def test_push_rules_followed(self) -> None:
        alice, at, bob, bt, room = await self._room()
        # Bob mutes the room with a room rule that does not notify.
        r = await self.request(
            "PUT", f"{V3}/pushrules/global/room/{q(room)}", {"actions": []}, access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "quiet"})
        self.assertEqual((await self.counts(bt, room))["unread_notifications"]["notification_count"], 0)
        # A keyword rule that highlights.
        await self.request("DELETE", f"{V3}/pushrules/global/room/{q(room)}", access_token=bt)
        r = await self.request(
            "PUT", f"{V3}/pushrules/global/content/kw",
            {"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]}, access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "there is cake"})
        self.assertEqual(
            (await self.counts(bt, room))["unread_notifications"],
            {"notification_count": 1, "highlight_count": 1},
        )

    async def test_thread_counts(self) -> None:
        alice, at, bob, bt, room = await self._room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        t1 = await self.send_ok(at, room, {
            "msgtype": "m.text", "body": "t1", "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        })
        await self.send_ok(at, room, {
            "msgtype": "m.text", "body": "t2", "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        })
        # A reaction to a thread reply is in the thread too (relation hops) but does not notify.
        await self.send_ok(at, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": t1, "key": "x"}},
                           event_type="m.reaction")
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "main"})
        threaded = {"room": {"timeline": {"unread_thread_notifications": True}}}
        r = await self.counts(bt, room, filter=threaded)
        self.assertEqual(r["unread_notifications"], {"notification_count": 2, "highlight_count": 0})
        self.assertEqual(
            r["unread_thread_notifications"], {root: {"notification_count": 2, "highlight_count": 0}}
        )
        r = await self.counts(bt, room)
        self.assertEqual(r["unread_notifications"]["notification_count"], 4)
        self.assertNotIn("unread_thread_notifications", r)
        # A threaded receipt clears the thread only.
        await self.receipt(bt, room, t1, body={"thread_id": root})
        r = await self.counts(bt, room, filter=threaded)
        self.assertEqual(
            r["unread_thread_notifications"], {root: {"notification_count": 1, "highlight_count": 0}}
        )
        self.assertEqual(r["unread_notifications"]["notification_count"], 2)
        # An unthreaded receipt on the newest event clears everything.
        newest = self.joined(await self.sync(bt), room)["timeline"]["events"][-1]["event_id"]
        await self.receipt(bt, room, newest)
        r = await self.counts(bt, room, filter=threaded)
        self.assertEqual(r["unread_notifications"]["notification_count"], 0)
        self.assertNotIn("unread_thread_notifications", r)

    async def test_ignored_sender_does_not_notify(self) -> None:
        alice, at, bob, bt, room = await self._room()
        await self.put_account_data(bt, bob, "m.ignored_user_list", {"ignored_users": {alice: {}}})
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "x"})
        self.assertEqual((await self.counts(bt, room))["unread_notifications"]["notification_count"], 0)

    async def test_invite_notifies(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at)
        await self.invite(at, room, bob)
        r = await self.request("GET", f"{V3}/notifications", access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        [n] = r.json["notifications"]
        self.assertEqual(n["event"]["type"], "m.room.member")
        self.assertEqual(n["room_id"], room)


class NotificationsEndpointTests(SyncTestCase):
    async def test_list_paginate_highlight_read(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        ids = []
        for i in range(5):
            content: dict[str, Any] = {"msgtype": "m.text", "body": "m%d" % i}
            if i % 2 == 0:
                content["m.mentions"] = {"user_ids": [bob]}
            ids.append(await self.send_ok(at, room, content))
        await self.receipt(bt, room, ids[1])
        r = await self.request("GET", f"{V3}/notifications?limit=3", access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        got = r.json["notifications"]
        self.assertEqual([n["event"]["event_id"] for n in got], [ids[4], ids[3], ids[2]])
        self.assertEqual([n["read"] for n in got], [False, False, False])
        self.assertIn("notify", got[0]["actions"])
        self.assertEqual(got[0]["room_id"], room)
        self.assertIsInstance(got[0]["ts"], int)
        r2 = await self.request(
            "GET", f"{V3}/notifications?limit=3&from={r.json['next_token']}", access_token=bt
        )
        got2 = r2.json["notifications"]
        self.assertEqual([n["event"]["event_id"] for n in got2], [ids[1], ids[0]])
        self.assertEqual([n["read"] for n in got2], [True, True])
        self.assertNotIn("next_token", r2.json)
        r3 = await self.request("GET", f"{V3}/notifications?only=highlight", access_token=bt)
        self.assertEqual(
            [n["event"]["event_id"] for n in r3.json["notifications"]], [ids[4], ids[2], ids[0]]
        )
        r4 = await self.request("GET", f"{V3}/notifications?from=xyz", access_token=bt)
        self.assertEqual(r4.code, 400)


class PusherDispatchTests(SyncTestCase):
    async def test_dispatch_called_with_counts(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        r = await self.request("POST", f"{V3}/pushers/set", {
            "kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
            "device_display_name": "D", "lang": "en",
            "data": {"url": "http://127.0.0.1:1/_matrix/push/v1/notify"},
        }, access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        calls: list[Any] = []
        self.patch(self.hs.pushers, "dispatch", lambda *a, **kw: calls.append((a, kw)))
        e = await self.send_ok(at, room, {"msgtype": "m.text", "body": "push me"})
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(calls), 1)
        (user, event, result, counts), _ = calls[0]
        self.assertEqual(user, bob)
        self.assertEqual(event["event_id"], e)
        self.assertTrue(result.notify)
        self.assertEqual(counts, {"unread": 1})
