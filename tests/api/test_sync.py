"""GET /sync: sections, tokens, long-polling, filters, lazy-loading, membership sections."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class InitialSyncTests(SyncTestCase):
    async def test_initial_sync_joined_room(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at, name="Room")
        e1 = await self.send_ok(at, room, {"msgtype": "m.text", "body": "one"})
        body = await self.sync(at)
        self.assertTrue(body["next_batch"].startswith("s"))
        r = self.joined(body, room)
        self.assertIsNotNone(r)
        self.assertEqual(self.timeline_ids(body, room)[-1], e1)
        self.assertFalse(r["timeline"]["limited"])
        self.assertIn("prev_batch", r["timeline"])
        # Small room: the whole history fits, so the state at its start is empty.
        self.assertEqual(r["state"]["events"], [])
        self.assertEqual(r["unread_notifications"], {"notification_count": 0, "highlight_count": 0})
        types = [e["type"] for e in body["account_data"]["events"]]
        self.assertIn("m.push_rules", types)
        for e in r["timeline"]["events"]:
            self.assertNotIn("room_id", e)

    async def test_limited_timeline_state_at_start(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at, name="Room")
        sent = [await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(15)]
        body = await self.sync(at, filter={"room": {"timeline": {"limit": 5}}})
        r = self.joined(body, room)
        self.assertEqual(self.timeline_ids(body, room), sent[-5:])
        self.assertTrue(r["timeline"]["limited"])
        state_types = {(e["type"], e["state_key"]) for e in r["state"]["events"]}
        self.assertIn(("m.room.create", ""), state_types)
        self.assertIn(("m.room.name", ""), state_types)
        self.assertIn(("m.room.member", alice), state_types)
        # prev_batch is a /messages token for what came before.
        r2 = await self.request(
            "GET", f"{V3}/rooms/{q(room)}/messages?dir=b&limit=5&from={r['timeline']['prev_batch']}",
            access_token=at,
        )
        self.assertEqual(r2.code, 200, r2.body)
        self.assertEqual([e["event_id"] for e in r2.json["chunk"]], list(reversed(sent[5:10])))

    async def test_timeline_limit_zero_and_types_filter(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "x"})
        body = await self.sync(at, filter={"room": {"timeline": {"limit": 0}}})
        r = self.joined(body, room)
        self.assertEqual(r["timeline"]["events"], [])
        self.assertTrue(r["timeline"]["limited"])
        self.assertTrue(any(e["type"] == "m.room.create" for e in r["state"]["events"]))
        body = await self.sync(
            at, filter={"room": {"timeline": {"types": ["m.room.message"]}, "state": {"types": ["m.room.name"]}}}
        )
        r = self.joined(body, room)
        self.assertEqual([e["type"] for e in r["timeline"]["events"]], ["m.room.message"])
        self.assertTrue(all(e["type"] == "m.room.name" for e in r["state"]["events"]))

    async def test_stored_filter_and_room_filter(self) -> None:
        alice, at = await self.user("alice")
        r1 = await self.create_room(at)
        r2 = await self.create_room(at)
        r = await self.request(
            "POST", f"{V3}/user/{q(alice)}/filter", {"room": {"rooms": [r1]}}, access_token=at
        )
        body = await self.sync(at, filter=r.json["filter_id"])
        self.assertIn(r1, body["rooms"]["join"])
        self.assertNotIn(r2, body["rooms"]["join"])
        await self.sync(at, filter="nope", expect=404)
        await self.sync(at, since="garbage", expect=400)

    async def test_summary_heroes(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        room = await self.create_room(at)
        await self.invite(at, room, bob)
        await self.join(bt, room)
        await self.invite(at, room, carol)
        body = await self.sync(bt)
        s = self.joined(body, room)["summary"]
        self.assertEqual(s["m.joined_member_count"], 2)
        self.assertEqual(s["m.invited_member_count"], 1)
        self.assertEqual(s["m.heroes"], [alice, carol])
        named = await self.create_room(at, name="Named")
        body = await self.sync(at)
        self.assertNotIn("m.heroes", self.joined(body, named)["summary"])

    async def test_presence_and_account_data(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at)
        await self.invite(at, room, bob)
        await self.join(bt, room)
        await self.sync(bt)  # bob comes online
        await self.put_account_data(at, alice, "org.example.test", {"x": 1})
        r = await self.request(
            "PUT", f"{V3}/user/{q(alice)}/rooms/{q(room)}/account_data/org.example.room", {"y": 2},
            access_token=at,
        )
        self.assertEqual(r.code, 200)
        body = await self.sync(at)
        senders = {e["sender"] for e in body["presence"]["events"]}
        self.assertIn(bob, senders)
        self.assertIn("org.example.test", [e["type"] for e in body["account_data"]["events"]])
        room_ad = self.joined(body, room)["account_data"]["events"]
        self.assertEqual(room_ad, [{"type": "org.example.room", "content": {"y": 2}}])
        since = body["next_batch"]
        await self.put_account_data(at, alice, "org.example.test", {"x": 2})
        body = await self.sync(at, since=since)
        self.assertEqual(body["account_data"]["events"], [{"type": "org.example.test", "content": {"x": 2}}])
        self.assertNotIn("rooms", body)


class IncrementalSyncTests(SyncTestCase):
    async def test_incremental_only_new(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        first = await self.sync(at)
        e = await self.send_ok(at, room, {"msgtype": "m.text", "body": "new"})
        body = await self.sync(at, since=first["next_batch"])
        self.assertEqual(self.timeline_ids(body, room), [e])
        r = self.joined(body, room)
        self.assertFalse(r["timeline"]["limited"])
        self.assertEqual(r["state"]["events"], [])
        # Idle: an empty body, nothing but the token and the key counts.
        idle = await self.sync(at, since=body["next_batch"])
        self.assertEqual(idle["next_batch"], body["next_batch"])
        self.assertNotIn("rooms", idle)
        self.assertNotIn("account_data", idle)

    async def test_gap_state_delta(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, name="Old")
        await self.invite(at, room, bob)
        await self.join(bt, room)
        since = (await self.sync(bt))["next_batch"]
        await self.put_state(at, room, "m.room.name", {"name": "New"})
        await self.put_state(at, room, "m.room.topic", {"topic": "T"})
        for i in range(12):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)})
        body = await self.sync(bt, since=since, filter={"room": {"timeline": {"limit": 5}}})
        r = self.joined(body, room)
        self.assertTrue(r["timeline"]["limited"])
        state = {(e["type"], e["state_key"]): e["content"] for e in r["state"]["events"]}
        self.assertEqual(state, {("m.room.name", ""): {"name": "New"}, ("m.room.topic", ""): {"topic": "T"}})
        self.assertEqual(self.bodies(body, room), ["7", "8", "9", "10", "11"])

    async def test_use_state_after(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at, name="Old")
        since = (await self.sync(at))["next_batch"]
        await self.put_state(at, room, "m.room.name", {"name": "New"})
        body = await self.sync(at, since=since, use_state_after=True)
        r = self.joined(body, room)
        self.assertNotIn("state", r)
        self.assertEqual([e["content"] for e in r["state_after"]["events"]], [{"name": "New"}])

    async def test_full_state(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at, name="Room")
        since = (await self.sync(at))["next_batch"]
        body = await self.sync(at, since=since, full_state=True)
        r = self.joined(body, room)
        self.assertIn("m.room.name", [e["type"] for e in r["state"]["events"]])
        self.assertEqual(r["timeline"]["events"], [])

    async def test_token_survives_restart(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        since = (await self.sync(at))["next_batch"]
        await self.restart()
        idle = await self.sync(at, since=since)
        self.assertNotIn("rooms", idle)
        e = await self.send_ok(at, room)
        body = await self.sync(at, since=since)
        self.assertEqual(self.timeline_ids(body, room), [e])

    async def test_newly_joined_room_gets_full_state(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, name="Room", preset="public_chat")
        for i in range(12):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)})
        since = (await self.sync(bt))["next_batch"]
        await self.join(bt, room)
        body = await self.sync(bt, since=since)
        r = self.joined(body, room)
        self.assertTrue(r["timeline"]["limited"])
        self.assertEqual(r["timeline"]["events"][-1]["state_key"], bob)
        state_types = {e["type"] for e in r["state"]["events"]}
        self.assertIn("m.room.create", state_types)
        self.assertIn("m.room.name", state_types)
        self.assertIn("summary", r)

    async def test_typing_in_sync_and_expiry(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at)
        await self.invite(at, room, bob)
        await self.join(bt, room)
        clock = Clock()
        self.hs.typing.reactor = clock
        since = (await self.sync(bt))["next_batch"]
        r = await self.request(
            "PUT", f"{V3}/rooms/{q(room)}/typing/{q(alice)}", {"typing": True, "timeout": 20000},
            access_token=at,
        )
        self.assertEqual(r.code, 200, r.body)
        body = await self.sync(bt, since=since)
        eph = self.joined(body, room)["ephemeral"]["events"]
        self.assertEqual(eph, [{"type": "m.typing", "content": {"user_ids": [alice]}}])
        since = body["next_batch"]
        self.assertNotIn("rooms", await self.sync(bt, since=since))
        clock.advance(21)
        body = await self.sync(bt, since=since)
        eph = self.joined(body, room)["ephemeral"]["events"]
        self.assertEqual(eph, [{"type": "m.typing", "content": {"user_ids": []}}])


class LongPollTests(SyncTestCase):
    async def test_wakes_on_send(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at)
        await self.invite(at, room, bob)
        await self.join(bt, room)
        since = (await self.sync(bt))["next_batch"]
        began = time.monotonic()
        pending = Deferred.fromCoroutine(self.sync(bt, since=since, timeout=10000))
        await sleep(0.01)
        self.assertFalse(pending.called)
        sent_at = time.monotonic()
        e = await self.send_ok(at, room, {"msgtype": "m.text", "body": "wake"})
        body = await pending
        woke_after = time.monotonic() - sent_at
        self.assertLess(woke_after, 0.1)
        self.assertLess(time.monotonic() - began, 5)
        self.assertEqual(self.timeline_ids(body, room), [e])

    async def test_timeout_returns_empty(self) -> None:
        alice, at = await self.user("alice")
        await self.create_room(at)
        since = (await self.sync(at))["next_batch"]
        began = time.monotonic()
        body = await self.sync(at, since=since, timeout=100)
        elapsed = time.monotonic() - began
        self.assertGreaterEqual(elapsed, 0.09)
        self.assertNotIn("rooms", body)
        self.assertEqual(self.hs.notifier.waiting(), 0)

    async def test_unrelated_activity_does_not_wake(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        await self.create_room(at)
        bob_room = await self.create_room(bt)
        since = (await self.sync(at))["next_batch"]
        pending = Deferred.fromCoroutine(self.sync(at, since=since, timeout=300))
        await self.send_ok(bt, bob_room)
        await sleep(0.05)
        self.assertFalse(pending.called)
        body = await pending
        self.assertNotIn("rooms", body)

    async def test_wakes_on_invite_and_receipt(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at)
        since = (await self.sync(bt))["next_batch"]
        pending = Deferred.fromCoroutine(self.sync(bt, since=since, timeout=5000))
        await sleep(0.01)
        await self.invite(at, room, bob)
        body = await pending
        self.assertIn(room, body["rooms"]["invite"])


class MembershipSectionTests(SyncTestCase):
    async def test_invite_stripped_state(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, name="Secret", topic="t")
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "hidden"})
        await self.invite(at, room, bob)
        body = await self.sync(bt)
        inv = body["rooms"]["invite"][room]["invite_state"]["events"]
        by_type = {(e["type"], e["state_key"]): e for e in inv}
        self.assertIn(("m.room.create", ""), by_type)
        self.assertEqual(by_type[("m.room.name", "")]["content"], {"name": "Secret"})
        me = by_type[("m.room.member", bob)]
        self.assertEqual(me["content"]["membership"], "invite")
        self.assertEqual(me["sender"], alice)
        for e in inv:
            self.assertEqual(set(e), {"type", "state_key", "sender", "content"})
        self.assertNotIn("join", body.get("rooms", {}))
        # Joining moves it to the join section.
        since = body["next_batch"]
        await self.join(bt, room)
        body = await self.sync(bt, since=since)
        self.assertIn(room, body["rooms"]["join"])
        self.assertNotIn("invite", body["rooms"])

    async def test_knock_state(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
        )
        r = await self.request("POST", f"{V3}/knock/{q(room)}", {}, access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        body = await self.sync(bt)
        ks = body["rooms"]["knock"][room]["knock_state"]["events"]
        self.assertIn(("m.room.member", bob), {(e["type"], e["state_key"]) for e in ks})
        self.assertIn("m.room.create", [e["type"] for e in ks])

    async def test_kick_ban_leave(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        since = (await self.sync(bt))["next_batch"]
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "before kick"})
        r = await self.member_action(at, room, "kick", {"user_id": bob, "reason": "bye"})
        self.assertEqual(r.code, 200, r.body)
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "after kick"})
        body = await self.sync(bt, since=since)
        left = body["rooms"]["leave"][room]
        events = left["timeline"]["events"]
        self.assertEqual(events[-1]["type"], "m.room.member")
        self.assertEqual(events[-1]["content"]["membership"], "leave")
        self.assertEqual(events[-1]["sender"], alice)
        self.assertIn("before kick", [e["content"].get("body") for e in events])
        self.assertNotIn("after kick", [e["content"].get("body") for e in events])
        self.assertNotIn("join", body["rooms"])
        since = body["next_batch"]
        self.assertNotIn("rooms", await self.sync(bt, since=since))
        # Initial sync: left rooms only with include_leave.
        self.assertNotIn(room, (await self.sync(bt)).get("rooms", {}).get("leave", {}))
        body = await self.sync(bt, filter={"room": {"include_leave": True}})
        self.assertIn(room, body["rooms"]["leave"])
        # A ban after rejoining.
        await self.join(bt, room)
        since = (await self.sync(bt))["next_batch"]
        r = await self.member_action(at, room, "ban", {"user_id": bob})
        self.assertEqual(r.code, 200, r.body)
        body = await self.sync(bt, since=since)
        ev = body["rooms"]["leave"][room]["timeline"]["events"][-1]
        self.assertEqual(ev["content"]["membership"], "ban")

    async def test_own_leave(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        since = (await self.sync(bt))["next_batch"]
        r = await self.member_action(bt, room, "leave")
        self.assertEqual(r.code, 200)
        body = await self.sync(bt, since=since)
        self.assertEqual(
            body["rooms"]["leave"][room]["timeline"]["events"][-1]["content"]["membership"], "leave"
        )


class IgnoredUsersTests(SyncTestCase):
    async def test_ignored_messages_and_invites(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        eve, et = await self.user("eve")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.join(et, room)
        await self.put_account_data(bt, bob, "m.ignored_user_list", {"ignored_users": {eve: {}}})
        since = (await self.sync(bt))["next_batch"]
        await self.send_ok(et, room, {"msgtype": "m.text", "body": "from eve"})
        await self.put_state(at, room, "m.room.topic", {"topic": "x"})
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "from alice"})
        body = await self.sync(bt, since=since)
        self.assertEqual(self.bodies(body, room), ["from alice"])
        eve_room = await self.create_room(et)
        await self.invite(et, eve_room, bob)
        body = await self.sync(bt)
        self.assertNotIn(eve_room, body["rooms"].get("invite", {}))
        self.assertNotIn("from eve", self.bodies(body, room))
        # Eve's state events still arrive.
        r = await self.put_state(at, room, "m.room.power_levels", {
            "users": {eve: 100}, "users_default": 0,
        })
        self.assertEqual(r.code, 200, r.body)
        since = body["next_batch"]
        r = await self.put_state(et, room, "m.room.topic", {"topic": "eve's topic"})
        self.assertEqual(r.code, 200, r.body)
        body = await self.sync(bt, since=since)
        self.assertIn("m.room.topic", [e["type"] for e in self.joined(body, room)["timeline"]["events"]])


class LazyLoadingTests(SyncTestCase):
    LL = {"room": {"state": {"lazy_load_members": True}}}

    async def _room(self) -> tuple[str, list[tuple[str, str]]]:
        users = [await self.user(n) for n in ("alice", "bob", "carol", "dave")]
        at = users[0][1]
        room = await self.create_room(at, preset="public_chat", name="LL")
        for _, t in users[1:]:
            await self.join(t, room)
        for i in range(12):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)})
        return room, users

    async def test_initial_lazy(self) -> None:
        room, users = await self._room()
        (alice, at), (bob, bt), (carol, ct), (dave, dt) = users
        body = await self.sync(dt, filter=self.LL)
        r = self.joined(body, room)
        members = {e["state_key"] for e in r["state"]["events"] if e["type"] == "m.room.member"}
        self.assertEqual(members, {alice, dave})
        self.assertIn("m.room.name", [e["type"] for e in r["state"]["events"]])
        # Without lazy-loading every member is there.
        body = await self.sync(dt)
        members = {e["state_key"] for e in self.joined(body, room)["state"]["events"] if e["type"] == "m.room.member"}
        self.assertEqual(members, {alice, bob, carol, dave})

    async def test_incremental_redundant_members(self) -> None:
        room, users = await self._room()
        (alice, at), (bob, bt), (carol, ct), (dave, dt) = users
        first = await self.sync(dt, filter=self.LL)
        for i in range(12):
            await self.send_ok(bt, room, {"msgtype": "m.text", "body": "b%d" % i})
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "a"})
        body = await self.sync(dt, since=first["next_batch"], filter=self.LL)
        r = self.joined(body, room)
        members = {e["state_key"] for e in r["state"]["events"] if e["type"] == "m.room.member"}
        # Bob is new to this device; Alice was already sent.
        self.assertEqual(members, {bob})
        again = await self.sync(
            dt, since=first["next_batch"],
            filter={"room": {"state": {"lazy_load_members": True, "include_redundant_members": True}}},
        )
        members = {e["state_key"] for e in self.joined(again, room)["state"]["events"] if e["type"] == "m.room.member"}
        self.assertEqual(members, {alice, bob})


class TokenPropertyTests(SyncTestCase):
    """
    Successive syncs neither lose nor repeat events, whatever the
    interleaving of concurrent sends (several requests in flight at once)
    and syncs. Plans are drawn by hypothesis; each is replayed against the
    real server.
    """

    async def test_no_event_lost_or_duplicated(self) -> None:
        from hypothesis import Phase, given, settings, strategies as st

        step = st.one_of(
            st.tuples(st.just("send"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 3)),
            st.tuples(st.just("sync"), st.integers(0, 2), st.just(0), st.just(0)),
        )
        plans: list[list[tuple[str, int, int, int]]] = []

        @settings(max_examples=15, database=None, phases=[Phase.generate])
        @given(st.lists(step, min_size=1, max_size=25))
        def collect(plan: list[tuple[str, int, int, int]]) -> None:
            plans.append(plan)

        collect()
        users = [await self.user(n) for n in ("alice", "bob", "carol")]
        for plan in plans:
            rooms = [await self.create_room(users[0][1], preset="public_chat") for _ in range(2)]
            for _, t in users[1:]:
                for room in rooms:
                    await self.join(t, room)
            tokens = [(await self.sync(t))["next_batch"] for _, t in users]
            seen: list[dict[str, list[str]]] = [{r: [] for r in rooms} for _ in users]
            sent: dict[str, list[str]] = {r: [] for r in rooms}
            flt = {"room": {"timeline": {"limit": 200}}}

            async def do_sync(i: int) -> None:
                body = await self.sync(users[i][1], since=tokens[i], filter=flt)
                for room in rooms:
                    r = self.joined(body, room)
                    if r is not None:
                        self.assertFalse(r["timeline"]["limited"])
                        seen[i][room].extend(self.timeline_ids(body, room))
                tokens[i] = body["next_batch"]

            for kind, who, room_idx, n in plan:
                if kind == "send":
                    # n sends in flight at once, not awaited one by one.
                    ds = [self.send(users[who][1], rooms[room_idx]) for _ in range(n)]
                    for d in ds:
                        r = await d
                        self.assertEqual(r.code, 200)
                        sent[rooms[room_idx]].append(r.json["event_id"])
                else:
                    await do_sync(who)
            for i in range(len(users)):
                await do_sync(i)
            for i in range(len(users)):
                for room in rooms:
                    self.assertEqual(seen[i][room], sent[room], (plan, i))


class IncrementalBehaviourTests(SyncTestCase):
    """Incremental-sync cases existing clients rely on."""

    async def test_incremental_presence(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        since = (await self.sync(at))["next_batch"]
        r = await self.request(
            "PUT", f"{V3}/presence/{q(bob)}/status",
            {"presence": "unavailable", "status_msg": "away"}, access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        body = await self.sync(at, since=since)
        events = {e["sender"]: e["content"] for e in body.get("presence", {}).get("events", [])}
        self.assertIn(bob, events)
        self.assertEqual(events[bob]["presence"], "unavailable")
        self.assertEqual(events[bob].get("status_msg"), "away")

    async def test_incremental_limited(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        flt = {"room": {"timeline": {"limit": 3}}}
        since = (await self.sync(at, filter=flt))["next_batch"]
        sent = [await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(5)]
        body = await self.sync(at, since=since, filter=flt)
        r = self.joined(body, room)
        self.assertEqual(self.timeline_ids(body, room), sent[-3:])
        self.assertTrue(r["timeline"]["limited"])
        since = body["next_batch"]
        sent = [await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(3)]
        body = await self.sync(at, since=since, filter=flt)
        self.assertEqual(self.timeline_ids(body, room), sent)
        self.assertFalse(self.joined(body, room)["timeline"]["limited"])

    async def _own_join_in_timeline(self, visibility: str) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, preset="public_chat", initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": visibility},
            }],
        )
        await self.send_ok(at, room)
        since = (await self.sync(bt))["next_batch"]
        r = await self.join(bt, room)
        body = await self.sync(bt, since=since)
        events = self.joined(body, room)["timeline"]["events"]
        joins = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob]
        self.assertEqual(len(joins), 1, visibility)
        self.assertEqual(joins[0]["content"]["membership"], "join")
        # Also in an initial sync.
        body = await self.sync(bt)
        events = self.joined(body, room)["timeline"]["events"]
        self.assertIn(bob, [e["state_key"] for e in events if e["type"] == "m.room.member"], visibility)

    async def test_own_join_joined_visibility(self) -> None:
        await self._own_join_in_timeline("joined")

    async def test_own_join_invited_visibility(self) -> None:
        await self._own_join_in_timeline("invited")

    async def test_lazy_members_incremental(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        room = await self.create_room(at, preset="public_chat", name="Named")  # no heroes
        await self.join(bt, room)
        await self.join(ct, room)
        flt = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
        for i in range(4):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)})
        body = await self.sync(at, filter=flt)
        since = body["next_batch"]

        def members(body: dict[str, Any]) -> set[str]:
            r = self.joined(body, room)
            if r is None:
                return set()
            return {e["state_key"] for e in r["state"]["events"] if e["type"] == "m.room.member"}

        # Bob speaks (his member event was never sent to this device).
        await self.send_ok(bt, room, {"msgtype": "m.text", "body": "bob"})
        body = await self.sync(at, since=since, filter=flt)
        self.assertIn(bob, members(body))
        since = body["next_batch"]
        # Bob again: already sent, so not again.
        await self.send_ok(bt, room, {"msgtype": "m.text", "body": "bob2"})
        body = await self.sync(at, since=since, filter=flt)
        self.assertNotIn(bob, members(body))
        since = body["next_batch"]
        # Carol, in a gap: her event is in the timeline, so her member is in state.
        await self.send_ok(ct, room, {"msgtype": "m.text", "body": "carol"})
        for i in range(3):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": "a%d" % i})
        await self.send_ok(ct, room, {"msgtype": "m.text", "body": "carol2"})
        body = await self.sync(at, since=since, filter=flt)
        self.assertIn(carol, members(body))
        since = body["next_batch"]
        # Bob changes his display name: the new member event is a timeline
        # event; his later message needs no state entry, yet a new device
        # (or a full_state sync) gets it.
        await self.send_ok(bt, room, {"msgtype": "m.text", "body": "bob3"})
        body = await self.sync(at, since=since, filter=flt, full_state=True)
        self.assertIn(bob, members(body))

    async def test_presence_of_newly_shared_users(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        r = await self.request(
            "PUT", f"{V3}/presence/{q(bob)}/status", {"presence": "online", "status_msg": "hi"},
            access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        await self.sync(ct)  # carol comes online
        room = await self.create_room(at, preset="public_chat", name="R")
        since = (await self.sync(at))["next_batch"]
        # Bob joins alice's room: his (older) presence comes with it.
        await self.join(bt, room)
        body = await self.sync(at, since=since)
        events = {e["sender"]: e["content"] for e in body.get("presence", {}).get("events", [])}
        self.assertEqual(events.get(bob, {}).get("status_msg"), "hi")
        self.assertNotIn(carol, events)
        # Carol joins: she sees alice's and bob's presence.
        since_c = (await self.sync(ct))["next_batch"]
        await self.join(ct, room)
        body = await self.sync(ct, since=since_c)
        senders = {e["sender"] for e in body.get("presence", {}).get("events", [])}
        self.assertTrue({alice, bob} <= senders, senders)

    async def test_lazy_members_resent_on_retried_sync(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat", name="Named")
        await self.join(bt, room)
        flt = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
        for i in range(3):
            await self.send_ok(at, room, {"msgtype": "m.text", "body": str(i)})
        since = (await self.sync(at, filter=flt))["next_batch"]
        await self.send_ok(bt, room, {"msgtype": "m.text", "body": "bob"})

        def members(body: dict[str, Any]) -> set[str]:
            r = self.joined(body, room)
            return {e["state_key"] for e in r["state"]["events"] if e["type"] == "m.room.member"}

        first = await self.sync(at, since=since, filter=flt)
        self.assertIn(bob, members(first))
        # The response was lost: the client retries with the same token.
        again = await self.sync(at, since=since, filter=flt)
        self.assertIn(bob, members(again))
        # From the new token, bob's member is known.
        await self.send_ok(bt, room, {"msgtype": "m.text", "body": "bob2"})
        body = await self.sync(at, since=again["next_batch"], filter=flt)
        self.assertNotIn(bob, members(body))
