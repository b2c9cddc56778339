"""
Federation queries between two of our servers over TLS on loopback
(server-server-api "Querying for information", "Public Room Directory"):
each server's clients resolve the other's aliases, read its users'
profiles and list its room directory through the client API, and the
configuration switches and errors come out as Matrix errors.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.trial import unittest

from conduit_tw.federation.errors import RemoteError
from conduit_tw.homeserver import HomeServer
from tests.integration.federation import base_url, client_call, register, start_homeserver
from tests.integration.process import free_port

V3 = "/_matrix/client/v3"


def q(s: str) -> str:
    return quote(s, safe="")


class FederationQueryTests(unittest.TestCase):
    """Two servers; C{a} shares its directory over federation, C{b} does not."""

    async def start(self, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None) -> None:
        self.a = await start_homeserver(self, allow_public_room_directory_over_federation=True, **(a or {}))
        self.b = await start_homeserver(self, **(b or {}))

    async def api(self, hs: HomeServer, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return await client_call(base_url(hs), method, path, body, token)

    async def ok(self, hs: HomeServer, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        code, answer = await self.api(hs, method, path, body, token)
        self.assertEqual(code, 200, answer)
        return answer

    def assertError(self, result: tuple[int, Any], code: int, errcode: str) -> None:
        self.assertEqual((result[0], result[1].get("errcode")), (code, errcode), result[1])
        self.assertIsInstance(result[1].get("error"), str)

    async def room(self, hs: HomeServer, token: str, **body: Any) -> str:
        return (await self.ok(hs, "POST", V3 + "/createRoom", body, token))["room_id"]

    async def test_alias_both_ways(self) -> None:
        await self.start()
        for owner, asker in [(self.a, self.b), (self.b, self.a)]:
            _, token = await register(owner, "owner")
            room_id = await self.room(owner, token, room_alias_name="lobby")
            alias = f"#lobby:{owner.server_name}"
            answer = await self.ok(asker, "GET", f"{V3}/directory/room/{q(alias)}")
            self.assertEqual(answer, {"room_id": room_id, "servers": [owner.server_name]})
            missing = await self.api(asker, "GET", f"{V3}/directory/room/{q('#nope:' + owner.server_name)}")
            self.assertError(missing, 404, "M_NOT_FOUND")

    async def test_profile_both_ways(self) -> None:
        await self.start()
        for owner, asker in [(self.a, self.b), (self.b, self.a)]:
            user_id, token = await register(owner, "carol")
            await self.ok(owner, "PUT", f"{V3}/profile/{q(user_id)}/displayname", {"displayname": "Carol"}, token)
            profile = await self.ok(asker, "GET", f"{V3}/profile/{q(user_id)}")
            self.assertEqual(profile["displayname"], "Carol")
            self.assertNotIn("avatar_url", profile)
            field = await self.ok(asker, "GET", f"{V3}/profile/{q(user_id)}/displayname")
            self.assertEqual(field, {"displayname": "Carol"})
            unset = await self.api(asker, "GET", f"{V3}/profile/{q(user_id)}/avatar_url")
            self.assertError(unset, 404, "M_NOT_FOUND")
            unknown = await self.api(asker, "GET", f"{V3}/profile/{q('@nobody:' + owner.server_name)}")
            self.assertError(unknown, 404, "M_NOT_FOUND")

    async def test_profile_lookup_switched_off(self) -> None:
        await self.start(a={"allow_profile_lookup_federation_requests": False})
        user_id, _ = await register(self.a, "dave")
        result = await self.api(self.b, "GET", f"{V3}/profile/{q(user_id)}")
        self.assertError(result, 403, "M_FORBIDDEN")
        # A's own clients still see it.
        await self.ok(self.a, "GET", f"{V3}/profile/{q(user_id)}")

    async def test_public_rooms(self) -> None:
        await self.start()
        _, token_a = await register(self.a, "erin")
        _, token_b = await register(self.b, "frank")
        for name in ("Apples", "Pears"):
            await self.room(self.a, token_a, visibility="public", name=name)
        await self.room(self.b, token_b, visibility="public", name="Plums")
        server = q(self.a.server_name)
        listing = await self.ok(self.b, "GET", f"{V3}/publicRooms?server={server}", token=token_b)
        self.assertEqual(sorted(r["name"] for r in listing["chunk"]), ["Apples", "Pears"])
        page = await self.ok(self.b, "GET", f"{V3}/publicRooms?server={server}&limit=1", token=token_b)
        self.assertEqual(len(page["chunk"]), 1)
        rest = await self.ok(
            self.b, "GET", f"{V3}/publicRooms?server={server}&since={q(page['next_batch'])}", token=token_b
        )
        self.assertEqual(len(rest["chunk"]), 1)
        self.assertNotEqual(rest["chunk"][0]["room_id"], page["chunk"][0]["room_id"])
        found = await self.ok(
            self.b, "POST", f"{V3}/publicRooms?server={server}",
            {"filter": {"generic_search_term": "pear"}}, token_b,
        )
        self.assertEqual([r["name"] for r in found["chunk"]], ["Pears"])
        # B does not share its directory (the default).
        refused = await self.api(
            self.a, "GET", f"{V3}/publicRooms?server={q(self.b.server_name)}", token=token_a
        )
        self.assertError(refused, 403, "M_FORBIDDEN")

    async def test_forbidden_remote_directory(self) -> None:
        self.a = await start_homeserver(self, allow_public_room_directory_over_federation=True)
        self.b = await start_homeserver(
            self, forbidden_remote_room_directory_server_names=[self.a.server_name]
        )
        _, token = await register(self.b, "gina")
        for method in ("GET", "POST"):
            result = await self.api(
                self.b, method, f"{V3}/publicRooms?server={q(self.a.server_name)}",
                {} if method == "POST" else None, token,
            )
            self.assertError(result, 403, "M_FORBIDDEN")

    async def test_unreachable_and_invalid(self) -> None:
        await self.start()
        _, token = await register(self.b, "hank")
        nobody = f"localhost:{free_port()}"
        for path in (
            f"{V3}/profile/{q('@x:' + nobody)}",
            f"{V3}/directory/room/{q('#x:' + nobody)}",
            f"{V3}/publicRooms?server={q(nobody)}",
        ):
            self.assertError(await self.api(self.b, "GET", path, token=token), 502, "M_UNKNOWN")
        invalid = await self.api(self.b, "GET", f"{V3}/publicRooms?server=bad%20name", token=token)
        self.assertError(invalid, 400, "M_INVALID_PARAM")

    async def test_server_side_errors(self) -> None:
        """The federation endpoints themselves, asked with a signed request."""
        await self.start()
        client = self.b.federation_client
        a = self.a.server_name
        cases = [
            ("/_matrix/federation/v1/query/directory", {}, 400, "M_MISSING_PARAM"),
            ("/_matrix/federation/v1/query/directory", {"room_alias": "nope"}, 400, "M_INVALID_PARAM"),
            ("/_matrix/federation/v1/query/directory", {"room_alias": "#x:other.example"}, 404, "M_NOT_FOUND"),
            ("/_matrix/federation/v1/query/profile", {}, 400, "M_MISSING_PARAM"),
            ("/_matrix/federation/v1/query/profile", {"user_id": "@x:other.example"}, 400, "M_INVALID_PARAM"),
            ("/_matrix/federation/v1/query/profile", {"user_id": f"@x:{a}", "field": "Bad"}, 400, "M_INVALID_PARAM"),
            ("/_matrix/federation/v1/publicRooms", {"limit": "x"}, 400, "M_INVALID_PARAM"),
        ]
        for path, args, code, errcode in cases:
            with self.assertRaises(RemoteError) as e:
                await client.get_json(a, path, args)
            self.assertEqual((e.exception.code, e.exception.errcode), (code, errcode), (path, args))
        user_id, token = await register(self.a, "ida")
        await self.ok(self.a, "PUT", f"{V3}/profile/{q(user_id)}/displayname", {"displayname": "Ida"}, token)
        field = await client.get_json(a, "/_matrix/federation/v1/query/profile", {"user_id": user_id, "field": "avatar_url"})
        self.assertEqual(field, {})
        with self.assertRaises(RemoteError) as e:
            await client.post_json(a, "/_matrix/federation/v1/publicRooms", {"limit": "x"})
        self.assertEqual((e.exception.code, e.exception.errcode), (400, "M_BAD_JSON"))
        listing = await client.post_json(a, "/_matrix/federation/v1/publicRooms", {})
        self.assertEqual(listing["chunk"], [])
