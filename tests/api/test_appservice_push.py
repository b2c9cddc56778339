"""
Pushing to appservices over real HTTP on loopback: transactions in order,
one in flight, retried unchanged, persisted across a restart; ephemeral
data; queries for unknown users and aliases; ping; third-party lookups
(application-service-api "Pushing events", "Querying", "Pinging",
"Third-party networks").
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from conduit_tw.appservice import sender as sender_module
from conduit_tw.homeserver import HomeServer
from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase, q
from tests.appservice.fake_appservice import FakeAppservice

AS_TOKEN = "as-token"
HS_TOKEN = "hs-token"


def registration(url: str, extra: str = "") -> str:
    return f"""
id: irc
url: "{url}"
as_token: {AS_TOKEN}
hs_token: {HS_TOKEN}
sender_localpart: _irc_bot
protocols: [irc]
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_.*:test"
  aliases:
    - exclusive: true
      regex: "#_irc_.*:test"
{extra}"""


class PushTests(RoomsTestCase):
    config_overrides = {**OPEN, "ip_range_denylist": []}

    async def _start(self) -> None:
        self.fake = FakeAppservice()
        self.fake.listen(self)
        self.patch(sender_module.AppserviceSender, "initial_backoff_s", 0.05)
        await super()._start()
        self.reg = await self.hs.appservices.register(
            registration(self.fake.url, "receive_ephemeral: true\n")
        )

    async def bridged_room(self) -> tuple[str, str]:
        """Alice's public room with the namespace user @_irc_bob joined: C{(room, alice token)}."""
        _, token = await self.user("alice")
        room = await self.create_room(token, preset="public_chat")
        r = await self.request(
            "POST", V3 + "/register",
            {"type": "m.login.application_service", "username": "_irc_bob", "inhibit_login": True},
            access_token=AS_TOKEN,
        )
        self.assertEqual(r.code, 200, r.body)
        r = await self.request(
            "POST", f"{V3}/join/{q(room)}?user_id={q('@_irc_bob:test')}", {}, access_token=AS_TOKEN
        )
        self.assertEqual(r.code, 200, r.body)
        return room, token

    def bodies(self) -> list[str]:
        return [e["content"].get("body") for e in self.fake.events() if e["type"] == "m.room.message"]

    async def test_events_in_order_with_hs_token(self) -> None:
        room, token = await self.bridged_room()
        for i in range(5):
            await self.send_ok(token, room, {"msgtype": "m.text", "body": f"m{i}"})
        await self.fake.wait_for(lambda: len(self.bodies()) == 5)
        self.assertEqual(self.bodies(), [f"m{i}" for i in range(5)])
        self.assertTrue(all(auth == b"Bearer " + HS_TOKEN.encode() for _, _, auth, _ in self.fake.requests))
        joins = [e for e in self.fake.events() if e["type"] == "m.room.member"]
        self.assertIn("@_irc_bob:test", [e["state_key"] for e in joins])
        ids = [int(t) for t, _ in self.fake.transactions()]
        self.assertEqual(ids, sorted(set(ids)))

    async def test_uninterested_rooms_not_pushed(self) -> None:
        _, token = await self.user("carol")
        room = await self.create_room(token)
        await self.send_ok(token, room, {"msgtype": "m.text", "body": "private"})
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.bodies(), [])

    async def test_retry_same_transaction_one_in_flight(self) -> None:
        room, token = await self.bridged_room()
        await self.fake.wait_for(lambda: len(self.fake.transactions()) >= 1)
        failures = [2]
        in_flight = [0, 0]

        def answer(method: str, path: str, body: Any):
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            d: Deferred[tuple[int, Any]] = deferLater(reactor, 0.01, lambda: None)

            def done(_: object) -> tuple[int, Any]:
                in_flight[0] -= 1
                if failures[0] > 0 and "transactions" in path:
                    failures[0] -= 1
                    return (503, {"errcode": "M_UNKNOWN"})
                return (200, {})

            return d.addCallback(done)

        self.fake.answer = answer
        before = len(self.fake.transactions())
        for i in range(4):
            await self.send_ok(token, room, {"msgtype": "m.text", "body": f"r{i}"})
        await self.fake.wait_for(lambda: len(self.bodies()) == 4 and failures[0] == 0)
        await self.hs.appservice_sender.wait_idle()
        self.assertEqual(self.bodies(), [f"r{i}" for i in range(4)])
        sent = self.fake.transactions()[before:]
        # The failed transaction was resent unchanged: same ID, same body.
        self.assertEqual(sent[0], sent[1])
        self.assertEqual(sent[1], sent[2])
        self.assertEqual(in_flight[1], 1)

    async def test_queue_survives_restart(self) -> None:
        room, token = await self.bridged_room()
        await self.fake.wait_for(lambda: len(self.fake.transactions()) >= 1)
        self.fake.answer = lambda m, p, b: (500, {})
        await self.send_ok(token, room, {"msgtype": "m.text", "body": "while down"})
        await self.fake.wait_for(lambda: any(
            "while down" in str(b) for _, b in self.fake.transactions()))
        await self.hs.close()
        self.fake.answer = lambda m, p, b: (200, {})
        hs = HomeServer(self.config, reactor)
        self.addCleanup(hs.close)
        await hs.setup()
        await self.fake.wait_for(lambda: "while down" in self.bodies())
        await deferLater(reactor, 0.1, lambda: None)
        await hs.appservice_sender.wait_idle()
        self.assertEqual(self.bodies().count("while down"), 1)
        # The transaction that failed before the restart was resent as it was.
        down = [(t, b) for t, b in self.fake.transactions() if "while down" in str(b)]
        self.assertEqual({t for t, _ in down}, {down[0][0]})
        self.assertEqual(down[0], down[-1])

    async def test_ephemeral_typing(self) -> None:
        room, token = await self.bridged_room()
        r = await self.request(
            "PUT", f"{V3}/rooms/{q(room)}/typing/{q('@alice:test')}",
            {"typing": True, "timeout": 10000}, access_token=token,
        )
        self.assertEqual(r.code, 200, r.body)

        def typing() -> list[dict[str, Any]]:
            return [
                e for _, b in self.fake.transactions() for e in b.get("ephemeral", [])
                if e["type"] == "m.typing"
            ]

        await self.fake.wait_for(lambda: bool(typing()))
        self.assertEqual(typing()[0]["content"], {"user_ids": ["@alice:test"]})
        self.assertEqual(typing()[0]["room_id"], room)

    async def test_query_user_and_alias(self) -> None:
        client = self

        async def create(method: str, path: str, body: Any) -> tuple[int, Any]:
            if path.startswith("/_matrix/app/v1/users/"):
                await client.request(
                    "POST", V3 + "/register",
                    {"type": "m.login.application_service", "username": "_irc_new", "inhibit_login": True},
                    access_token=AS_TOKEN,
                )
                return (200, {})
            if path.startswith("/_matrix/app/v1/rooms/"):
                r = await client.request("POST", V3 + "/createRoom", {"room_alias_name": "_irc_chan"},
                                         access_token=AS_TOKEN)
                assert r.code == 200, r.body
                return (200, {})
            return (200, {})

        self.fake.answer = lambda m, p, b: Deferred.fromCoroutine(create(m, p, b))
        _, token = await self.user("alice")
        r = await self.request("GET", V3 + "/profile/" + q("@_irc_new:test"), access_token=token)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", V3 + "/directory/room/" + q("#_irc_chan:test"))
        self.assertEqual(r.code, 200, r.body)
        paths = [p for _, p, _, _ in self.fake.requests]
        self.assertIn("/_matrix/app/v1/users/" + q("@_irc_new:test"), paths)
        self.assertIn("/_matrix/app/v1/rooms/" + q("#_irc_chan:test"), paths)
        # Outside every namespace: nobody is asked.
        count = len(self.fake.requests)
        r = await self.request("GET", V3 + "/directory/room/" + q("#other:test"))
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertEqual(len([p for _, p, _, _ in self.fake.requests[count:] if "/rooms/" in p]), 0)

    async def test_ping(self) -> None:
        r = await self.request(
            "POST", "/_matrix/client/v1/appservice/irc/ping", {"transaction_id": "t1"},
            access_token=AS_TOKEN,
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertIsInstance(r.json["duration_ms"], int)
        self.assertIn(("POST", "/_matrix/app/v1/ping", b"Bearer " + HS_TOKEN.encode(), {"transaction_id": "t1"}),
                      self.fake.requests)
        r = await self.request("POST", "/_matrix/client/v1/appservice/other/ping", {}, access_token=AS_TOKEN)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        _, token = await self.user("alice")
        r = await self.request("POST", "/_matrix/client/v1/appservice/irc/ping", {}, access_token=token)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.fake.answer = lambda m, p, b: (401, {"errcode": "M_FORBIDDEN"})
        r = await self.request("POST", "/_matrix/client/v1/appservice/irc/ping", {}, access_token=AS_TOKEN)
        self.assertMatrixError(r, 502, "M_BAD_STATUS")
        self.assertEqual(r.json["status"], 401)

    async def test_ping_without_url(self) -> None:
        await self.hs.appservices.register(
            "id: nourl\nurl: null\nas_token: a2\nhs_token: h2\nsender_localpart: nourl\nnamespaces: {}\n"
        )
        r = await self.request("POST", "/_matrix/client/v1/appservice/nourl/ping", {}, access_token="a2")
        self.assertMatrixError(r, 400, "M_URL_NOT_SET")

    async def test_thirdparty(self) -> None:
        def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
            if path == "/_matrix/app/v1/thirdparty/protocol/irc":
                return 200, {
                    "user_fields": ["network", "nickname"], "location_fields": ["network", "channel"],
                    "icon": "mxc://example.org/aBcDeFgH", "field_types": {},
                    "instances": [{"desc": "Freenode", "network_id": "freenode", "fields": {}}],
                }
            if path == "/_matrix/app/v1/thirdparty/location/irc":
                return 200, [{"alias": "#freenode_#matrix:test", "protocol": "irc", "fields": {}}]
            if path == "/_matrix/app/v1/thirdparty/user":
                return 200, [{"userid": "@_irc_x:test", "protocol": "irc", "fields": {}}]
            return 404, {"errcode": "M_NOT_FOUND"}

        self.fake.answer = answer
        _, token = await self.user("alice")
        r = await self.request("GET", V3 + "/thirdparty/protocols", access_token=token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["irc"]["instances"][0]["instance_id"], "irc|freenode")
        r = await self.request("GET", V3 + "/thirdparty/protocol/irc", access_token=token)
        self.assertEqual(r.json["user_fields"], ["network", "nickname"])
        r = await self.request("GET", V3 + "/thirdparty/protocol/xmpp", access_token=token)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", V3 + "/thirdparty/location/irc?channel=%23matrix", access_token=token)
        self.assertEqual(r.json[0]["alias"], "#freenode_#matrix:test")
        self.assertIn("channel=%23matrix", [p for _, p, _, _ in self.fake.requests][-1])
        r = await self.request("GET", V3 + "/thirdparty/user?userid=x", access_token=token)
        self.assertEqual(r.json[0]["userid"], "@_irc_x:test")
        r = await self.request("GET", V3 + "/thirdparty/protocols")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")


class DenylistTests(RoomsTestCase):
    """
    ip_range_denylist (whose default covers loopback) does not apply to
    appservices: their URL is the admin's, and bridges listen on loopback.
    It still applies to everything else.
    """

    async def test_loopback_appservice_reached(self) -> None:
        self.assertIn("127.0.0.0/8", self.hs.config.ip_range_denylist)
        fake = FakeAppservice()
        fake.listen(self)
        await self.hs.appservices.register(registration(fake.url))
        r = await self.request("POST", "/_matrix/client/v1/appservice/irc/ping", {}, access_token=AS_TOKEN)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(len(fake.requests), 1)
        # The shared client still refuses loopback.
        self.assertTrue(self.hs.http_client.denylist.denies("127.0.0.1"))
        self.assertFalse(self.hs.appservice_http_client.denylist.denies("127.0.0.1"))
