"""Filters (client-server-api "Filtering")."""

from __future__ import annotations

import json

from conduit_tw.errors import MatrixError
from tests.api.accounts import AccountsTestCase
from tests.handlers.test_filtering import SPEC_EXAMPLE

F = "/_matrix/client/v3/user/@alice:test/filter"


class FilterApiTests(AccountsTestCase):
    """POST/GET filters and resolving the filter parameter."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]

    async def test_roundtrip_and_dedup(self) -> None:
        r = await self.request("POST", F, SPEC_EXAMPLE, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)
        filter_id = r.json["filter_id"]
        self.assertFalse(filter_id.startswith("{"))
        r = await self.request("GET", f"{F}/{filter_id}", access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, SPEC_EXAMPLE))
        r = await self.request("POST", F, SPEC_EXAMPLE, access_token=self.tok)
        self.assertEqual(r.json["filter_id"], filter_id)
        r = await self.request("POST", F, {}, access_token=self.tok)
        self.assertNotEqual(r.json["filter_id"], filter_id)

    async def test_errors(self) -> None:
        r = await self.request("POST", F, {"room": {"timeline": {"limit": "ten"}}}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("GET", f"{F}/nope", access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        bob = (await self.register("bob"))["access_token"]
        r = await self.request("POST", F, {}, access_token=bob)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        filter_id = (await self.request("POST", F, {}, access_token=self.tok)).json["filter_id"]
        r = await self.request("GET", f"{F}/{filter_id}", access_token=bob)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", f"/_matrix/client/v3/user/@bob:test/filter/{filter_id}", access_token=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_resolve(self) -> None:
        handler = self.hs.filters
        filter_id = (await self.request("POST", F, SPEC_EXAMPLE, access_token=self.tok)).json["filter_id"]
        stored = await handler.resolve("@alice:test", filter_id)
        self.assertEqual(stored.room_timeline.get_limit(20, 50), 10)
        inline = await handler.resolve("@alice:test", json.dumps({"room": {"timeline": {"limit": 3}}}))
        self.assertEqual(inline.room_timeline.get_limit(20, 50), 3)
        everything = await handler.resolve("@alice:test", None)
        self.assertTrue(everything.room_timeline.matches({"type": "x"}))
        for param, code in (("{nope", "M_NOT_JSON"), ('{"room": []}', "M_BAD_JSON"), ("unknown", "M_NOT_FOUND")):
            try:
                await handler.resolve("@alice:test", param)
            except MatrixError as e:
                self.assertEqual(e.errcode, code)
            else:
                self.fail(f"{param!r} resolved")
