"""
Rooms shared by two of our servers over real federation (TLS on loopback,
the real keyring, the persisted sender, the inbound PDU pipeline): a
remote join by alias, messages and state both ways in /sync and
/messages, invites, kicks and bans across, leaves, typing and receipts,
and a restart of one side with messages queued for it.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.api.rooms import V3, q
from tests.integration.federation import start_homeserver, start_service
from tests.integration.test_federation_membership import Server


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "") -> Any:
    """Poll C{check} until it returns something true; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("Timed out waiting for %s" % (what or check))
        await deferLater(reactor, 0.1, lambda: None)


class TwoServers(unittest.TestCase):
    """Alice on A, Bob on B; A's room C{#hall:A} that Bob joins by alias."""

    timeout = 180
    txn = 0

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._setup())

    async def _setup(self) -> None:
        self.a = Server(await start_homeserver(self))
        self.b_service = await start_service(self)
        self.b = Server(self.b_service.homeserver)
        self.alice, self.at = await self.a.user("alice")
        self.bob, self.bt = await self.b.user("bob")

    async def create_room(self, **body: Any) -> str:
        r = await self.a.request("POST", V3 + "/createRoom", body, self.at)
        self.assertEqual(r.code, 200, r.body)
        return r.json["room_id"]

    async def join_by_alias(self, alias: str, server: Server | None = None, token: str | None = None) -> str:
        r = await (server or self.b).request("POST", V3 + "/join/%s" % q(alias), {}, token or self.bt)
        self.assertEqual(r.code, 200, r.body)
        return r.json["room_id"]

    async def send(self, server: Server, token: str, room: str, body: str) -> str:
        self.txn += 1
        r = await server.request(
            "PUT", V3 + "/rooms/%s/send/m.room.message/t%d" % (q(room), self.txn),
            {"msgtype": "m.text", "body": body}, token,
        )
        self.assertEqual(r.code, 200, r.body)
        return r.json["event_id"]

    async def has_event(self, server: Server, event_id: str) -> bool:
        ev = await server.hs.event_store.get_event(event_id)
        return ev is not None and ev.in_timeline

    async def arrives(self, server: Server, event_id: str) -> None:
        await wait_for(lambda: self.has_event(server, event_id), what="%s on %s" % (event_id, server.name))

    async def messages(self, server: Server, token: str, room: str, limit: int = 50, **params: str) -> dict[str, Any]:
        query = "&".join(["dir=b", "limit=%d" % limit] + ["%s=%s" % (k, q(v)) for k, v in params.items()])
        r = await server.request("GET", V3 + "/rooms/%s/messages?%s" % (q(room), query), token=token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def bodies(self, server: Server, token: str, room: str) -> list[str]:
        chunk = (await self.messages(server, token, room))["chunk"]
        return [e["content"]["body"] for e in reversed(chunk) if e["type"] == "m.room.message"]

    async def member(self, server: Server, room: str, user: str) -> str | None:
        return await server.hs.event_store.membership(user, room)

    async def shared_room(self) -> str:
        room = await self.create_room(preset="public_chat", room_alias_name="hall", name="Hall")
        self.assertEqual(await self.join_by_alias("#hall:" + self.a.name), room)
        await wait_for(lambda: self.a.hs.event_store.membership(self.bob, room), what="bob on A")
        return room


class RoomFederationTests(TwoServers):

    async def test_messages_both_ways(self) -> None:
        room = await self.shared_room()
        from_a = await self.send(self.a, self.at, room, "hello from A")
        await self.arrives(self.b, from_a)
        from_b = await self.send(self.b, self.bt, room, "hello from B")
        await self.arrives(self.a, from_b)
        # Both in /messages on both sides, in the same order.
        self.assertEqual(await self.bodies(self.a, self.at, room), ["hello from A", "hello from B"])
        self.assertEqual(await self.bodies(self.b, self.bt, room), ["hello from A", "hello from B"])
        # And in /sync.
        for server, token in ((self.a, self.at), (self.b, self.bt)):
            timeline = (await server.sync(token))["rooms"]["join"][room]["timeline"]["events"]
            ids = [e["event_id"] for e in timeline]
            self.assertIn(from_a, ids)
            self.assertIn(from_b, ids)
        # Bob redacts his message: A prunes it too.
        r = await self.b.request(
            "PUT", V3 + "/rooms/%s/redact/%s/r1" % (q(room), q(from_b)), {"reason": "oops"}, self.bt
        )
        self.assertEqual(r.code, 200, r.body)
        await self.arrives(self.a, r.json["event_id"])
        pruned = await self.a.hs.event_store.get_event(from_b)
        self.assertEqual(pruned.content, {})

    async def put_state(self, server: Server, token: str, room: str, kind: str, content: Any) -> str:
        r = await server.request("PUT", V3 + "/rooms/%s/state/%s/" % (q(room), kind), content, token)
        self.assertEqual(r.code, 200, r.body)
        return r.json["event_id"]

    async def get_state(self, server: Server, token: str, room: str, kind: str) -> Any:
        r = await server.request("GET", V3 + "/rooms/%s/state/%s/" % (q(room), kind), token=token)
        return r.json if r.code == 200 else None

    async def test_state_changes_both_ways(self) -> None:
        room = await self.shared_room()
        # Alice gives Bob power, Bob renames; Alice changes the topic.
        r = await self.a.request("GET", V3 + "/rooms/%s/state/m.room.power_levels/" % q(room), token=self.at)
        levels = r.json
        levels["users"][self.bob] = 100
        pl = await self.put_state(self.a, self.at, room, "m.room.power_levels", levels)
        await self.arrives(self.b, pl)
        name = await self.put_state(self.b, self.bt, room, "m.room.name", {"name": "Renamed by Bob"})
        topic = await self.put_state(self.a, self.at, room, "m.room.topic", {"topic": "from A"})
        await self.arrives(self.a, name)
        await self.arrives(self.b, topic)
        for server, token in ((self.a, self.at), (self.b, self.bt)):
            self.assertEqual(await self.get_state(server, token, room, "m.room.name"), {"name": "Renamed by Bob"})
            self.assertEqual(await self.get_state(server, token, room, "m.room.topic"), {"topic": "from A"})
            self.assertEqual((await self.get_state(server, token, room, "m.room.power_levels"))["users"][self.bob], 100)

    async def test_invite_across_then_leave(self) -> None:
        room = await self.create_room(name="Private")
        r = await self.a.request("POST", V3 + "/rooms/%s/invite" % q(room), {"user_id": self.bob}, self.at)
        self.assertEqual(r.code, 200, r.body)
        self.assertIn(room, (await self.b.sync(self.bt))["rooms"]["invite"])
        r = await self.b.request("POST", V3 + "/rooms/%s/join" % q(room), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        event = await self.send(self.a, self.at, room, "welcome")
        await self.arrives(self.b, event)
        r = await self.b.request("POST", V3 + "/rooms/%s/leave" % q(room), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        await wait_for(
            lambda: self._is(self.member(self.a, room, self.bob), "leave"), what="bob's leave on A"
        )
        # After the leave, A's messages no longer go to B.
        later = await self.send(self.a, self.at, room, "after")
        await deferLater(reactor, 1, lambda: None)
        self.assertFalse(await self.has_event(self.b, later))

    async def _is(self, value: Awaitable[Any], expected: Any) -> bool:
        return await value == expected

    async def test_kick_and_ban_across(self) -> None:
        room = await self.shared_room()
        r = await self.a.request("POST", V3 + "/rooms/%s/kick" % q(room), {"user_id": self.bob, "reason": "out"}, self.at)
        self.assertEqual(r.code, 200, r.body)
        await wait_for(lambda: self._is(self.member(self.b, room, self.bob), "leave"), what="kick on B")
        flt = q('{"room":{"include_leave":true}}')
        r = await self.b.request("GET", V3 + "/sync?filter=" + flt, token=self.bt)
        self.assertIn(room, r.json["rooms"]["leave"])
        # Bob rejoins, then is banned.
        self.assertEqual(await self.join_by_alias("#hall:" + self.a.name), room)
        r = await self.a.request("POST", V3 + "/rooms/%s/ban" % q(room), {"user_id": self.bob}, self.at)
        self.assertEqual(r.code, 200, r.body)
        await wait_for(lambda: self._is(self.member(self.b, room, self.bob), "ban"), what="ban on B")
        r = await self.b.request("POST", V3 + "/join/%s" % q("#hall:" + self.a.name), {}, self.bt)
        self.assertEqual((r.code, r.json.get("errcode")), (403, "M_FORBIDDEN"), r.body)
        self.assertEqual(await self.member(self.a, room, self.bob), "ban")

    async def test_typing_and_receipts_across(self) -> None:
        room = await self.shared_room()
        r = await self.b.request(
            "PUT", V3 + "/rooms/%s/typing/%s" % (q(room), q(self.bob)), {"typing": True, "timeout": 20000}, self.bt
        )
        self.assertEqual(r.code, 200, r.body)

        async def typing_on_a() -> bool:
            ephemeral = (await self.a.sync(self.at))["rooms"]["join"][room].get("ephemeral", {})
            return any(
                e["type"] == "m.typing" and self.bob in e["content"]["user_ids"]
                for e in ephemeral.get("events", [])
            )

        await wait_for(typing_on_a, what="typing on A")
        event = await self.send(self.a, self.at, room, "read me")
        await self.arrives(self.b, event)
        r = await self.b.request("POST", V3 + "/rooms/%s/receipt/m.read/%s" % (q(room), q(event)), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)

        async def receipt_on_a() -> bool:
            ephemeral = (await self.a.sync(self.at))["rooms"]["join"][room].get("ephemeral", {})
            return any(
                e["type"] == "m.receipt" and self.bob in e["content"].get(event, {}).get("m.read", {})
                for e in ephemeral.get("events", [])
            )

        await wait_for(receipt_on_a, what="receipt on A")

    async def test_restart_with_messages_queued(self) -> None:
        room = await self.shared_room()
        hs = self.b.hs
        config = dict(
            server_name=hs.server_name, port=hs.config.port[0], database_path=hs.config.database_path
        )
        await self.b_service.stopService()
        sent = [await self.send(self.a, self.at, room, "queued %d" % i) for i in range(5)]
        self.b_service = await start_service(self, **config)
        self.b = Server(self.b_service.homeserver)
        # Bob types after the restart: A hears from B (destination_is_up)
        # and retries at once instead of waiting for its backoff.
        r = await self.b.request(
            "PUT", V3 + "/rooms/%s/typing/%s" % (q(room), q(self.bob)), {"typing": True, "timeout": 5000}, self.bt
        )
        self.assertEqual(r.code, 200, r.body)
        for event_id in sent:
            await self.arrives(self.b, event_id)
        bodies = await self.bodies(self.b, self.bt, room)
        self.assertEqual(bodies, ["queued %d" % i for i in range(5)])
        reply = await self.send(self.b, self.bt, room, "back")
        await self.arrives(self.a, reply)


class BackfillTests(TwoServers):

    async def test_backfill_100_messages(self) -> None:
        """Bob joins after 100 messages; paginating back on B fetches them all from A, in order."""
        room = await self.create_room(preset="public_chat", room_alias_name="old")
        r = await self.a.request(
            "PUT", V3 + "/rooms/%s/state/m.room.history_visibility/" % q(room),
            {"history_visibility": "shared"}, self.at,
        )
        self.assertEqual(r.code, 200, r.body)
        for i in range(100):
            await self.send(self.a, self.at, room, "old %d" % i)
        self.assertEqual(await self.join_by_alias("#old:" + self.a.name), room)
        bodies: list[str] = []
        token: str | None = None
        for _ in range(20):
            page = await self.messages(self.b, self.bt, room, limit=30, **({"from": token} if token else {}))
            bodies[:0] = [e["content"]["body"] for e in reversed(page["chunk"]) if e["type"] == "m.room.message"]
            if "end" not in page:
                break
            token = page["end"]
        missing = sorted(set("old %d" % i for i in range(100)) - set(bodies))
        self.assertEqual(bodies, ["old %d" % i for i in range(100)], missing)
        # Paginating again is answered from B's store, not A.
        asked = []
        original = self.b.hs.backfiller.backfill

        async def counting(room_id: str, limit: int) -> int:
            asked.append(room_id)
            return await original(room_id, limit)

        self.b.hs.room_history.backfill = counting
        page = await self.messages(self.b, self.bt, room, limit=200)
        self.assertEqual(
            [e["content"]["body"] for e in reversed(page["chunk"]) if e["type"] == "m.room.message"],
            ["old %d" % i for i in range(100)],
        )
        self.assertLessEqual(len(asked), 1)  # at most one (empty) request, then known exhausted


class TimestampTests(TwoServers):

    async def test_timestamp_to_event_asks_the_other_server(self) -> None:
        room = await self.create_room(preset="public_chat", room_alias_name="dates")
        early = await self.send(self.a, self.at, room, "early")
        early_ts = (await self.a.hs.event_store.get_event(early)).origin_server_ts
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(await self.join_by_alias("#dates:" + self.a.name), room)
        path = "/_matrix/client/v1/rooms/%s/timestamp_to_event?ts=%d&dir=f" % (q(room), early_ts)
        # A answers from its own history; B lacks it and asks A.
        for server, token in ((self.a, self.at), (self.b, self.bt)):
            r = await server.request("GET", path, token=token)
            self.assertEqual(r.code, 200, r.body)
            self.assertEqual(r.json, {"event_id": early, "origin_server_ts": early_ts})
        # The federation endpoint itself, signed by B.
        answer = await self.b.hs.federation_client.get_json(
            self.a.name, "/_matrix/federation/v1/timestamp_to_event/%s" % q(room),
            {"ts": [str(early_ts)], "dir": ["b"]},
        )
        self.assertEqual(answer, {"event_id": early, "origin_server_ts": early_ts})
        # A server with no user in the room is refused.
        carol_server = Server(await start_homeserver(self))
        with self.assertRaises(Exception) as e:
            await carol_server.hs.federation_client.get_json(
                self.a.name, "/_matrix/federation/v1/timestamp_to_event/%s" % q(room),
                {"ts": [str(early_ts)], "dir": ["f"]},
            )
        self.assertEqual(getattr(e.exception, "code", None), 403)


class HierarchyTests(TwoServers):

    async def test_remote_space_hierarchy(self) -> None:
        space = await self.create_room(preset="public_chat", name="Space", creation_content={"type": "m.space"})
        public = await self.create_room(preset="public_chat", name="Open", topic="t")
        private = await self.create_room(name="Closed")
        for child, suggested in ((public, True), (private, False), ("!unknown:elsewhere", False)):
            r = await self.a.request(
                "PUT", V3 + "/rooms/%s/state/m.space.child/%s" % (q(space), q(child)),
                {"via": [self.a.name], "suggested": suggested}, self.at,
            )
            self.assertEqual(r.code, 200, r.body)
        # B asks A (as the client /hierarchy does for rooms B is not in).
        answer = await self.b.hs.federation_hierarchy.fetch_remote(space, [self.a.name])
        self.assertIsNotNone(answer)
        room = answer["room"]
        self.assertEqual((room["room_id"], room["name"], room["room_type"], room["join_rule"]),
                         (space, "Space", "m.space", "public"))
        self.assertEqual({c["state_key"] for c in room["children_state"]}, {public, private, "!unknown:elsewhere"})
        self.assertTrue(all("origin_server_ts" in c for c in room["children_state"]))
        self.assertEqual([(c["room_id"], c["name"], c["topic"], c["num_joined_members"]) for c in answer["children"]],
                         [(public, "Open", "t", 1)])
        self.assertEqual(answer["inaccessible_children"], [private])
        # suggested_only keeps the suggested child only.
        answer = await self.b.hs.federation_hierarchy.fetch_remote(space, [self.a.name], suggested_only=True)
        self.assertEqual([c["state_key"] for c in answer["room"]["children_state"]], [public])
        # A private space is not found by a server with nobody in it.
        self.assertIsNone(await self.b.hs.federation_hierarchy.fetch_remote(private, [self.a.name]))
        with self.assertRaises(Exception) as e:
            await self.b.hs.federation_client.get_json(
                self.a.name, "/_matrix/federation/v1/hierarchy/%s" % q(private)
            )
        self.assertEqual((e.exception.code, e.exception.errcode), (404, "M_NOT_FOUND"))


class OutgoingTests(TwoServers):

    async def test_local_membership_and_profile_events_reach_remote_members(self) -> None:
        room = await self.shared_room()
        carol, ct = await self.a.user("carol")
        r = await self.a.request("POST", V3 + "/rooms/%s/join" % q(room), {}, ct)
        self.assertEqual(r.code, 200, r.body)
        await wait_for(lambda: self._member_is(self.b, room, carol, "join"), what="carol's join on B")
        r = await self.a.request("PUT", V3 + "/profile/%s/displayname" % q(carol), {"displayname": "Carol C"}, ct)
        self.assertEqual(r.code, 200, r.body)

        async def renamed() -> bool:
            ev = await self.b.hs.event_store.current_state_event(room, "m.room.member", carol)
            return ev is not None and ev.content.get("displayname") == "Carol C"

        await wait_for(renamed, what="carol's new display name on B")
        r = await self.a.request("POST", V3 + "/rooms/%s/leave" % q(room), {}, ct)
        self.assertEqual(r.code, 200, r.body)
        await wait_for(lambda: self._member_is(self.b, room, carol, "leave"), what="carol's leave on B")

    async def _member_is(self, server: Server, room: str, user: str, membership: str) -> bool:
        return await server.hs.event_store.membership(user, room) == membership
