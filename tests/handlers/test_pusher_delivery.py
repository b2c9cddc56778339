"""
Delivery to an HTTP push gateway (push-gateway-api): a real twisted.web
gateway on 127.0.0.1, real requests, no mocks.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from conduit_tw.handlers.push_rules import result_for
from tests.api.accounts import OPEN, AccountsTestCase


class Gateway(Resource):
    """Records every /notify body; answers from a script of (code, body)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.paths: list[bytes] = []
        self.script: list[tuple[int, dict[str, Any]]] = []

    def render_POST(self, request: Any) -> bytes:
        self.paths.append(request.path)
        self.received.append(json.loads(request.content.read()))
        code, body = self.script.pop(0) if self.script else (200, {"rejected": []})
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()


class GatewaySite(Site):
    """Counts accepted connections."""

    connections = 0
    timeOut = None

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class GatewayTestCase(AccountsTestCase):
    """A local gateway on 127.0.0.1 and a user to push to."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.gateway = Gateway()
        self.site = GatewaySite(self.gateway)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.hs.http_client.close)
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/_matrix/push/v1/notify"
        self.hs.pushers.backoff_initial_s = 0.01
        self.hs.pushers.max_attempts = 4
        # The first user is the admin, in the admin room: its pushes would
        # be counted too, so alice is the second.
        await self.register("operator")
        self.tok = (await self.register("alice"))["access_token"]

    async def add_pusher(self, pushkey: str = "PK", **data: Any) -> None:
        r = await self.request("POST", "/_matrix/client/v3/pushers/set", {
            "kind": "http", "app_id": "com.example.app", "pushkey": pushkey,
            "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
            "data": {"url": self.url, **data},
        }, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)

    def event(self) -> dict[str, Any]:
        return {
            "event_id": "$ev1", "room_id": "!r:test", "type": "m.room.message", "sender": "@bob:test",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "I'm floating"},
        }


class DeliveryTests(GatewayTestCase):
    """PusherHandler.deliver against a local gateway (127.0.0.1: not denied here)."""

    config_overrides = {**OPEN, "ip_range_denylist": []}

    async def test_full_format(self) -> None:
        await self.add_pusher(custom="x")
        actions = ["notify", {"set_tweak": "sound", "value": "bing"}, {"set_tweak": "highlight", "value": False}]
        await self.hs.pushers.deliver(
            "@alice:test", self.event(), actions, {"unread": 2, "missed_calls": 0},
            sender_display_name="Major Tom", room_name="Mission Control",
        )
        self.assertEqual(self.gateway.paths, [b"/_matrix/push/v1/notify"])
        [body] = self.gateway.received
        n = body["notification"]
        device = n.pop("devices")
        self.assertEqual(n, {
            "event_id": "$ev1", "room_id": "!r:test", "type": "m.room.message", "sender": "@bob:test",
            "sender_display_name": "Major Tom", "room_name": "Mission Control", "prio": "high",
            "content": {"msgtype": "m.text", "body": "I'm floating"}, "counts": {"unread": 2},
        })
        self.assertEqual(len(device), 1)
        self.assertEqual(device[0]["app_id"], "com.example.app")
        self.assertEqual(device[0]["pushkey"], "PK")
        self.assertEqual(device[0]["data"], {"custom": "x"}, "url is not forwarded")
        self.assertEqual(device[0]["tweaks"], {"sound": "bing", "highlight": False})
        self.assertIsInstance(device[0]["pushkey_ts"], int)

    async def test_event_id_only_and_member_target(self) -> None:
        await self.add_pusher(format="event_id_only")
        await self.hs.pushers.deliver("@alice:test", self.event(), result_for("r", ["notify"]), {"unread": 1})
        n = self.gateway.received[0]["notification"]
        self.assertEqual(set(n), {"event_id", "room_id", "counts", "devices", "prio"})
        self.assertEqual(n["prio"], "low")
        self.assertEqual(n["devices"][0]["data"], {"format": "event_id_only"})

    async def test_user_is_target_and_counts_only(self) -> None:
        await self.add_pusher()
        invite = {"event_id": "$i", "room_id": "!r:test", "type": "m.room.member", "sender": "@bob:test",
                  "state_key": "@alice:test", "content": {"membership": "invite"}}
        await self.hs.pushers.deliver("@alice:test", invite, ["notify"], {})
        self.assertIs(self.gateway.received[0]["notification"]["user_is_target"], True)
        self.assertNotIn("counts", self.gateway.received[0]["notification"])
        await self.hs.pushers.deliver("@alice:test", None, [], {"unread": 0, "missed_calls": 3})
        n = self.gateway.received[1]["notification"]
        self.assertEqual(set(n), {"devices", "counts"})
        self.assertEqual(n["counts"], {"missed_calls": 3})

    async def test_no_notify_no_request(self) -> None:
        await self.add_pusher()
        await self.hs.pushers.deliver("@alice:test", self.event(), ["dont_notify"], {"unread": 1})
        await self.hs.pushers.deliver("@bob:test", self.event(), ["notify"], {"unread": 1})
        self.assertEqual(self.gateway.received, [])

    async def test_retries_with_backoff(self) -> None:
        await self.add_pusher()
        self.gateway.script = [(500, {}), (503, {}), (200, {"rejected": []})]
        await self.hs.pushers.deliver("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(len(self.gateway.received), 3)
        self.assertEqual({b["notification"]["event_id"] for b in self.gateway.received}, {"$ev1"})
        self.assertEqual(len(await self.hs.pushers.list_pushers("@alice:test")), 1)

    async def test_gives_up_and_no_retry_on_4xx(self) -> None:
        await self.add_pusher()
        self.gateway.script = [(500, {})] * 10
        await self.hs.pushers.deliver("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(len(self.gateway.received), 4, "max_attempts")
        self.gateway.received.clear()
        self.gateway.script = [(400, {})]
        await self.hs.pushers.deliver("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(len(self.gateway.received), 1)

    async def test_rejected_pushkey_removes_pusher(self) -> None:
        await self.add_pusher("GOOD")
        await self.add_pusher("BAD")
        self.gateway.script = [(200, {"rejected": ["BAD"]}), (200, {"rejected": ["BAD"]})]
        await self.hs.pushers.deliver("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(len(self.gateway.received), 2, "one request per pusher")
        pushers = await self.hs.pushers.list_pushers("@alice:test")
        self.assertEqual([p["pushkey"] for p in pushers], ["GOOD"])

    async def test_unreachable_gateway_and_dispatch(self) -> None:
        await self.add_pusher()
        await self.port.stopListening()
        self.hs.pushers.max_attempts = 2
        d = self.hs.pushers.dispatch("@alice:test", self.event(), ["notify"], {})
        await d  # gives up, logs, never raises
        self.assertEqual(self.gateway.received, [])
        self.assertEqual(len(await self.hs.pushers.list_pushers("@alice:test")), 1)

    async def test_redirect_not_followed_nor_retried(self) -> None:
        await self.add_pusher()
        self.gateway.script = [(307, {})]
        await self.hs.pushers.deliver("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(self.gateway.paths, [b"/_matrix/push/v1/notify"])


class DeniedGatewayTests(GatewayTestCase):
    """The default C{ip_range_denylist} covers 127.0.0.0/8: nothing is sent."""

    config_overrides = OPEN

    async def test_delivery_refused_before_connecting(self) -> None:
        await self.add_pusher()  # accepted: the URL is well-formed
        self.hs.pushers.max_attempts = 2
        await self.hs.pushers.dispatch("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(self.gateway.received, [])
        self.assertEqual(self.site.connections, 0, "never connected")
        self.assertEqual(len(await self.hs.pushers.list_pushers("@alice:test")), 1, "kept, like unreachable")


class HangingGateway(Gateway):
    """Never answers: the request stays in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Any] = []

    def render_POST(self, request: Any) -> Any:
        self.received.append(json.loads(request.content.read()))
        self.pending.append(request)
        return NOT_DONE_YET


