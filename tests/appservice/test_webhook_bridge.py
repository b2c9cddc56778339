"""
The in-process bridge interface and the example incoming-webhook bridge,
end to end: invited, it joins; asked, it makes a hook; a POST to the hook
appears in the room from a bridge user (conduit_tw/bridges/webhook.py).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from conduit_tw.appservice.bridge import IAppserviceBridge, IAppserviceBridgeFactory
from conduit_tw.appservice.bridge_host import BridgeConfigError, available_bridges
from conduit_tw.homeserver import HomeServer
from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase, q
from tests.server import make_config


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll an async C{condition} until it returns something true."""
    waited = 0.0
    while True:
        result = await condition()
        if result:
            return result
        if waited > timeout:
            raise AssertionError("condition not met in time")
        await deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


class WebhookBridgeTests(RoomsTestCase):
    config_overrides = {**OPEN, "appservice_bridges": ["webhook"]}

    def test_plugin(self) -> None:
        factory = available_bridges()["webhook"]
        verifyObject(IAppserviceBridgeFactory, factory)
        verifyObject(IAppserviceBridge, factory.build())

    async def messages(self, token: str, room: str) -> list[dict[str, Any]]:
        r = await self.request("GET", f"{V3}/rooms/{q(room)}/messages?dir=b&limit=50", access_token=token)
        self.assertEqual(r.code, 200, r.body)
        return [e for e in reversed(r.json["chunk"]) if e["type"] == "m.room.message"]

    async def test_end_to_end(self) -> None:
        self.assertEqual([r.id for r in self.hs.appservices.list()], ["bridge-webhook"])
        _, token = await self.user("alice")
        room = await self.create_room(token, preset="private_chat")
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/invite", {"user_id": "@webhook:test"}, access_token=token
        )
        self.assertEqual(r.code, 200, r.body)

        async def bot_joined() -> bool:
            return await self.hs.event_store.membership("@webhook:test", room) == "join"

        await eventually(bot_joined)
        await self.send_ok(token, room, {"msgtype": "m.text", "body": "!webhook new ci"})

        async def hook_path() -> str | None:
            for e in await self.messages(token, room):
                body = e["content"]["body"]
                if e["sender"] == "@webhook:test" and "/_conduit/bridges/webhook/hooks/" in body:
                    return body.split(" to ")[-1]
            return None

        path = await eventually(hook_path)
        r = await self.request("POST", path, {"text": "build passed", "html": "<b>build passed</b>"})
        self.assertEqual(r.code, 200, r.body)
        event_id = r.json["event_id"]
        found = [e for e in await self.messages(token, room) if e["event_id"] == event_id]
        self.assertEqual(found[0]["sender"], "@webhook_ci:test")
        self.assertEqual(found[0]["content"]["formatted_body"], "<b>build passed</b>")
        r = await self.request("POST", path, {"text": "again", "username": "Deploy Bot"})
        self.assertEqual(r.code, 200, r.body)
        senders = [e["sender"] for e in await self.messages(token, room)]
        self.assertIn("@webhook_deploybot:test", senders)
        # Errors are Matrix errors.
        r = await self.request("POST", path, {"text": 5})
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", "/_conduit/bridges/webhook/hooks/nope", {"text": "x"})
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # The namespace is the bridge's: nobody else may register in it.
        r = await self.request(
            "POST", V3 + "/register",
            {"auth": {"type": "m.login.dummy"}, "username": "webhook_fake", "password": "pw"},
        )
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        # Deleting the hook ends it.
        token_part = path.rsplit("/", 1)[1]
        await self.send_ok(token, room, {"msgtype": "m.text", "body": f"!webhook delete {token_part}"})

        async def gone() -> bool:
            r = await self.request("POST", path, {"text": "late"})
            return r.code == 404

        await eventually(gone)

    async def test_registration_kept_across_restarts(self) -> None:
        reg = self.hs.appservices.get("bridge-webhook")
        await self.hs.close()
        hs = HomeServer(self.config, reactor)
        self.addCleanup(hs.close)
        await hs.setup()
        self.assertEqual(hs.appservices.get("bridge-webhook").as_token, reg.as_token)


class UnknownBridgeTests(RoomsTestCase):
    async def test_unknown_bridge_stops_start(self) -> None:
        config = make_config(database_path=self.mktemp(), appservice_bridges=["nope"])
        import os

        os.makedirs(config.database_path)
        hs = HomeServer(config, reactor)
        self.addCleanup(hs.close)
        with self.assertRaises(BridgeConfigError) as cm:
            await hs.setup()
        self.assertIn("'nope'", str(cm.exception))
        self.assertIn("webhook", str(cm.exception))
