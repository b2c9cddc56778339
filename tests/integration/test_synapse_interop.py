"""
Interop with a real Synapse on loopback (tests/integration/synapse.py):
keys, X-Matrix signatures and TLS both ways. Our server asks Synapse
(server keys, version, a profile and an alias of a Synapse user through
our client API: a signed request Synapse accepts), and Synapse asks us
(its client API resolves our users' profiles and our aliases: Synapse
signs a federation query, our inbound authentication fetches Synapse's
key over TLS and verifies it).

One Synapse per test (about 20 s to start): each test covers one
direction.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nacl.signing import VerifyKey
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from conduit_tw.events.hashes import decode_base64
from conduit_tw.events.signing import verify_json
from tests.integration.federation import base_url, client_call, register, start_homeserver
from tests.integration.synapse import SynapseProcess, start_synapse

V3 = "/_matrix/client/v3"


def q(s: str) -> str:
    return quote(s, safe="")


class SynapseInteropTests(unittest.TestCase):
    #: Synapse's first start creates its database schema.
    timeout = 300

    async def _start(self) -> None:
        self.synapse: SynapseProcess = await deferToThread(start_synapse, self)
        self.hs = await start_homeserver(self)
        self.alice = await deferToThread(self.synapse.register, "alice")

    async def synapse_api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await client_call(self.synapse.base_url, method, path, body, self.alice["access_token"])

    async def ours(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return await client_call(base_url(self.hs), method, path, body, token)

    async def test_we_ask_synapse(self) -> None:
        await self._start()
        client = self.hs.federation_client
        name = self.synapse.server_name
        version = await client.get_json(name, "/_matrix/federation/v1/version")
        self.assertEqual(version["server"]["name"], "Synapse")
        keys = await client.get_json(name, "/_matrix/key/v2/server")
        self.assertEqual(keys["server_name"], name)
        verify_json(keys, name, {
            key_id: VerifyKey(decode_base64(entry["key"]))
            for key_id, entry in keys["verify_keys"].items()
        })
        # Signed requests Synapse accepts: our client endpoints ask it.
        alice = self.alice["user_id"]
        code, body = await self.synapse_api("PUT", f"{V3}/profile/{q(alice)}/displayname", {"displayname": "Alice S"})
        self.assertEqual(code, 200, body)
        code, body = await self.ours("GET", f"{V3}/profile/{q(alice)}")
        self.assertEqual((code, body.get("displayname")), (200, "Alice S"), body)
        code, body = await self.ours("GET", f"{V3}/profile/{q(alice)}/displayname")
        self.assertEqual((code, body), (200, {"displayname": "Alice S"}))
        code, body = await self.ours("GET", f"{V3}/profile/{q('@nobody:' + name)}")
        self.assertEqual((code, body.get("errcode")), (404, "M_NOT_FOUND"), body)
        code, body = await self.synapse_api(
            "POST", f"{V3}/createRoom", {"room_alias_name": "synroom", "visibility": "public", "name": "Syn"}
        )
        self.assertEqual(code, 200, body)
        room_id = body["room_id"]
        code, body = await self.ours("GET", f"{V3}/directory/room/{q('#synroom:' + name)}")
        self.assertEqual((code, body.get("room_id")), (200, room_id), body)
        self.assertIn(name, body["servers"])
        code, body = await self.ours("GET", f"{V3}/directory/room/{q('#nope:' + name)}")
        self.assertEqual((code, body.get("errcode")), (404, "M_NOT_FOUND"), body)
        _, token = await register(self.hs, "bob")
        code, body = await self.ours("GET", f"{V3}/publicRooms?server={q(name)}", token=token)
        self.assertEqual(code, 200, body)
        self.assertEqual([r["room_id"] for r in body["chunk"]], [room_id])
        code, body = await self.ours(
            "POST", f"{V3}/publicRooms?server={q(name)}", {"filter": {"generic_search_term": "zzz"}}, token
        )
        self.assertEqual((code, body["chunk"]), (200, []), body)

    async def test_synapse_asks_us(self) -> None:
        await self._start()
        bob, token = await register(self.hs, "bob")
        code, body = await self.ours("PUT", f"{V3}/profile/{q(bob)}/displayname", {"displayname": "Bob C"}, token)
        self.assertEqual(code, 200, body)
        # Synapse signs a query/profile to us; we fetch its key over TLS.
        code, body = await self.synapse_api("GET", f"{V3}/profile/{q(bob)}")
        self.assertEqual((code, body.get("displayname")), (200, "Bob C"), body)
        # Our keyring fetched and stored Synapse's key to check that request.
        self.assertTrue(await self.hs.server_key_store.get_keys(self.synapse.server_name))
        code, body = await self.synapse_api("GET", f"{V3}/profile/{q('@nobody:' + self.hs.server_name)}")
        self.assertEqual((code, body.get("errcode")), (404, "M_NOT_FOUND"), body)
        code, body = await self.ours("POST", f"{V3}/createRoom", {"room_alias_name": "ours"}, token)
        self.assertEqual(code, 200, body)
        room_id = body["room_id"]
        code, body = await self.synapse_api("GET", f"{V3}/directory/room/{q('#ours:' + self.hs.server_name)}")
        self.assertEqual((code, body.get("room_id")), (200, room_id), body)
        self.assertEqual(body["servers"], [self.hs.server_name])
        code, body = await self.synapse_api("GET", f"{V3}/directory/room/{q('#nope:' + self.hs.server_name)}")
        self.assertEqual((code, body.get("errcode")), (404, "M_NOT_FOUND"), body)
        # Our directory is not shared over federation by default.
        code, body = await self.synapse_api("GET", f"{V3}/publicRooms?server={q(self.hs.server_name)}")
        self.assertNotEqual(code, 200, body)