class CloseStopsDeliveryTests(GatewayTestCase):
    """
    HomeServer.close() stops the deliveries in flight and waits for them
    before it closes the HTTP client and the database they use.
    """

    config_overrides = {**OPEN, "ip_range_denylist": []}

    async def until_received(self, gateway: Gateway, n: int) -> None:
        for _ in range(500):
            if len(gateway.received) >= n:
                return
            await deferLater(reactor, 0.01, lambda: None)
        self.fail("the gateway was never called")

    async def test_close_stops_a_delivery_waiting_to_retry(self) -> None:
        await self.add_pusher()
        self.hs.pushers.backoff_initial_s = 60.0
        self.gateway.script = [(500, {})] * 10
        d = self.hs.pushers.dispatch("@alice:test", self.event(), ["notify"], {})
        await self.until_received(self.gateway, 1)
        self.assertFalse(d.called, "waiting 60s before its retry")
        await self.hs.close()
        self.assertTrue(d.called)
        self.assertEqual(self.hs.pushers._in_flight, set())
        self.assertEqual(len(self.gateway.received), 1, "no retry after close")
        # After shutdown nothing new starts.
        await self.hs.pushers.dispatch("@alice:test", self.event(), ["notify"], {})
        self.assertEqual(len(self.gateway.received), 1)
        self.assertEqual(self.flushLoggedErrors(), [], "a cancelled delivery is not an error")

    async def test_close_cancels_a_request_in_flight(self) -> None:
        hanging = HangingGateway()
        self.site.resource = hanging
        await self.add_pusher()
        d = self.hs.pushers.dispatch("@alice:test", self.event(), ["notify"], {})
        await self.until_received(hanging, 1)
        self.assertFalse(d.called, "the gateway has not answered")
        await self.hs.close()
        self.assertTrue(d.called)
        self.assertEqual(self.hs.pushers._in_flight, set())
        self.assertEqual(len(hanging.received), 1, "not retried")
        self.assertEqual(self.flushLoggedErrors(), [])
