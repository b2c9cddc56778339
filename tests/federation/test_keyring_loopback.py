"""
The keyring between real servers over HTTP on loopback: direct fetches,
fetches through a notary, the notary endpoints, and the cache across a
restart.
"""

from __future__ import annotations

import json

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from conduit_tw.federation.keyring import KeyNotFound
from tests.federation.loopback import LoopbackTestCase

ORIGIN = "origin.test"
NOTARY = "notary.test"
ASKER = "asker.test"


def published_key(hs):
    """(key ID, VerifyKey) of a server's current signing key."""
    keys = hs.server_keys
    return keys.key_id, keys.signing_key.verify_key


def check_signed_by(testcase, response, running):
    """Assert C{response} carries a valid signature of that server (signedjson)."""
    keys = running.hs.server_keys
    verify_key = decode_verify_key_bytes(keys.key_id, bytes(keys.signing_key.verify_key))
    verify_signed_json(response, keys.server_name, verify_key)
    testcase.assertIn(keys.key_id, response["signatures"][keys.server_name])


class DirectFetchTests(LoopbackTestCase):
    """C{GET /_matrix/key/v2/server} of the origin itself."""

    async def test_fetch_from_the_server(self) -> None:
        origin = await self.start_server(ORIGIN)
        asker = await self.start_server(ASKER)
        key_id, verify_key = published_key(origin.hs)
        got = await asker.hs.keyring.get_verify_key(ORIGIN, key_id)
        self.assertEqual(bytes(got), bytes(verify_key))
        self.assertEqual(asker.federation.requests, [(ORIGIN, "GET", "/_matrix/key/v2/server")])
        # Cached: no second request.
        await asker.hs.keyring.get_verify_key(ORIGIN, key_id, asker.hs.clock_ms())
        self.assertEqual(len(asker.federation.requests), 1)

    async def test_verify_signed_json_from_the_server(self) -> None:
        origin = await self.start_server(ORIGIN)
        asker = await self.start_server(ASKER)
        r = await asker.federation.fetch_json(ORIGIN, "/_matrix/key/v2/server")
        await asker.hs.keyring.verify_json_for_server(ORIGIN, r, asker.hs.clock_ms())
        self.assertEqual(r["server_name"], origin.hs.server_name)

    async def test_unreachable_server(self) -> None:
        asker = await self.start_server(ASKER)
        with self.assertRaises(KeyNotFound):
            await asker.hs.keyring.get_verify_key("nowhere.test", "ed25519:a")

    async def test_cache_survives_restart(self) -> None:
        origin = await self.start_server(ORIGIN)
        asker = await self.start_server(ASKER)
        key_id, verify_key = published_key(origin.hs)
        await asker.hs.keyring.get_verify_key(ORIGIN, key_id)
        await self.stop_server(ORIGIN)
        await self.stop_server(ASKER)
        asker = await self.start_server(ASKER, path=asker.path)
        got = await asker.hs.keyring.get_verify_key(ORIGIN, key_id, asker.hs.clock_ms())
        self.assertEqual(bytes(got), bytes(verify_key))
        self.assertEqual(asker.federation.requests, [])

    async def test_rotated_key_still_verifies_old_signatures(self) -> None:
        """After the origin rotates, its old key is fetched from old_verify_keys."""
        origin = await self.start_server(ORIGIN)
        asker = await self.start_server(ASKER)
        old_id, old_key = published_key(origin.hs)
        signed = origin.hs.server_keys.response()  # signed with the old key
        new_id = await origin.hs.server_keys.rotate()
        got = await asker.hs.keyring.get_timed_key(ORIGIN, old_id)
        self.assertEqual(bytes(got.verify_key), bytes(old_key))
        self.assertLessEqual(got.valid_until_ts, asker.hs.clock_ms())
        await asker.hs.keyring.verify_json_for_server(ORIGIN, signed)  # v1-4 style: any age
        with self.assertRaises(KeyNotFound):
            await asker.hs.keyring.verify_json_for_server(
                ORIGIN, signed, asker.hs.clock_ms() + 1000
            )
        self.assertTrue(await asker.hs.keyring.get_verify_key(ORIGIN, new_id))


