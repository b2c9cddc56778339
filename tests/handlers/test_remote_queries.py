"""
L{RemoteQueries}: what is asked of other servers, how their answers are
checked, and how failures reach our clients (no 401 or 500 passed on).
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from conduit_tw.errors import MatrixError
from conduit_tw.federation.errors import FederationDisabled, NotReachable, RemoteError
from conduit_tw.handlers.remote_queries import (
    PUBLIC_ROOMS,
    QUERY_DIRECTORY,
    QUERY_PROFILE,
    RemoteQueries,
)
from tests.federation.fake_client import FakeFederationClient

REMOTE = "remote.example"


class RemoteQueriesTests(unittest.TestCase):
    def queries(self, answers: dict[str, Any], forbidden: tuple[str, ...] = ()) -> RemoteQueries:
        self.client = FakeFederationClient(answers)
        return RemoteQueries(self.client, forbidden)  # type: ignore[arg-type]

    async def assertError(self, call: Any, code: int, errcode: str) -> MatrixError:
        with self.assertRaises(MatrixError) as e:
            await call
        self.assertEqual((e.exception.code, e.exception.errcode), (code, errcode), e.exception.msg)
        return e.exception

    async def test_alias(self) -> None:
        queries = self.queries({QUERY_DIRECTORY: {"room_id": "!r:x", "servers": ["x", REMOTE, "y"]}})
        answer = await queries.resolve_alias(f"#a:{REMOTE}")
        self.assertEqual(answer, {"room_id": "!r:x", "servers": [REMOTE, "x", "y"]})
        self.assertEqual(
            self.client.requests, [("GET", REMOTE, QUERY_DIRECTORY, {"room_alias": f"#a:{REMOTE}"}, None)]
        )

    async def test_alias_malformed(self) -> None:
        for answer in ([], {"servers": []}, {"room_id": "x", "servers": []}, {"room_id": "!r:x", "servers": [1]}):
            queries = self.queries({QUERY_DIRECTORY: answer})
            await self.assertError(queries.resolve_alias(f"#a:{REMOTE}"), 502, "M_UNKNOWN")

    async def test_failures(self) -> None:
        """The remote's 400/403/404 pass; its 401, 5xx and transport failures are 502."""
        cases = [
            (RemoteError(REMOTE, 404, "M_NOT_FOUND", "no"), 404, "M_NOT_FOUND"),
            (RemoteError(REMOTE, 403, "M_FORBIDDEN", "no"), 403, "M_FORBIDDEN"),
            (RemoteError(REMOTE, 400, "M_INVALID_PARAM"), 400, "M_INVALID_PARAM"),
            (RemoteError(REMOTE, 401, "M_UNAUTHORIZED", "bad signature"), 502, "M_UNKNOWN"),
            (RemoteError(REMOTE, 404), 502, "M_UNKNOWN"),
            (RemoteError(REMOTE, 500, "M_UNKNOWN"), 502, "M_UNKNOWN"),
            (RemoteError(REMOTE, 200, error="response is not JSON"), 502, "M_UNKNOWN"),
            (NotReachable(REMOTE, "connection refused"), 502, "M_UNKNOWN"),
            (FederationDisabled("off"), 403, "M_FORBIDDEN"),
        ]
        for error, code, errcode in cases:
            queries = self.queries({QUERY_DIRECTORY: error, QUERY_PROFILE: error, PUBLIC_ROOMS: error})
            await self.assertError(queries.resolve_alias(f"#a:{REMOTE}"), code, errcode)
            await self.assertError(queries.profile(f"@u:{REMOTE}", None), code, errcode)
            await self.assertError(queries.public_rooms(REMOTE), code, errcode)

    async def test_profile(self) -> None:
        queries = self.queries({QUERY_PROFILE: {"displayname": "U", "avatar_url": None, "m.tz": "UTC"}})
        self.assertEqual(await queries.profile(f"@u:{REMOTE}", None), {"displayname": "U", "m.tz": "UTC"})
        self.assertEqual(await queries.profile(f"@u:{REMOTE}", "displayname"), {"displayname": "U"})
        self.assertEqual(await queries.profile(f"@u:{REMOTE}", "avatar_url"), {})
        self.assertEqual(
            [r[3] for r in self.client.requests],
            [{"user_id": f"@u:{REMOTE}"}, {"user_id": f"@u:{REMOTE}", "field": "displayname"},
             {"user_id": f"@u:{REMOTE}", "field": "avatar_url"}],
        )

    async def test_profile_malformed(self) -> None:
        for answer in (["x"], {"displayname": 5}, {"avatar_url": {}}):
            queries = self.queries({QUERY_PROFILE: answer})
            await self.assertError(queries.profile(f"@u:{REMOTE}", None), 502, "M_UNKNOWN")

    async def test_public_rooms_get_and_post(self) -> None:
        listing = {"chunk": [{"room_id": "!r:x", "num_joined_members": 1}], "next_batch": "n"}
        queries = self.queries({PUBLIC_ROOMS: listing})
        self.assertEqual(await queries.public_rooms(REMOTE, limit=5, since="s"), listing)
        await queries.public_rooms(REMOTE, search_term="cats", room_types=[None], limit=2)
        (get, post) = self.client.requests
        self.assertEqual(get, ("GET", REMOTE, PUBLIC_ROOMS, {"limit": "5", "since": "s"}, None))
        self.assertEqual(post[0], "POST")
        self.assertEqual(post[4], {
            "include_all_networks": False, "limit": 2,
            "filter": {"generic_search_term": "cats", "room_types": [None]},
        })

    async def test_public_rooms_forbidden_server(self) -> None:
        queries = self.queries({PUBLIC_ROOMS: {"chunk": []}}, forbidden=("Remote.Example",))
        await self.assertError(queries.public_rooms(REMOTE), 403, "M_FORBIDDEN")
        self.assertEqual(self.client.requests, [])

    async def test_public_rooms_malformed(self) -> None:
        for answer in ([], {}, {"chunk": {}}, {"chunk": [1]}):
            queries = self.queries({PUBLIC_ROOMS: answer})
            await self.assertError(queries.public_rooms(REMOTE), 502, "M_UNKNOWN")

    async def test_invalid_names(self) -> None:
        """A user ID or alias without a usable server name is the client's mistake (400)."""
        queries = self.queries({})
        await self.assertError(queries.profile("nobody", None), 400, "M_INVALID_PARAM")
        await self.assertError(queries.profile("@x:bad name", None), 400, "M_INVALID_PARAM")
        self.assertEqual(self.client.requests, [])
