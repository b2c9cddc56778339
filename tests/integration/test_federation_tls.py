"""
Two real servers on loopback talking federation over TLS: server names
with explicit ports (C{localhost:<port>}), the [global.tls] listener
serving the federation API, certificate verification off
(C{allow_invalid_tls_certificates}) and C{ip_range_denylist = []}, as
test federations run.
"""

from __future__ import annotations

from typing import Any

from signedjson.key import generate_signing_key
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.events.signing import verify_json
from conduit_tw.federation.client import FederationClient
from conduit_tw.federation.errors import RemoteError
from tests.integration.federation import start_homeserver


class TwoServersTests(unittest.TestCase):
    async def _start_both(self) -> None:
        self.a = await start_homeserver(self)
        self.b = await start_homeserver(self)

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start_both())

    async def test_version_over_tls(self) -> None:
        result = await self.a.federation_client.get_json(
            self.b.server_name, "/_matrix/federation/v1/version"
        )
        self.assertEqual(result["server"]["name"], "conduit-tw")

    async def test_server_keys(self) -> None:
        result = await self.a.federation_client.get_json(self.b.server_name, "/_matrix/key/v2/server")
        self.assertEqual(result["server_name"], self.b.server_name)
        key_id = self.b.server_keys.key_id
        self.assertEqual(result["verify_keys"][key_id]["key"], self.b.server_keys.verify_key_base64)
        verify_json(result, self.b.server_name, {key_id: self.b.server_keys.signing_key.verify_key})

    async def test_authenticated_request_both_ways(self) -> None:
        """Each side verifies the other's X-Matrix signature with a key fetched over TLS."""
        for caller, callee in [(self.a, self.b), (self.b, self.a)]:
            async def whoami(request: Any, origin: str) -> Any:
                return {"origin": origin, "body": request.json_body()}

            federation_route(
                callee.router, callee.federation_auth, "PUT", "/_matrix/federation/v1/_test/whoami",
                whoami,
            )
            result = await caller.federation_client.put_json(
                callee.server_name, "/_matrix/federation/v1/_test/whoami", {"hello": "world"}
            )
            self.assertEqual(result, {"origin": caller.server_name, "body": {"hello": "world"}})
            # The callee's keyring fetched the caller's key over TLS and kept it.
            stored = await callee.server_key_store.get_keys(caller.server_name)
            self.assertIn(caller.server_keys.key_id, stored)

    async def test_forged_signature_refused(self) -> None:

        async def whoami(request: Any, origin: str) -> Any:
            return {"origin": origin}

        federation_route(
            self.b.router, self.b.federation_auth, "GET", "/_matrix/federation/v1/_test/whoami",
            whoami,
        )

        class Forged:
            signing_key = generate_signing_key(self.a.server_keys.key_id.split(":", 1)[1])
            key_id = self.a.server_keys.key_id

        forger = FederationClient(reactor, self.a.config, self.a.server_name, lambda: Forged)
        self.addCleanup(forger.close)
        with self.assertRaises(RemoteError) as e:
            await forger.get_json(self.b.server_name, "/_matrix/federation/v1/_test/whoami")
        self.assertEqual((e.exception.code, e.exception.errcode), (401, "M_UNAUTHORIZED"))

    async def test_transaction_over_tls(self) -> None:
        """A's sender delivers a transaction to B's /send: signed, verified, answered 200."""
        got = []

        async def record(origin: str, content: dict[str, Any]) -> None:
            got.append((origin, content))

        self.b.transactions.edu_handlers["org.example.test"] = record
        sender = self.a.federation_sender
        await sender.send_edu([self.b.server_name], "org.example.test", {"n": 1})
        await sender.wait_idle()
        self.assertEqual(got, [(self.a.server_name, {"n": 1})])
        self.assertFalse(sender.backing_off(self.b.server_name))
