"""
The real keyring between real servers over TLS on loopback (server names
with explicit ports, certificate verification off, as test federations
run): X-Matrix requests authenticated with keys the keyring fetched, and
keys fetched through a notary.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from conduit_tw.api.federation._paths import federation_route
from tests.integration.federation import start_homeserver


class KeyRingOverTLSTests(unittest.TestCase):
    """Each test starts the servers it needs (L{start_homeserver})."""

    async def test_authenticated_requests_both_ways(self) -> None:
        a = await start_homeserver(self)
        b = await start_homeserver(self)
        for caller, callee in [(a, b), (b, a)]:
            async def whoami(request: Any, origin: str) -> Any:
                return {"origin": origin}

            federation_route(
                callee.router, callee.federation_auth, "GET", "/_matrix/federation/v1/_test/whoami",
                whoami,
            )
            result = await caller.federation_client.get_json(
                callee.server_name, "/_matrix/federation/v1/_test/whoami"
            )
            self.assertEqual(result, {"origin": caller.server_name})
            stored = await callee.server_key_store.get_keys(caller.server_name)
            self.assertEqual(
                stored[caller.server_keys.key_id].key, caller.server_keys.verify_key_base64
            )

    async def test_keys_through_a_notary(self) -> None:
        origin = await start_homeserver(self)
        notary = await start_homeserver(self)
        asker = await start_homeserver(self)
        asker.keyring.trusted_servers = [notary.server_name]
        key_id = origin.server_keys.key_id
        got = await asker.keyring.get_verify_key(origin.server_name, key_id, asker.clock_ms())
        self.assertEqual(bytes(got), bytes(origin.server_keys.signing_key.verify_key))
        # The notary fetched and kept the origin's response; the asker kept
        # it with the origin's signature only.
        self.assertIsNotNone(await notary.server_key_store.get_response(origin.server_name))
        kept = await asker.server_key_store.get_response(origin.server_name)
        self.assertEqual(list(kept.response["signatures"]), [origin.server_name])
        # The asker knows the notary's key (to check its signature) too.
        self.assertIn(
            notary.server_keys.key_id,
            await asker.server_key_store.get_keys(notary.server_name),
        )
