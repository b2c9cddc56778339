"""
/messages, /context, /members, /joined_members and /timestamp_to_event
(handlers/room_history.py).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from conduit_tw.handlers.room_history import encode_token, parse_token
from conduit_tw.storage.stores.timeline import LIVE_BASE
from tests.api.rooms import V3, RoomsTestCase, q


class HistoryTestCase(RoomsTestCase):
    async def messages(self, token: str, room_id: str, expect: int = 200, **params: Any) -> Any:
        if "filter" in params and not isinstance(params["filter"], str):
            params["filter"] = json.dumps(params["filter"])
        qs = urlencode({k: v for k, v in params.items() if v is not None})
        r = await self.request("GET", f"{V3}/rooms/{q(room_id)}/messages?{qs}", access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def context(self, token: str, room_id: str, event_id: str, expect: int = 200, **params: Any) -> Any:
        if "filter" in params and not isinstance(params["filter"], str):
            params["filter"] = json.dumps(params["filter"])
        qs = urlencode(params)
        r = await self.request(
            "GET", f"{V3}/rooms/{q(room_id)}/context/{q(event_id)}?{qs}", access_token=token
        )
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def bodies(self, token: str, room_id: str, **params: Any) -> list[str]:
        body = await self.messages(token, room_id, **params)
        return [e["content"].get("body") for e in body["chunk"] if e["type"] == "m.room.message"]

    async def say(self, token: str, room_id: str, text: str) -> str:
        return await self.send_ok(token, room_id, {"msgtype": "m.text", "body": text})


class TokenTests(HistoryTestCase):
    def test_round_trip(self) -> None:
        for b in (0, 1, LIVE_BASE - 5, LIVE_BASE, LIVE_BASE + 1, LIVE_BASE + 123456):
            self.assertEqual(parse_token(encode_token(b)), b)

    def test_sync_style_tokens(self) -> None:
        self.assertEqual(parse_token("s42"), LIVE_BASE + 42)
        self.assertEqual(parse_token("s42_7_9"), LIVE_BASE + 42)
        self.assertEqual(parse_token("42"), LIVE_BASE + 42)

    async def test_bad_token(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        body = await self.messages(at, room, expect=400, dir="b", **{"from": "nonsense"})
        self.assertEqual(body["errcode"], "M_INVALID_PARAM")
        await self.messages(at, room, expect=400, dir="x")


class MessagesTests(HistoryTestCase):
    async def test_non_member_refused(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at)
        body = await self.messages(bt, room, expect=403, dir="b")
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        await self.messages(bt, "!nope:test", expect=403, dir="b")

    async def test_backwards_and_forwards_without_from(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        for i in range(5):
            await self.say(at, room, "m%d" % i)
        body = await self.messages(at, room, dir="b", limit=3)
        self.assertEqual([e["content"].get("body") for e in body["chunk"]], ["m4", "m3", "m2"])
        self.assertIn("start", body)
        self.assertIn("end", body)
        for e in body["chunk"]:
            self.assertEqual(e["room_id"], room)
        # From the start: the create event first.
        body = await self.messages(at, room, dir="f", limit=2)
        self.assertEqual([e["type"] for e in body["chunk"]], ["m.room.create", "m.room.member"])
        # Everything: a non-empty chunk still has an end; from it, an
        # empty chunk without end says there is nothing more.
        body = await self.messages(at, room, dir="b", limit=100)
        self.assertIn("end", body)
        self.assertEqual(body["chunk"][-1]["type"], "m.room.create")
        more = await self.messages(at, room, dir="b", limit=100, **{"from": body["end"]})
        self.assertEqual(more["chunk"], [])
        self.assertNotIn("end", more)
        body = await self.messages(at, room, dir="f", limit=100)
        self.assertIn("end", body)
        self.assertEqual(body["chunk"][-1]["content"]["body"], "m4")
        more = await self.messages(at, room, dir="f", limit=100, **{"from": body["end"]})
        self.assertEqual(more["chunk"], [])
        self.assertNotIn("end", more)

    async def test_pagination_1000_events_both_directions(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        for i in range(1000):
            await self.say(at, room, str(i))
        everything = await self.messages(at, room, dir="f", limit=5000)  # capped at 1000
        self.assertEqual(len(everything["chunk"]), 1000)
        full = [e["event_id"] for e in (await self.messages(at, room, dir="b", limit=1000))["chunk"]]
        rest = await self.messages(
            at, room, dir="b", limit=1000, **{"from": (await self.messages(at, room, dir="b", limit=1000))["end"]}
        )
        full += [e["event_id"] for e in rest["chunk"]]
        last = await self.messages(at, room, dir="b", limit=1000, **{"from": rest["end"]})
        self.assertEqual((last["chunk"], "end" in last), ([], False))
        full.reverse()  # oldest first: every event of the room
        self.assertEqual(len(full), len(set(full)))

        for limit in (1, 7, 100, 999):
            # Backwards, newest first.
            seen: list[str] = []
            token = None
            while True:
                body = await self.messages(at, room, dir="b", limit=limit, **{"from": token})
                self.assertLessEqual(len(body["chunk"]), limit)
                seen += [e["event_id"] for e in body["chunk"]]
                if "end" not in body:
                    break
                token = body["end"]
            self.assertEqual(seen, full[::-1], limit)
            # Forwards, oldest first.
            seen = []
            token = None
            while True:
                body = await self.messages(at, room, dir="f", limit=limit, **{"from": token})
                seen += [e["event_id"] for e in body["chunk"]]
                if "end" not in body:
                    break
                token = body["end"]
            self.assertEqual(seen, full, limit)

        # Round trip: an end token of a backwards page, used forwards,
        # gives back that page in chronological order, and vice versa.
        first = await self.messages(at, room, dir="b", limit=50)
        second = await self.messages(at, room, dir="b", limit=50, **{"from": first["end"]})
        back = await self.messages(at, room, dir="f", limit=50, **{"from": second["end"]})
        self.assertEqual(
            [e["event_id"] for e in back["chunk"]], [e["event_id"] for e in second["chunk"]][::-1]
        )
        forward = await self.messages(at, room, dir="f", limit=30, **{"from": back["end"]})
        again = await self.messages(at, room, dir="b", limit=30, **{"from": forward["end"]})
        self.assertEqual(
            [e["event_id"] for e in again["chunk"]], [e["event_id"] for e in forward["chunk"]][::-1]
        )
        # start echoes from.
        self.assertEqual(second["start"], first["end"])

    async def test_to_token(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        for i in range(10):
            await self.say(at, room, str(i))
        page = await self.messages(at, room, dir="b", limit=3)  # 9 8 7
        page2 = await self.messages(at, room, dir="b", limit=3, **{"from": page["end"]})  # 6 5 4
        body = await self.messages(at, room, dir="b", limit=100, to=page2["end"])
        self.assertEqual([e["content"]["body"] for e in body["chunk"]], [str(i) for i in range(9, 3, -1)])
        rest = await self.messages(at, room, dir="b", limit=100, to=page2["end"], **{"from": body["end"]})
        self.assertEqual((rest["chunk"], "end" in rest), ([], False))
        body = await self.messages(at, room, dir="f", limit=100, to=page["end"], **{"from": page2["end"]})
        self.assertEqual([e["content"]["body"] for e in body["chunk"]], ["4", "5", "6"])

    async def test_limit_zero_and_default(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        for i in range(15):
            await self.say(at, room, str(i))
        self.assertEqual(len((await self.messages(at, room, dir="b"))["chunk"]), 10)
        body = await self.messages(at, room, dir="b", limit=0)
        self.assertEqual(body["chunk"], [])
        await self.messages(at, room, dir="b", limit=-1, expect=400)

    async def test_filters(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.say(at, room, "a1")
        await self.say(bt, room, "b1")
        await self.send_ok(at, room, {"msgtype": "m.image", "body": "pic", "url": "mxc://test/x"})
        await self.send_ok(at, room, {"x": 1}, event_type="org.example.custom")
        self.assertEqual(
            await self.bodies(at, room, dir="b", filter={"senders": [bob]}), ["b1"]
        )
        self.assertEqual(
            await self.bodies(at, room, dir="b", filter={"not_senders": [bob], "types": ["m.room.message"]}),
            ["pic", "a1"],
        )
        body = await self.messages(at, room, dir="b", filter={"contains_url": True})
        self.assertEqual([e["content"]["body"] for e in body["chunk"]], ["pic"])
        body = await self.messages(at, room, dir="b", filter={"types": ["org.*"]})
        self.assertEqual([e["type"] for e in body["chunk"]], ["org.example.custom"])
        body = await self.messages(at, room, dir="b", filter={"not_types": ["m.*"]})
        self.assertEqual([e["type"] for e in body["chunk"]], ["org.example.custom"])
        # Filtered-out events do not count toward the limit.
        body = await self.messages(at, room, dir="f", limit=2, filter={"types": ["m.room.message"]})
        self.assertEqual([e["content"]["body"] for e in body["chunk"]], ["a1", "b1"])
        # A stored filter ID: its room.timeline section applies.
        r = await self.request(
            "POST", f"{V3}/user/{q(alice)}/filter",
            {"room": {"timeline": {"senders": [bob]}}}, access_token=at,
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.bodies(at, room, dir="b", filter=r.json["filter_id"]), ["b1"])
        await self.messages(at, room, dir="b", filter="unknown", expect=404)
        await self.messages(at, room, dir="b", filter="{bad json", expect=400)
        await self.messages(at, room, dir="b", filter={"senders": "x"}, expect=400)

    async def test_lazy_loading_members(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.join(ct, room)
        for i in range(5):
            await self.say(at, room, "a%d" % i)
        await self.say(bt, room, "b")
        body = await self.messages(
            at, room, dir="b", limit=3, filter={"lazy_load_members": True, "types": ["m.room.message"]}
        )
        self.assertEqual([e["content"]["body"] for e in body["chunk"]], ["b", "a4", "a3"])
        members = {e["state_key"]: e for e in body["state"]}
        self.assertEqual(set(members), {alice, bob})
        for e in members.values():
            self.assertEqual(e["type"], "m.room.member")
            self.assertEqual(e["content"]["membership"], "join")
        body = await self.messages(
            at, room, dir="b", limit=3,
            filter={"lazy_load_members": True, "include_redundant_members": True},
        )
        self.assertIn("state", body)
        # Without lazy loading: no state.
        body = await self.messages(at, room, dir="b", limit=3)
        self.assertNotIn("state", body)

    async def test_ignored_users(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.say(at, room, "from alice")
        await self.say(bt, room, "from bob")
        r = await self.request(
            "PUT", f"{V3}/user/{q(alice)}/account_data/m.ignored_user_list",
            {"ignored_users": {bob: {}}}, access_token=at,
        )
        self.assertEqual(r.code, 200, r.body)
        body = await self.messages(at, room, dir="b", limit=50)
        self.assertNotIn(bob, [e["sender"] for e in body["chunk"] if "state_key" not in e])
        # Bob's state events (his join) are still there.
        self.assertIn(bob, [e["sender"] for e in body["chunk"] if e["type"] == "m.room.member"])
        self.assertIn("from alice", [e["content"].get("body") for e in body["chunk"]])


class VisibilityTests(HistoryTestCase):
    """A user invited and joining later sees earlier events per history_visibility."""

    async def _scenario(self, visibility: str) -> tuple[str, str, str, dict[str, str]]:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": visibility},
            }],
        )
        ids = {"before_invite": await self.say(at, room, "before_invite")}
        await self.invite(at, room, bob)
        ids["after_invite"] = await self.say(at, room, "after_invite")
        await self.join(bt, room)
        ids["after_join"] = await self.say(at, room, "after_join")
        return room, at, bt, ids

    async def _check(self, visibility: str, expected: list[str]) -> None:
        room, at, bt, ids = await self._scenario(visibility)
        self.assertEqual(
            await self.bodies(bt, room, dir="f", limit=100), expected, visibility
        )
        self.assertEqual(
            await self.bodies(bt, room, dir="b", limit=100), expected[::-1], visibility
        )
        for name, event_id in ids.items():
            await self.context(bt, room, event_id, expect=200 if name in expected else 404)

    async def test_world_readable(self) -> None:
        await self._check("world_readable", ["before_invite", "after_invite", "after_join"])

    async def test_shared(self) -> None:
        await self._check("shared", ["before_invite", "after_invite", "after_join"])

    async def test_invited(self) -> None:
        await self._check("invited", ["after_invite", "after_join"])

    async def test_joined(self) -> None:
        await self._check("joined", ["after_join"])

    async def test_world_readable_non_member(self) -> None:
        alice, at = await self.user("alice")
        eve, et = await self.user("eve")
        room = await self.create_room(
            at, initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"},
            }],
        )
        await self.say(at, room, "public words")
        self.assertEqual(await self.bodies(et, room, dir="b"), ["public words"])

    async def test_departed_user_stops_at_leave(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.say(at, room, "while there")
        r = await self.member_action(bt, room, "leave")
        self.assertEqual(r.code, 200, r.body)
        after = await self.say(at, room, "after leaving")
        self.assertEqual(await self.bodies(bt, room, dir="b"), ["while there"])
        self.assertEqual(await self.bodies(bt, room, dir="f", limit=100), ["while there"])
        await self.context(bt, room, after, expect=404)
        # A user who was never in the room is refused outright.
        eve, et = await self.user("eve")
        await self.messages(et, room, dir="b", expect=403)


class ContextTests(HistoryTestCase):
    async def test_context(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        ids = [await self.say(at, room, str(i)) for i in range(20)]
        body = await self.context(at, room, ids[10], limit=6)
        self.assertEqual(body["event"]["event_id"], ids[10])
        self.assertEqual([e["event_id"] for e in body["events_before"]], ids[9:6:-1])
        self.assertEqual([e["event_id"] for e in body["events_after"]], ids[11:14])
        # The tokens continue with /messages.
        page = await self.messages(at, room, dir="b", limit=2, **{"from": body["start"]})
        self.assertEqual([e["event_id"] for e in page["chunk"]], ids[6:4:-1])
        page = await self.messages(at, room, dir="f", limit=2, **{"from": body["end"]})
        self.assertEqual([e["event_id"] for e in page["chunk"]], ids[14:16])
        # State at the last event returned.
        state_types = {e["type"] for e in body["state"]}
        self.assertIn("m.room.create", state_types)
        self.assertEqual(
            {e["state_key"] for e in body["state"] if e["type"] == "m.room.member"}, {alice, bob}
        )
        # limit=0: only the event; the tokens surround it.
        body = await self.context(at, room, ids[10], limit=0)
        self.assertEqual((body["events_before"], body["events_after"]), ([], []))
        page = await self.messages(at, room, dir="b", limit=1, **{"from": body["start"]})
        self.assertEqual(page["chunk"][0]["event_id"], ids[9])

    async def test_context_lazy_loading_and_filter(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.join(ct, room)
        ids = [await self.say(at, room, str(i)) for i in range(6)]
        await self.say(bt, room, "bob")
        body = await self.context(
            at, room, ids[4], limit=4, filter={"lazy_load_members": True, "types": ["m.room.message", "m.room.member", "m.room.create"]}
        )
        members = {e["state_key"] for e in body["state"] if e["type"] == "m.room.member"}
        self.assertEqual(members, {alice, bob})
        self.assertEqual({e["type"] for e in body["state"]}, {"m.room.member", "m.room.create"})

    async def test_context_refusals(self) -> None:
        alice, at = await self.user("alice")
        eve, et = await self.user("eve")
        room = await self.create_room(at)
        other = await self.create_room(at)
        event_id = await self.say(at, room, "x")
        await self.context(et, room, event_id, expect=404)
        await self.context(at, other, event_id, expect=404)
        await self.context(at, room, "$unknown", expect=404)


class MembersTests(HistoryTestCase):
    async def test_members_and_filters(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        dave, dt = await self.user("dave")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        before_carol = (await self.messages(at, room, dir="b", limit=1))["start"]
        await self.join(ct, room)
        await self.invite(at, room, dave)
        await self.member_action(ct, room, "leave")

        async def members(token: str, expect: int = 200, **params: str) -> Any:
            qs = urlencode(params)
            r = await self.request("GET", f"{V3}/rooms/{q(room)}/members?{qs}", access_token=token)
            self.assertEqual(r.code, expect, r.body)
            return r.json

        def by_user(body: Any) -> dict[str, str]:
            return {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}

        self.assertEqual(
            by_user(await members(at)), {alice: "join", bob: "join", carol: "leave", dave: "invite"}
        )
        self.assertEqual(by_user(await members(at, membership="join")), {alice: "join", bob: "join"})
        self.assertEqual(
            by_user(await members(at, not_membership="join")), {carol: "leave", dave: "invite"}
        )
        self.assertEqual(
            by_user(await members(at, membership="invite", not_membership="leave")),
            {alice: "join", bob: "join", dave: "invite"},
        )
        self.assertEqual(by_user(await members(at, at=before_carol)), {alice: "join", bob: "join"})
        await members(at, membership="bogus", expect=400)
        # Carol left: she sees the members as of her leaving.
        self.assertEqual(
            by_user(await members(ct)), {alice: "join", bob: "join", carol: "leave", dave: "invite"}
        )
        await self.say(at, room, "x")
        eve, et = await self.user("eve")
        await self.join(et, room)
        await self.member_action(et, room, "leave")
        self.assertNotIn(eve, by_user(await members(ct)))
        frank, ft = await self.user("frank")
        await members(ft, expect=403)

    async def test_joined_members(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        r = await self.request(
            "PUT", f"{V3}/profile/{q(bob)}/displayname", {"displayname": "Bobby"}, access_token=bt
        )
        self.assertEqual(r.code, 200, r.body)
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        await self.invite(at, room, carol)
        r = await self.request("GET", f"{V3}/rooms/{q(room)}/joined_members", access_token=at)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(set(r.json["joined"]), {alice, bob})
        self.assertEqual(r.json["joined"][bob], {"display_name": "Bobby", "avatar_url": None})
        r = await self.request(
            "PUT", f"{V3}/profile/{q(bob)}/avatar_url", {"avatar_url": "mxc://test/bob"},
            access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", f"{V3}/rooms/{q(room)}/joined_members", access_token=at)
        self.assertEqual(
            r.json["joined"][bob], {"display_name": "Bobby", "avatar_url": "mxc://test/bob"}
        )
        r = await self.request("GET", f"{V3}/rooms/{q(room)}/joined_members", access_token=ct)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")


class TimestampTests(HistoryTestCase):
    async def ts_to_event(self, token: str, room_id: str, ts: Any, direction: str, expect: int = 200) -> Any:
        qs = urlencode({"ts": ts, "dir": direction})
        r = await self.request(
            "GET", f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event?{qs}",
            access_token=token,
        )
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def test_both_directions(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        stamps = {}
        for i in range(5):
            self.clock.advance(10)
            event_id = await self.say(at, room, str(i))
            stamps[event_id] = (await self.get_event(at, room, event_id)).json["origin_server_ts"]
        ids = list(stamps)
        t2 = stamps[ids[2]]
        body = await self.ts_to_event(at, room, t2, "f")
        self.assertEqual(body, {"event_id": ids[2], "origin_server_ts": t2})
        self.assertEqual((await self.ts_to_event(at, room, t2 + 1, "f"))["event_id"], ids[3])
        self.assertEqual((await self.ts_to_event(at, room, t2 - 1, "b"))["event_id"], ids[1])
        self.assertEqual((await self.ts_to_event(at, room, t2 + 5, "b"))["event_id"], ids[2])
        await self.ts_to_event(at, room, stamps[ids[4]] + 1000, "f", expect=404)
        first = await self.ts_to_event(at, room, 0, "f")
        r = await self.get_event(at, room, first["event_id"])
        self.assertEqual(r.json["type"], "m.room.create")
        await self.ts_to_event(at, room, 0, "b", expect=404)
        await self.ts_to_event(at, room, "x", "b", expect=400)
        await self.ts_to_event(at, room, 5, "up", expect=400)
        eve, et = await self.user("eve")
        await self.ts_to_event(et, room, t2, "f", expect=403)

    async def test_skips_invisible_events(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, preset="public_chat", initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": "joined"},
            }],
        )
        self.clock.advance(10)
        hidden = await self.say(at, room, "hidden")
        self.clock.advance(10)
        await self.join(bt, room)
        body = await self.ts_to_event(bt, room, 0, "f")
        self.assertNotEqual(body["event_id"], hidden)
        r = await self.get_event(bt, room, body["event_id"])
        self.assertEqual(r.code, 200)


class TimestampLmdbTests(TimestampTests):
    backend = "lmdb"


class ContextLmdbTests(ContextTests):
    backend = "lmdb"


class ContextVisibilityTests(HistoryTestCase):
    """/context answers exactly what /messages lets the user page through."""

    async def test_formerly_world_readable_room(self) -> None:
        alice, at = await self.user("alice")
        eve, et = await self.user("eve")
        room = await self.create_room(
            at, preset="public_chat", initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"},
            }],
        )
        public = await self.say(at, room, "public words")
        await self.context(et, room, public)
        r = await self.put_state(at, room, "m.room.history_visibility", {"history_visibility": "shared"})
        self.assertEqual(r.code, 200, r.body)
        await self.messages(et, room, dir="b", expect=403)
        body = await self.context(et, room, public, expect=404)
        self.assertEqual(body["errcode"], "M_NOT_FOUND")

    async def test_departed_user_world_readable(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, preset="public_chat", initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"},
            }],
        )
        await self.join(bt, room)
        before = await self.say(at, room, "while there")
        r = await self.member_action(bt, room, "leave")
        self.assertEqual(r.code, 200, r.body)
        after = await self.say(at, room, "after leaving")
        self.assertEqual(await self.bodies(bt, room, dir="b"), ["while there"])
        await self.context(bt, room, after, expect=404)
        body = await self.context(bt, room, before, limit=10)
        self.assertNotIn(after, [e["event_id"] for e in body["events_after"]])