class NotaryTests(LoopbackTestCase):
    """Keys through a notary (C{trusted_servers}), and the notary endpoints."""

    async def test_fetch_through_notary(self) -> None:
        origin = await self.start_server(ORIGIN)
        notary = await self.start_server(NOTARY)
        asker = await self.start_server(
            ASKER, trusted_servers=[NOTARY], query_trusted_key_servers_first=True
        )
        key_id, verify_key = published_key(origin.hs)
        got = await asker.hs.keyring.get_verify_key(ORIGIN, key_id)
        self.assertEqual(bytes(got), bytes(verify_key))
        # The asker asked the notary (and the notary itself for its key),
        # never the origin; the notary asked the origin.
        destinations = {d for d, _, _ in asker.federation.requests}
        self.assertEqual(destinations, {NOTARY})
        self.assertIn((NOTARY, "POST", "/_matrix/key/v2/query"), asker.federation.requests)
        self.assertEqual(notary.federation.requests, [(ORIGIN, "GET", "/_matrix/key/v2/server")])

    async def test_notary_not_first(self) -> None:
        origin = await self.start_server(ORIGIN)
        await self.start_server(NOTARY)
        asker = await self.start_server(
            ASKER, trusted_servers=[NOTARY], query_trusted_key_servers_first=False
        )
        key_id, _ = published_key(origin.hs)
        await asker.hs.keyring.get_verify_key(ORIGIN, key_id)
        self.assertEqual(asker.federation.requests, [(ORIGIN, "GET", "/_matrix/key/v2/server")])

    async def test_notary_unreachable_falls_back_to_origin(self) -> None:
        origin = await self.start_server(ORIGIN)
        asker = await self.start_server(ASKER, trusted_servers=[NOTARY])
        key_id, _ = published_key(origin.hs)
        await asker.hs.keyring.get_verify_key(ORIGIN, key_id)
        self.assertEqual(
            [d for d, _, _ in asker.federation.requests], [NOTARY, ORIGIN]
        )

    async def test_get_query_signed_by_origin_and_notary(self) -> None:
        origin = await self.start_server(ORIGIN)
        notary = await self.start_server(NOTARY)
        asker = await self.start_server(ASKER)
        now = asker.hs.clock_ms()
        answer = await asker.federation.fetch_json(
            NOTARY, f"/_matrix/key/v2/query/{ORIGIN}?minimum_valid_until_ts={now}"
        )
        [response] = answer["server_keys"]
        self.assertEqual(response["server_name"], ORIGIN)
        self.assertEqual(set(response["signatures"]), {ORIGIN, NOTARY})
        check_signed_by(self, response, origin)
        check_signed_by(self, response, notary)
        self.assertGreaterEqual(response["valid_until_ts"], now)

    async def test_post_query_several_servers(self) -> None:
        origin = await self.start_server(ORIGIN)
        notary = await self.start_server(NOTARY)
        asker = await self.start_server(ASKER)
        key_id, _ = published_key(origin.hs)
        body = {"server_keys": {
            ORIGIN: {key_id: {"minimum_valid_until_ts": asker.hs.clock_ms()}},
            NOTARY: {},
            "gone.test": {},
        }}
        answer = await asker.federation.fetch_json(
            NOTARY, "/_matrix/key/v2/query", method="POST", body=body
        )
        by_server = {r["server_name"]: r for r in answer["server_keys"]}
        self.assertEqual(set(by_server), {ORIGIN, NOTARY})  # gone.test: left out
        check_signed_by(self, by_server[ORIGIN], origin)
        check_signed_by(self, by_server[ORIGIN], notary)
        check_signed_by(self, by_server[NOTARY], notary)  # its own, answered directly

    async def test_notary_serves_cached_response_when_origin_is_down(self) -> None:
        origin = await self.start_server(ORIGIN)
        notary = await self.start_server(NOTARY)
        first = await notary.hs.keyring.query({ORIGIN: {}})
        await self.stop_server(ORIGIN)
        # Past half of the validity: the notary tries again, fails, and
        # answers what it has.
        clock = [notary.hs.clock_ms() + 13 * 3600 * 1000]
        notary.hs.keyring.clock_ms = lambda: clock[0]
        again = await notary.hs.keyring.query({ORIGIN: {}})
        self.assertEqual(len(notary.federation.requests), 2)
        self.assertEqual(
            json.dumps(again[0]["verify_keys"]), json.dumps(first[0]["verify_keys"])
        )
        check_signed_by(self, again[0], origin)
        check_signed_by(self, again[0], notary)
