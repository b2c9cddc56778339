"""
Appservice registrations through the handler API, identity assertion,
appservice registration and login, exclusive namespaces and rate limits
(application-service-api "Registration", "Client-Server API Extensions").
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor

from conduit_tw.appservice.registration import RegistrationError
from conduit_tw.handlers.appservices import AppserviceConfigError
from conduit_tw.homeserver import HomeServer
from tests.api.rooms import V3, RoomsTestCase, q

AS_TOKEN = "as-token-irc"
HS_TOKEN = "hs-token-irc"


def registration(
    reg_id: str = "irc", as_token: str = AS_TOKEN, hs_token: str = HS_TOKEN,
    sender: str = "_irc_bot", prefix: str = "_irc_", exclusive: bool = True, extra: str = "",
) -> str:
    """A registration YAML document."""
    return f"""
id: {reg_id}
url: null
as_token: {as_token}
hs_token: {hs_token}
sender_localpart: {sender}
namespaces:
  users:
    - exclusive: {str(exclusive).lower()}
      regex: "@{prefix}.*:test"
  aliases:
    - exclusive: {str(exclusive).lower()}
      regex: "#{prefix}.*:test"
{extra}"""


class AppserviceAuthTests(RoomsTestCase):
    async def _start(self) -> None:
        await super()._start()
        self.reg = await self.hs.appservices.register(registration())

    async def as_register(self, username: str, token: str = AS_TOKEN, **extra: Any):
        body = {"type": "m.login.application_service", "username": username, **extra}
        return await self.request("POST", V3 + "/register", body, access_token=token)

    async def whoami(self, query: str = "", token: str = AS_TOKEN):
        return await self.request("GET", V3 + "/account/whoami" + query, access_token=token)

    async def test_sender(self) -> None:
        r = await self.whoami()
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@_irc_bot:test")
        self.assertEqual(self.hs.appservices.list(), [self.reg])
        self.assertEqual(self.hs.appservices.show("irc"), registration())

    async def test_register_and_masquerade(self) -> None:
        r = await self.whoami("?user_id=" + q("@_irc_alice:test"))
        self.assertMatrixError(r, 403, "M_FORBIDDEN")  # not registered yet
        r = await self.as_register("_irc_alice", inhibit_login=True)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"user_id": "@_irc_alice:test", "home_server": "test"})
        r = await self.whoami("?user_id=" + q("@_irc_alice:test"))
        self.assertEqual((r.code, r.json["user_id"]), (200, "@_irc_alice:test"), r.body)
        # Outside its namespace: refused, even for existing users.
        await self.user("bob")
        r = await self.whoami("?user_id=" + q("@bob:test"))
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_register_outside_namespace(self) -> None:
        r = await self.as_register("bob")
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        r = await self.as_register("_irc_x", token="wrong")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        r = await self.request(
            "POST", V3 + "/register", {"type": "m.login.application_service", "username": "_irc_x"}
        )
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_register_logs_in_and_device_assertion(self) -> None:
        r = await self.as_register("_irc_carol", device_id="DEV1")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["device_id"], "DEV1")
        user = q("@_irc_carol:test")
        r = await self.whoami(f"?user_id={user}&device_id=DEV1")
        self.assertEqual((r.code, r.json.get("device_id")), (200, "DEV1"), r.body)
        r = await self.whoami(f"?user_id={user}&device_id=NOPE")
        self.assertMatrixError(r, 400, "M_UNKNOWN_DEVICE")

    async def test_login(self) -> None:
        await self.as_register("_irc_dan", inhibit_login=True)
        body = {
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": "_irc_dan"},
        }
        r = await self.request("POST", V3 + "/login", body, access_token=AS_TOKEN)
        self.assertEqual(r.code, 200, r.body)
        r2 = await self.request("GET", V3 + "/account/whoami", access_token=r.json["access_token"])
        self.assertEqual(r2.json["user_id"], "@_irc_dan:test")
        await self.user("erin")
        body["identifier"]["user"] = "erin"
        r = await self.request("POST", V3 + "/login", body, access_token=AS_TOKEN)
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        r = await self.request("POST", V3 + "/login", body)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        flows = (await self.request("GET", V3 + "/login")).json["flows"]
        self.assertIn({"type": "m.login.application_service"}, flows)

    async def test_exclusive_user_refused_to_others(self) -> None:
        r = await self.request(
            "POST", V3 + "/register",
            {"auth": {"type": "m.login.dummy"}, "username": "_irc_mallory", "password": "pw"},
        )
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        r = await self.request("GET", V3 + "/register/available?username=_irc_mallory")
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        # Non-exclusive namespaces stay open.
        await self.hs.appservices.register(
            registration("open", "as2", "hs2", "_open_bot", "_open_", exclusive=False)
        )
        await self.user("_open_frank")

    async def test_exclusive_alias(self) -> None:
        alice, token = await self.user("alice")
        room = await self.create_room(token)
        r = await self.request(
            "PUT", V3 + "/directory/room/" + q("#_irc_chan:test"), {"room_id": room}, access_token=token
        )
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        await self.create_room(token, expect=400, room_alias_name="_irc_new")
        r = await self.request(
            "PUT", V3 + "/directory/room/" + q("#other:test"), {"room_id": room}, access_token=token
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_validation(self) -> None:
        api = self.hs.appservices
        with self.assertRaises(RegistrationError) as cm:
            await api.register(registration(as_token="new", hs_token="new2", sender="x"))
        self.assertIn("already registered", str(cm.exception))
        with self.assertRaises(RegistrationError) as cm:
            await api.register(registration("other", as_token=AS_TOKEN, hs_token="n", sender="y"))
        self.assertIn("already used", str(cm.exception))
        with self.assertRaises(RegistrationError):
            await api.register(registration("other", "a3", HS_TOKEN, "z"))
        with self.assertRaises(KeyError):
            await api.unregister("nope")
        with self.assertRaises(KeyError):
            api.show("nope")

    async def test_unregister_takes_effect_and_registration_persists(self) -> None:
        await self.hs.appservices.register(registration("two", "as2", "hs2", "_two_bot", "_two_"))
        await self.hs.appservices.unregister("irc")
        r = await self.whoami()
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        await self.user("_irc_free")  # no longer exclusive
        # A new server on the same database knows "two" only.
        await self.hs.close()
        hs = HomeServer(self.config, reactor)
        self.addCleanup(hs.close)
        await hs.setup()
        self.assertEqual([r.id for r in hs.appservices.list()], ["two"])

    async def test_rate_limited(self) -> None:
        api = self.hs.appservices
        self.assertTrue(api.is_rate_limited("irc"))
        await api.register(
            registration("free", "as3", "hs3", "_free_bot", "_free_", extra="rate_limited: false")
        )
        self.assertFalse(api.is_rate_limited("free"))
        self.hs.ratelimit.message.per_second = 0.001
        self.hs.ratelimit.message.burst = 1
        from conduit_tw.handlers.auth import Requester
        from conduit_tw.errors import MatrixError

        free = Requester("@_free_bot:test", None, appservice_id="free")
        for _ in range(3):
            await self.hs.ratelimit.check_requester(self.hs.ratelimit.message, free)
        limited = Requester("@_irc_bot:test", None, appservice_id="irc")
        await self.hs.ratelimit.check_requester(self.hs.ratelimit.message, limited)
        with self.assertRaises(MatrixError):
            await self.hs.ratelimit.check_requester(self.hs.ratelimit.message, limited)


class ConfigFileTests(RoomsTestCase):
    """C{app_service_config_files}."""

    async def _start(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "irc.yaml")
        with open(self.path, "w") as f:
            f.write(registration())
        self.config_overrides = {**self.config_overrides, "app_service_config_files": [self.path]}
        await super()._start()

    async def test_loaded(self) -> None:
        r = await self.request("GET", V3 + "/account/whoami", access_token=AS_TOKEN)
        self.assertEqual(r.json["user_id"], "@_irc_bot:test")
        with self.assertRaises(RegistrationError) as cm:
            await self.hs.appservices.unregister("irc")
        self.assertIn("app_service_config_files", str(cm.exception))

    async def test_bad_file_stops_start(self) -> None:
        with open(self.path, "w") as f:
            f.write(registration().replace("@_irc_.*", "@(bad"))
        await self.hs.close()
        hs = HomeServer(self.config, reactor)
        self.addCleanup(hs.close)
        with self.assertRaises(AppserviceConfigError) as cm:
            await hs.setup()
        message = str(cm.exception)
        self.assertIn(self.path, message)
        self.assertIn("namespaces.users[0].regex", message)
        self.assertNotIn("\n", message)


class NetworkDirectoryTests(RoomsTestCase):
    """C{PUT /directory/list/appservice/{networkId}/{roomId}} and C{/publicRooms} per network."""

    async def test_network_directory(self) -> None:
        await self.hs.appservices.register(registration(extra="protocols: [irc]\n"))
        _, token = await self.user("alice")
        main = await self.create_room(token, visibility="public", name="main")
        bridged = await self.create_room(token, preset="public_chat", name="bridged")
        path = f"{V3}/directory/list/appservice/freenode/{q(bridged)}"
        r = await self.request("PUT", path, {"visibility": "public"}, access_token=token)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("PUT", path, {"visibility": "maybe"}, access_token=AS_TOKEN)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("PUT", path, {"visibility": "public"}, access_token=AS_TOKEN)
        self.assertEqual((r.code, r.json), (200, {}), r.body)

        async def listed(**body: Any) -> list[str]:
            r = await self.request("POST", V3 + "/publicRooms", body, access_token=token)
            self.assertEqual(r.code, 200, r.body)
            return sorted(c["room_id"] for c in r.json["chunk"])

        self.assertEqual(await listed(), [main])
        self.assertEqual(await listed(third_party_instance_id="irc|freenode"), [bridged])
        self.assertEqual(await listed(third_party_instance_id="irc|other"), [])
        self.assertEqual(await listed(third_party_instance_id="nope"), [])
        self.assertEqual(await listed(include_all_networks=True), sorted([main, bridged]))
        r = await self.request("PUT", path, {"visibility": "private"}, access_token=AS_TOKEN)
        self.assertEqual(await listed(third_party_instance_id="irc|freenode"), [])
        # Unregistering takes the network's rooms with it.
        await self.request("PUT", path, {"visibility": "public"}, access_token=AS_TOKEN)
        await self.hs.appservices.unregister("irc")
        self.assertEqual(await listed(include_all_networks=True), [main])


class TransactionScopeTests(RoomsTestCase):
    """An appservice's transaction IDs: idempotent, scoped without storing its token."""

    async def test_txn_ids(self) -> None:
        await self.hs.appservices.register(registration())
        _, token = await self.user("alice")
        room = await self.create_room(token, preset="public_chat")
        r = await self.request("POST", f"{V3}/join/{q(room)}", {}, access_token=AS_TOKEN)
        self.assertEqual(r.code, 200, r.body)
        first = await self.send(AS_TOKEN, room, txn="same")
        again = await self.send(AS_TOKEN, room, txn="same")
        self.assertEqual(first.json["event_id"], again.json["event_id"])
        stored = await self.hs.event_store.get_event(first.json["event_id"])
        self.assertNotIn(AS_TOKEN, repr(stored.extras))


class RegistrationRateLimitTests(RoomsTestCase):
    """Appservices with rate_limited false register users without the per-address limit."""

    config_overrides = {**RoomsTestCase.config_overrides, "rc_registration_per_second": 0.001,
                        "rc_registration_burst_count": 1}

    async def test_unlimited(self) -> None:
        await self.hs.appservices.register(registration(extra="rate_limited: false\n"))
        for i in range(4):
            r = await self.request(
                "POST", V3 + "/register",
                {"type": "m.login.application_service", "username": f"_irc_{i}", "inhibit_login": True},
                access_token=AS_TOKEN,
            )
            self.assertEqual(r.code, 200, r.body)
