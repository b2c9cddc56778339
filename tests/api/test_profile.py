"""Profiles: display name, avatar, extended fields, limits, hooks."""

from __future__ import annotations

from conduit_tw.federation.errors import RemoteError
from conduit_tw.handlers.remote_queries import QUERY_PROFILE
from tests.api.accounts import AccountsTestCase
from tests.federation.fake_client import FakeFederationClient

P = "/_matrix/client/v3/profile/@alice:test"


class ProfileTests(AccountsTestCase):
    """GET/PUT/DELETE /profile."""

    async def _alice(self) -> str:
        return (await self.register("alice"))["access_token"]

    async def test_displayname_roundtrip(self) -> None:
        tok = await self._alice()
        r = await self.request("PUT", P + "/displayname", {"displayname": "Alice A."}, access_token=tok)
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", P + "/displayname")
        self.assertEqual(r.json, {"displayname": "Alice A."})
        r = await self.request("GET", "/_matrix/client/r0/profile/@alice:test/displayname")
        self.assertEqual(r.json, {"displayname": "Alice A."})

    async def test_avatar_and_whole_profile(self) -> None:
        tok = await self._alice()
        r = await self.request("PUT", P + "/avatar_url", {"avatar_url": "mxc://test/abc"}, access_token=tok)
        self.assertEqual(r.code, 200)
        r = await self.request("GET", P)
        self.assertEqual(r.json, {"displayname": "alice", "avatar_url": "mxc://test/abc"})
        r = await self.request("PUT", P + "/avatar_url", {"avatar_url": "https://x/y"}, access_token=tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("PUT", P + "/avatar_url", {"avatar_url": 3}, access_token=tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")

    async def test_empty_string_removes(self) -> None:
        tok = await self._alice()
        r = await self.request("PUT", P + "/displayname", {"displayname": ""}, access_token=tok)
        self.assertEqual(r.code, 200)
        r = await self.request("GET", P + "/displayname")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", P)
        self.assertEqual((r.code, r.json), (200, {}))

    async def test_delete_field(self) -> None:
        tok = await self._alice()
        r = await self.request("DELETE", P + "/displayname", access_token=tok)
        self.assertEqual(r.code, 200)
        r = await self.request("GET", P + "/displayname")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("DELETE", P + "/displayname", access_token=tok)
        self.assertEqual(r.code, 200)

    async def test_validation(self) -> None:
        tok = await self._alice()
        r = await self.request("PUT", P + "/displayname", {"displayname": "x" * 300}, access_token=tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("PUT", P + "/displayname", {"displayname": None}, access_token=tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("PUT", P + "/displayname", {}, access_token=tok)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("PUT", P + "/displayname", raw_body=b"[]", access_token=tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("PUT", P + "/Not_A_Key", {"Not_A_Key": 1}, access_token=tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        long_key = "com." + "a" * 260
        r = await self.request("PUT", P + "/" + long_key, {long_key: 1}, access_token=tok)
        self.assertMatrixError(r, 400, "M_KEY_TOO_LARGE")

    async def test_custom_fields_and_size_limit(self) -> None:
        tok = await self._alice()
        r = await self.request("PUT", P + "/m.tz", {"m.tz": "Europe/London"}, access_token=tok)
        self.assertEqual(r.code, 200)
        r = await self.request("PUT", P + "/com.example.pets", {"com.example.pets": ["cat"]}, access_token=tok)
        self.assertEqual(r.code, 200)
        r = await self.request("GET", P + "/com.example.pets")
        self.assertEqual(r.json, {"com.example.pets": ["cat"]})
        r = await self.request("PUT", P + "/com.example.big", {"com.example.big": "x" * 70000}, access_token=tok)
        self.assertMatrixError(r, 400, "M_PROFILE_TOO_LARGE")
        r = await self.request("GET", P)
        self.assertEqual(set(r.json), {"displayname", "m.tz", "com.example.pets"})

    async def test_permissions(self) -> None:
        tok = await self._alice()
        await self.register("bob")
        r = await self.request(
            "PUT", "/_matrix/client/v3/profile/@bob:test/displayname", {"displayname": "x"}, access_token=tok
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("PUT", P + "/displayname", {"displayname": "x"})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_unknown_users(self) -> None:
        r = await self.request("GET", "/_matrix/client/v3/profile/@nobody:test")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", "/_matrix/client/v3/profile/@nobody:test/displayname")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # Users of other servers: their server is asked (tests/handlers/
        # test_remote_queries.py, tests/integration/test_federation_queries.py).
        client = FakeFederationClient(
            {QUERY_PROFILE: RemoteError("remote.example", 404, "M_NOT_FOUND", "No such user")}
        )
        self.hs.remote_queries.client = client
        r = await self.request("GET", "/_matrix/client/v3/profile/@someone:remote.example")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertEqual(client.requests[0][1:4], (
            "remote.example", QUERY_PROFILE, {"user_id": "@someone:remote.example"}
        ))

    async def test_change_hook(self) -> None:
        """The rooms code hooks here to send new member events."""
        changes = []

        async def hook(user_id, key, value):
            changes.append((user_id, key, value))

        self.hs.profile.on_profile_changed.append(hook)
        tok = await self._alice()
        await self.request("PUT", P + "/displayname", {"displayname": "A"}, access_token=tok)
        await self.request("PUT", P + "/avatar_url", {"avatar_url": "mxc://test/x"}, access_token=tok)
        await self.request("DELETE", P + "/avatar_url", access_token=tok)
        self.assertEqual(
            changes,
            [
                ("@alice:test", "displayname", "A"),
                ("@alice:test", "avatar_url", "mxc://test/x"),
                ("@alice:test", "avatar_url", None),
            ],
        )
