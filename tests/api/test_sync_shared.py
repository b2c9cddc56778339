"""
/sync sections encoded once for every member they are the same for
(handlers/sync_rooms.py C{RoomSync._section}): shared where the members'
views agree, never where they differ.
"""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase


def thread(root: str, body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


class SharedSectionTests(SyncTestCase):
    async def setup_room(self, *names: str, **create: Any) -> tuple[str, list[tuple[str, str]]]:
        """A public room created by the first of C{names}, joined by the others."""
        users = [await self.user(name) for name in names]
        room = await self.create_room(users[0][1], preset="public_chat", **create)
        for _, token in users[1:]:
            await self.join(token, room)
        return room, users

    async def tokens(self, *tokens: str) -> list[str]:
        return [(await self.sync(t, set_presence="offline"))["next_batch"] for t in tokens]

    def counters(self) -> tuple[int, int]:
        rooms = self.hs.sync.rooms
        return rooms.shared_built, rooms.shared_used

    def event(self, body: dict[str, Any], room: str, event_id: str) -> dict[str, Any]:
        events = [e for e in self.joined(body, room)["timeline"]["events"] if e["event_id"] == event_id]
        self.assertEqual(len(events), 1, body)
        return events[0]

    async def test_shared_by_members_with_the_same_view(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct), (dan, dt)] = await self.setup_room(
            "alice", "bob", "carol", "dan"
        )
        since = await self.tokens(bt, ct, dt)
        built, used = self.counters()
        event_id = await self.send_ok(at, room, {"msgtype": "m.text", "body": "to all"})
        bodies = [
            await self.sync(t, since=s, set_presence="offline") for t, s in zip((bt, ct, dt), since)
        ]
        # Built once, served three times.
        self.assertEqual(self.counters(), (built + 1, used + 3))
        events = [self.event(b, room, event_id) for b in bodies]
        self.assertEqual(events[0], events[1])
        self.assertEqual(events[0], events[2])
        self.assertEqual(events[0]["content"], {"msgtype": "m.text", "body": "to all"})
        self.assertEqual(events[0]["sender"], alice)
        self.assertNotIn("transaction_id", events[0]["unsigned"])
        self.assertNotIn("room_id", events[0])
        self.assertEqual([b["next_batch"] for b in bodies][1:], [bodies[0]["next_batch"]] * 2)
        for b in bodies:
            r = self.joined(b, room)
            self.assertEqual(r["state"], {"events": []})
            self.assertFalse(r["timeline"]["limited"])
            self.assertEqual(r["unread_notifications"]["notification_count"], 1)

    async def test_ages_are_those_of_each_response(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct)] = await self.setup_room("alice", "bob", "carol")
        since = await self.tokens(bt, ct)
        event_id = await self.send_ok(at, room)
        first = self.event(await self.sync(bt, since=since[0], set_presence="offline"), room, event_id)
        built, used = self.counters()
        self.clock.advance(5)
        second = self.event(await self.sync(ct, since=since[1], set_presence="offline"), room, event_id)
        self.assertEqual(self.counters(), (built, used + 1))
        self.assertEqual(second["unsigned"]["age"] - first["unsigned"]["age"], 5000)

    async def test_sender_gets_transaction_id(self) -> None:
        room, [(alice, at), (bob, bt)] = await self.setup_room("alice", "bob")
        since = await self.tokens(bt, at)
        r = await self.send(at, room, {"msgtype": "m.text", "body": "mine"}, txn="my-txn")
        event_id = r.json["event_id"]
        theirs = self.event(await self.sync(bt, since=since[0], set_presence="offline"), room, event_id)
        built, used = self.counters()
        mine = self.event(await self.sync(at, since=since[1], set_presence="offline"), room, event_id)
        # The sender's own response is built for them: not a shared use.
        self.assertEqual(self.counters()[1], used)
        self.assertEqual(mine["unsigned"].get("transaction_id"), "my-txn")
        self.assertNotIn("transaction_id", theirs["unsigned"])

    async def test_ignored_sender(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct), (eve, et)] = await self.setup_room(
            "alice", "bob", "carol", "eve"
        )
        await self.put_account_data(ct, carol, "m.ignored_user_list", {"ignored_users": {eve: {}}})
        since = await self.tokens(bt, ct)
        from_eve = await self.send_ok(et, room, {"msgtype": "m.text", "body": "eve"})
        from_alice = await self.send_ok(at, room, {"msgtype": "m.text", "body": "alice"})
        bob_body = await self.sync(bt, since=since[0], set_presence="offline")
        carol_body = await self.sync(ct, since=since[1], set_presence="offline")
        self.assertEqual(self.timeline_ids(bob_body, room), [from_eve, from_alice])
        self.assertEqual(self.timeline_ids(carol_body, room), [from_alice])

    async def test_different_filters(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct), (dan, dt)] = await self.setup_room(
            "alice", "bob", "carol", "dan"
        )
        fields = {"event_fields": ["type", "content.body"]}
        types = {"room": {"timeline": {"not_types": ["m.room.message"]}}}
        since = [
            (await self.sync(bt, filter=fields, set_presence="offline"))["next_batch"],
            (await self.sync(ct, filter=types, set_presence="offline"))["next_batch"],
            (await self.sync(dt, set_presence="offline"))["next_batch"],
        ]
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "x"})
        built, used = self.counters()
        plain = await self.sync(dt, since=since[2], set_presence="offline")
        projected = await self.sync(bt, since=since[0], filter=fields, set_presence="offline")
        no_messages = await self.sync(ct, since=since[1], filter=types, set_presence="offline")
        self.assertEqual(self.counters(), (built + 1, used + 1))
        self.assertEqual(
            self.joined(projected, room)["timeline"]["events"],
            [{"type": "m.room.message", "content": {"body": "x"}}],
        )
        self.assertIn("event_id", self.joined(plain, room)["timeline"]["events"][0])
        no_room = self.joined(no_messages, room)
        self.assertTrue(no_room is None or no_room["timeline"]["events"] == [])

    async def test_history_visibility(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct)] = await self.setup_room(
            "alice", "bob", "carol",
            initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
        )
        dan, dt = await self.user("dan")
        since = await self.tokens(bt, ct, dt)
        before = await self.send_ok(at, room, {"msgtype": "m.text", "body": "before dan"})
        await self.join(dt, room)
        after = await self.send_ok(at, room, {"msgtype": "m.text", "body": "after dan"})
        bob_body = await self.sync(bt, since=since[0], set_presence="offline")
        built, used = self.counters()
        carol_body = await self.sync(ct, since=since[1], set_presence="offline")
        dan_body = await self.sync(dt, since=since[2], set_presence="offline")
        self.assertEqual(self.counters()[1], used + 1)  # carol, not dan
        self.assertEqual(self.timeline_ids(carol_body, room), self.timeline_ids(bob_body, room))
        self.assertIn(before, self.timeline_ids(bob_body, room))
        self.assertNotIn(before, self.timeline_ids(dan_body, room))
        self.assertIn(after, self.timeline_ids(dan_body, room))

    async def test_redacted_event_not_shared(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct)] = await self.setup_room("alice", "bob", "carol")
        since = await self.tokens(bt, ct, at)
        target = await self.send_ok(at, room, {"msgtype": "m.text", "body": "oops"})
        r = await self.request(
            "PUT", f"{V3}/rooms/{q(room)}/redact/{q(target)}/redact-txn", {}, access_token=at
        )
        self.assertEqual(r.code, 200, r.body)
        built, used = self.counters()
        bodies = [
            await self.sync(t, since=s, set_presence="offline") for t, s in zip((bt, ct, at), since)
        ]
        self.assertEqual(self.counters(), (built, used))
        for body in bodies[:2]:
            because = self.event(body, room, target)["unsigned"]["redacted_because"]
            self.assertNotIn("transaction_id", because["unsigned"])
            self.assertEqual(self.event(body, room, target)["content"], {})
        # The redacting device sees its transaction ID in redacted_because.
        mine = self.event(bodies[2], room, target)["unsigned"]["redacted_because"]
        self.assertEqual(mine["unsigned"].get("transaction_id"), "redact-txn")

    async def test_bundled_aggregations_per_viewer(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct)] = await self.setup_room("alice", "bob", "carol")
        since = await self.tokens(bt, ct)
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        await self.send_ok(bt, room, thread(root, "bob's reply"))
        built, used = self.counters()
        bob_root = self.event(await self.sync(bt, since=since[0], set_presence="offline"), room, root)
        carol_root = self.event(await self.sync(ct, since=since[1], set_presence="offline"), room, root)
        self.assertEqual(self.counters(), (built, used))
        self.assertTrue(bob_root["unsigned"]["m.relations"]["m.thread"]["current_user_participated"])
        self.assertFalse(carol_root["unsigned"]["m.relations"]["m.thread"]["current_user_participated"])

    async def test_state_section_shared(self) -> None:
        room, [(alice, at), (bob, bt), (carol, ct)] = await self.setup_room("alice", "bob", "carol")
        since = await self.tokens(bt, ct)
        await self.put_state(at, room, "m.room.topic", {"topic": "one"})
        for i in range(4):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)})
        flt = {"room": {"timeline": {"limit": 2}}}
        built, used = self.counters()
        bodies = [
            await self.sync(t, since=s, filter=flt, set_presence="offline") for t, s in zip((bt, ct), since)
        ]
        # The timeline and the state delta (the topic), each built once.
        self.assertEqual(self.counters(), (built + 2, used + 4))
        for body in bodies:
            r = self.joined(body, room)
            self.assertTrue(r["timeline"]["limited"])
            topics = [e for e in r["state"]["events"] if e["type"] == "m.room.topic"]
            self.assertEqual([e["content"] for e in topics], [{"topic": "one"}])
            self.assertIsInstance(topics[0]["unsigned"]["age"], int)
        self.assertEqual(self.joined(bodies[0], room)["state"], self.joined(bodies[1], room)["state"])

    async def test_long_sections_not_shared(self) -> None:
        from conduit_tw.handlers import sync_rooms

        self.patch(sync_rooms, "_MAX_SHARED_EVENTS", 2)
        room, [(alice, at), (bob, bt), (carol, ct)] = await self.setup_room("alice", "bob", "carol")
        since = await self.tokens(bt, ct)
        sent = [await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(3)]
        built, used = self.counters()
        bodies = [await self.sync(t, since=s, set_presence="offline") for t, s in zip((bt, ct), since)]
        self.assertEqual(self.counters(), (built, used))
        for body in bodies:
            self.assertEqual(self.timeline_ids(body, room), sent)
