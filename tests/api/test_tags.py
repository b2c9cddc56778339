"""Room tagging (client-server-api "Room Tagging")."""

from __future__ import annotations

from tests.api.accounts import AccountsTestCase

T = "/_matrix/client/v3/user/@alice:test/rooms/!room:test/tags"


class TagTests(AccountsTestCase):
    """GET/PUT/DELETE tags, stored as m.tag room account data."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]

    async def test_roundtrip(self) -> None:
        r = await self.request("GET", T, access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {"tags": {}}))
        for tag, body in (("m.favourite", {"order": 0.1}), ("u.Work", {"order": 1}), ("u.Customers", {})):
            r = await self.request("PUT", f"{T}/{tag}", body, access_token=self.tok)
            self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", T, access_token=self.tok)
        self.assertEqual(r.json, {"tags": {"m.favourite": {"order": 0.1}, "u.Work": {"order": 1}, "u.Customers": {}}})
        r = await self.request("PUT", f"{T}/u.Work", {"order": 0.5}, access_token=self.tok)
        r = await self.request("DELETE", f"{T}/m.favourite", access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("DELETE", f"{T}/m.favourite", access_token=self.tok)
        self.assertEqual(r.code, 200, "deleting an absent tag is fine")
        r = await self.request("GET", T, access_token=self.tok)
        self.assertEqual(r.json, {"tags": {"u.Work": {"order": 0.5}, "u.Customers": {}}})
        # Visible to /sync as the room's m.tag account data.
        changes = await self.hs.account_data.changes_since("@alice:test", 0)
        self.assertEqual(changes.rooms["!room:test"], [{"type": "m.tag", "content": r.json}])
        r = await self.request(
            "GET", "/_matrix/client/v3/user/@alice:test/rooms/!room:test/account_data/m.tag", access_token=self.tok
        )
        self.assertEqual(r.json, {"tags": {"u.Work": {"order": 0.5}, "u.Customers": {}}})

    async def test_validation(self) -> None:
        for body, errcode in (
            ({"order": 1.5}, "M_INVALID_PARAM"), ({"order": -0.1}, "M_INVALID_PARAM"),
            ({"order": "0.5"}, "M_BAD_JSON"), ({"order": True}, "M_BAD_JSON"),
        ):
            r = await self.request("PUT", f"{T}/u.x", body, access_token=self.tok)
            self.assertMatrixError(r, 400, errcode)
        r = await self.request("PUT", f"{T}/{'x' * 256}", {}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("PUT", f"{T}/{'x' * 255}", {}, access_token=self.tok)
        self.assertEqual(r.code, 200)
        r = await self.request("PUT", f"{T}/u.x", [], access_token=self.tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")

    async def test_other_users_forbidden(self) -> None:
        bob = (await self.register("bob"))["access_token"]
        for method in ("GET", "PUT", "DELETE"):
            path = T if method == "GET" else f"{T}/u.x"
            r = await self.request(method, path, {} if method == "PUT" else None, access_token=bob)
            self.assertMatrixError(r, 403, "M_FORBIDDEN")
