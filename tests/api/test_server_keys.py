"""
C{/_matrix/key/v2}: our key response before and after a rotation, and the
notary endpoints' input checks (fetching through them is in
tests/federation/test_keyring_loopback.py).
"""

from __future__ import annotations

from urllib.parse import quote

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from conduit_tw.events.hashes import decode_base64
from tests.api.rooms import RoomsTestCase

QUERY = "/_matrix/key/v2/query"


def check_self_signed(testcase, body: dict, server: str) -> None:
    """Every verify key listed signed the response (signedjson)."""
    for key_id, key in body["verify_keys"].items():
        verify_signed_json(body, server, decode_verify_key_bytes(key_id, decode_base64(key["key"])))
        testcase.assertIn(key_id, body["signatures"][server])


class RotationTests(RoomsTestCase):
    """ServerKeys.rotate: a new key; the old one under old_verify_keys."""

    async def test_old_verify_keys_after_rotation(self) -> None:
        before = (await self.request("GET", "/_matrix/key/v2/server")).json
        self.assertEqual(before["old_verify_keys"], {})
        [(old_id, old_key)] = before["verify_keys"].items()
        new_id = await self.hs.server_keys.rotate()
        self.assertNotEqual(new_id, old_id)
        after = (await self.request("GET", "/_matrix/key/v2/server")).json
        self.assertEqual(list(after["verify_keys"]), [new_id])
        self.assertEqual(set(after["old_verify_keys"]), {old_id})
        old = after["old_verify_keys"][old_id]
        self.assertEqual(old["key"], old_key["key"])
        self.assertLessEqual(old["expired_ts"], self.hs.clock_ms())
        check_self_signed(self, after, "test")
        self.assertEqual(list(after["signatures"]["test"]), [new_id])

        # Durable: a restart publishes the same.
        self.commit()
        await self.restart()
        again = (await self.request("GET", "/_matrix/key/v2/server")).json
        self.assertEqual(list(again["verify_keys"]), [new_id])
        self.assertEqual(again["old_verify_keys"], after["old_verify_keys"])

    async def test_events_signed_with_new_key(self) -> None:
        new_id = await self.hs.server_keys.rotate()
        _, token = await self.user("alice")
        room_id = await self.create_room(token)
        for state in await self.full_state(token, room_id):
            event = await self.hs.event_store.get_event(state["event_id"])
            self.assertEqual(list(event.pdu["signatures"]["test"]), [new_id])

    async def test_rotate_twice(self) -> None:
        first = (await self.request("GET", "/_matrix/key/v2/server")).json
        await self.hs.server_keys.rotate()
        await self.hs.server_keys.rotate()
        body = (await self.request("GET", "/_matrix/key/v2/server")).json
        self.assertEqual(len(body["old_verify_keys"]), 2)
        self.assertTrue(set(first["verify_keys"]) <= set(body["old_verify_keys"]))


class NotaryEndpointTests(RoomsTestCase):
    """Input checks; our own keys; unknown servers (no federation client yet)."""

    async def test_own_keys(self) -> None:
        r = await self.request("GET", f"{QUERY}/test")
        self.assertEqual(r.code, 200, r.body)
        [ours] = r.json["server_keys"]
        self.assertEqual(ours["server_name"], "test")
        check_self_signed(self, ours, "test")

    async def test_unreachable_server_gives_empty_list(self) -> None:
        r = await self.request("GET", f"{QUERY}/127.0.0.1:1?minimum_valid_until_ts=5")
        self.assertEqual((r.code, r.json), (200, {"server_keys": []}))
        r = await self.request("POST", QUERY, {"server_keys": {}})
        self.assertEqual((r.code, r.json), (200, {"server_keys": []}))
        r = await self.request("POST", QUERY, {"server_keys": {"127.0.0.1:1": {}}})
        self.assertEqual((r.code, r.json), (200, {"server_keys": []}))

    async def test_bad_input(self) -> None:
        r = await self.request("GET", f"{QUERY}/{quote('not a server!')}")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("GET", f"{QUERY}/test?minimum_valid_until_ts=soon")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("POST", QUERY, {})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("POST", QUERY, raw_body=b"{nope")
        self.assertMatrixError(r, 400, "M_NOT_JSON")
        for body, code in [
            *[(bad, "M_BAD_JSON") for bad in ([], "x", 3, True)],
            *[({"server_keys": bad}, "M_BAD_JSON") for bad in ([], "x", 3, 1.5, True)],
            ({"server_keys": None}, "M_MISSING_PARAM"),
            ({"server_keys": {"test": []}}, "M_BAD_JSON"),
            ({"server_keys": {"test": {"ed25519:a": 5}}}, "M_BAD_JSON"),
            ({"server_keys": {"test": {"ed25519:a": {"minimum_valid_until_ts": "x"}}}}, "M_BAD_JSON"),
            ({"server_keys": {"bad name!": {}}}, "M_INVALID_PARAM"),
            ({"server_keys": {f"s{i}.example": {} for i in range(101)}}, "M_LIMIT_EXCEEDED"),
        ]:
            r = await self.request("POST", QUERY, body)
            self.assertMatrixError(r, 400, code)
