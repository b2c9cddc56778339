"""Account data (client-server-api "Client Config") and the ignore list."""

from __future__ import annotations

from tests.api.accounts import AccountsTestCase

A = "/_matrix/client/v3/user/@alice:test"
ROOM = "!room:test"


class AccountDataTests(AccountsTestCase):
    """GET/PUT global and room account data, and the sync-facing reads."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]
        self.bob = (await self.register("bob"))["access_token"]

    async def test_global_roundtrip(self) -> None:
        r = await self.request("GET", A + "/account_data/org.example.cfg", access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("PUT", A + "/account_data/org.example.cfg", {"a": 1}, access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", A + "/account_data/org.example.cfg", access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {"a": 1}))
        r = await self.request("PUT", A + "/account_data/org.example.cfg", {"b": 2}, access_token=self.tok)
        r = await self.request("GET", "/_matrix/client/r0/user/@alice:test/account_data/org.example.cfg", access_token=self.tok)
        self.assertEqual(r.json, {"b": 2})

    async def test_room_roundtrip_without_inheritance(self) -> None:
        path = f"{A}/rooms/{ROOM}/account_data/org.example.cfg"
        r = await self.request("PUT", path, {"room": True}, access_token=self.tok)
        self.assertEqual(r.code, 200)
        r = await self.request("GET", path, access_token=self.tok)
        self.assertEqual(r.json, {"room": True})
        r = await self.request("GET", A + "/account_data/org.example.cfg", access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", f"{A}/rooms/!other:test/account_data/org.example.cfg", access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_only_the_user_themself(self) -> None:
        for method, path in (
            ("PUT", A + "/account_data/x.y"), ("GET", A + "/account_data/x.y"),
            ("PUT", f"{A}/rooms/{ROOM}/account_data/x.y"), ("GET", f"{A}/rooms/{ROOM}/account_data/x.y"),
        ):
            r = await self.request(method, path, {} if method == "PUT" else None, access_token=self.bob)
            self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", A + "/account_data/x.y")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_server_managed_types_refused(self) -> None:
        for t in ("m.fully_read", "m.push_rules"):
            r = await self.request("PUT", f"{A}/account_data/{t}", {}, access_token=self.tok)
            self.assertMatrixError(r, 405, "M_BAD_JSON")
            r = await self.request("PUT", f"{A}/rooms/{ROOM}/account_data/{t}", {}, access_token=self.tok)
            self.assertMatrixError(r, 405, "M_BAD_JSON")
        # Readable as normal: m.push_rules is the rendered ruleset.
        r = await self.request("GET", A + "/account_data/m.push_rules", access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual(r.json["global"]["override"][0]["rule_id"], ".m.rule.master")
        await self.hs.account_data.put("@alice:test", ROOM, "m.fully_read", {"event_id": "$x"})
        r = await self.request("GET", f"{A}/rooms/{ROOM}/account_data/m.fully_read", access_token=self.tok)
        self.assertEqual(r.json, {"event_id": "$x"})

    async def test_bad_bodies_and_room_ids(self) -> None:
        r = await self.request("PUT", A + "/account_data/x.y", [1], access_token=self.tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("PUT", A + "/account_data/x.y", raw_body=b"{nope", access_token=self.tok)
        self.assertMatrixError(r, 400, "M_NOT_JSON")
        r = await self.request("PUT", f"{A}/rooms/@notaroom:test/account_data/x.y", {}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("GET", f"{A}/rooms/@notaroom:test/account_data/x.y", access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_long_types_and_room_ids(self) -> None:
        long_type = "org.example." + "t" * 300
        long_room = "!" + "r" * 250 + ":test"
        path = f"{A}/rooms/{long_room}/account_data/{long_type}"
        r = await self.request("PUT", path, {"x": 1}, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", path, access_token=self.tok)
        self.assertEqual(r.json, {"x": 1})
        changes = await self.hs.account_data.changes_since("@alice:test", 0)
        self.assertEqual(changes.rooms[long_room], [{"type": long_type, "content": {"x": 1}}])

    async def test_changes_since_uses_positions(self) -> None:
        h = self.hs.account_data
        initial = await h.changes_since("@alice:test", 0)
        self.assertEqual([e["type"] for e in initial.global_events], ["m.push_rules"])
        start = await self.hs.globals.next_position()
        await self.request("PUT", A + "/account_data/a.one", {"v": 1}, access_token=self.tok)
        await self.request("PUT", f"{A}/rooms/{ROOM}/account_data/a.two", {"v": 2}, access_token=self.tok)
        mid = await self.hs.globals.current_position()
        await self.request("PUT", A + "/account_data/a.one", {"v": 3}, access_token=self.tok)
        await self.request("PUT", "/_matrix/client/v3/user/@bob:test/account_data/a.one", {"bob": 1}, access_token=self.bob)

        since_start = await h.changes_since("@alice:test", start)
        self.assertEqual(since_start.global_events, [{"type": "a.one", "content": {"v": 3}}])
        self.assertEqual(since_start.rooms, {ROOM: [{"type": "a.two", "content": {"v": 2}}]})
        self.assertGreater(since_start.position, mid)

        since_mid = await h.changes_since("@alice:test", mid)
        self.assertEqual(since_mid.global_events, [{"type": "a.one", "content": {"v": 3}}])
        self.assertEqual(since_mid.rooms, {})
        bounded = await h.changes_since("@alice:test", start, to=mid)
        self.assertEqual(bounded.rooms, {ROOM: [{"type": "a.two", "content": {"v": 2}}]})
        self.assertEqual(bounded.global_events, [], "a.one's latest change is after `to`")
        nothing = await h.changes_since("@alice:test", since_start.position)
        self.assertEqual((nothing.global_events, nothing.rooms, nothing.position), ([], {}, 0))
        # The index holds one entry per (user, room, type).
        rows = await h.store.changes.scan_prefix(b"@alice:test\xff")
        self.assertEqual(len(rows), 2)

    async def test_put_wakes_the_user(self) -> None:
        waiting = self.hs.notifier.wait("@alice:test", [], 30)
        await self.request("PUT", A + "/account_data/a.b", {}, access_token=self.tok)
        self.assertTrue(self.successResultOf(waiting))

    async def test_ignored_users(self) -> None:
        h = self.hs.account_data
        self.assertEqual(await h.ignored_users("@alice:test"), frozenset())
        await self.request(
            "PUT", A + "/account_data/m.ignored_user_list",
            {"ignored_users": {"@bob:test": {}, "@carol:x": {}, "junk": {}}}, access_token=self.tok,
        )
        self.assertEqual(await h.ignored_users("@alice:test"), {"@bob:test", "@carol:x"})
        # Cached: a second read does not touch the store.
        h.store = None  # type: ignore[assignment]
        self.assertEqual(await h.ignored_users("@alice:test"), {"@bob:test", "@carol:x"})


class AccountDataLmdbTests(AccountDataTests):
    """The same on the LMDB backend (hashed key parts, range scans)."""

    backend = "lmdb"
