"""
Two real servers on loopback talking federation over TLS: server names
with explicit ports (C{localhost:<port>}), the [global.tls] listener
serving the federation API, certificate verification off
(C{allow_invalid_tls_certificates}) and C{ip_range_denylist = []}, as
test federations run.
"""

from __future__ import annotations

import os
from typing import Any

from nacl.signing import VerifyKey
from signedjson.key import generate_signing_key
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.events.hashes import decode_base64
from conduit_tw.events.signing import verify_json
from conduit_tw.federation.client import FederationClient
from conduit_tw.federation.errors import KeyNotFound, RemoteError
from conduit_tw.service import ConduitService, make_service
from tests.integration.process import free_port
from tests.integration.test_twistd import _self_signed
from tests.server import make_config


class HttpKeyRing:
    """
    A keyring stand-in for these tests: fetches the origin's keys directly
    (GET /_matrix/key/v2/server over federation) and checks their
    self-signature. The real keyring is conduit_tw/federation/keyring.py.
    """

    def __init__(self, client: FederationClient) -> None:
        self.client = client
        self.fetched: list[str] = []

    async def get_verify_key(self, server_name: str, key_id: str, min_valid_until_ts: int = 0) -> VerifyKey:
        self.fetched.append(server_name)
        response = await self.client.get_json(server_name, "/_matrix/key/v2/server")
        keys = {
            kid: VerifyKey(decode_base64(entry["key"]))
            for kid, entry in response["verify_keys"].items()
        }
        verify_json(response, server_name, keys)
        if response["server_name"] != server_name or key_id not in keys:
            raise KeyNotFound(server_name, key_id)
        if response["valid_until_ts"] < min_valid_until_ts:
            raise KeyNotFound(server_name, key_id, "expired")
        return keys[key_id]


async def start_tls_server(case: unittest.TestCase, **extra: Any) -> ConduitService:
    """
    Start a server called C{localhost:<port>} whose TLS listener serves
    every API on a free loopback port, as test federations run (stopped
    at the test's cleanup); C{extra} config values are added.
    """
    workdir = os.path.abspath(case.mktemp())
    os.makedirs(workdir)
    cert, key = _self_signed(workdir)
    port = free_port()
    config = make_config(
        server_name=f"localhost:{port}",
        database_path=os.path.join(workdir, "data"),
        address=["127.0.0.1"],
        port=port,
        tls={"certs": cert, "key": key},
        ip_range_denylist=[],
        allow_invalid_tls_certificates=True,
        trusted_servers=[],
        **extra,
    )
    service = make_service(config, reactor)
    service.startService()
    case.addCleanup(service.stopService)
    await service.ready
    return service


class TwoServersTests(unittest.TestCase):
    async def start(self) -> ConduitService:
        return await start_tls_server(self)

    async def _start_both(self) -> None:
        self.a = (await self.start()).homeserver
        self.b = (await self.start()).homeserver

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
            keyring = HttpKeyRing(callee.federation_client)
            callee.federation_auth.keyring = keyring

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
            self.assertEqual(keyring.fetched, [caller.server_name])

    async def test_forged_signature_refused(self) -> None:
        self.b.federation_auth.keyring = HttpKeyRing(self.b.federation_client)

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
