"""
Inbound X-Matrix authentication (conduit_tw/federation/auth.py) through the
real resource tree: a federation servlet mounted with federation_route.
"""

from __future__ import annotations

import json
from typing import Any

from tests.federation.keyring_stub import MemoryKeyRing
from tests.server import HomeserverTestCase, Response

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.federation.xmatrix import sign_request

REMOTE = "remote.example:8448"
PATH = "/_matrix/federation/v1/_test/echo/{thing}"


class FederationAuthTests(HomeserverTestCase):
    config_overrides = {"forbidden_remote_server_names": ["banned.example"]}

    async def _start(self) -> None:
        await super()._start()
        self.keyring = MemoryKeyRing()
        self.hs.federation_auth.keyring = self.keyring
        self.key = self.keyring.add_server(REMOTE)
        self.calls: list[tuple[str, str]] = []

        async def echo(request: Any, origin: str, thing: str) -> Any:
            self.calls.append((origin, thing))
            return {"origin": origin, "thing": thing, "body": request.json_body()}

        federation_route(self.hs.router, self.hs.federation_auth, "PUT", PATH, echo)
        federation_route(self.hs.router, self.hs.federation_auth, "GET", PATH, echo)

    def signed(
        self, method: str, uri: str, content: Any = None, origin: str = REMOTE,
        destination: str | None = "test", key: Any = None, key_id: str = "ed25519:k1",
        sign_uri: str | None = None, sign_content: Any = None, raw_header: str | None = None,
    ) -> Any:
        """A request from C{origin}, signed (unless C{raw_header}) over what is given."""
        if raw_header is None:
            header = sign_request(
                key or self.key, key_id, origin, destination or "test", method,
                sign_uri or uri, content if sign_content is None else sign_content,
            ).decode()
            if destination is None:
                header = header.replace(',destination="test"', "")
        else:
            header = raw_header
        body = b"" if content is None else json.dumps(content).encode()
        return self.request(method, uri, headers={"Authorization": header}, raw_body=body)

    async def test_signed_request_reaches_servlet_with_origin(self) -> None:
        response = await self.signed("PUT", "/_matrix/federation/v1/_test/echo/a%20b?x=1", {"k": 1})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json, {"origin": REMOTE, "thing": "a b", "body": {"k": 1}})
        # The key must be valid now (request signatures are checked at receipt).
        (server, key_id, min_valid), = self.keyring.lookups
        self.assertEqual((server, key_id), (REMOTE, "ed25519:k1"))
        self.assertLess(abs(min_valid - self.hs.clock_ms()), 60_000)

    async def test_get_without_body(self) -> None:
        response = await self.signed("GET", "/_matrix/federation/v1/_test/echo/x")
        self.assertEqual(response.code, 200, response.body)

    async def test_without_destination_parameter(self) -> None:
        response = await self.signed("GET", "/_matrix/federation/v1/_test/echo/x", destination=None)
        self.assertEqual(response.code, 200, response.body)

    def assertUnauthorized(self, response: Response) -> None:
        self.assertMatrixError(response, 401, "M_UNAUTHORIZED")
        self.assertEqual(self.calls, [])

    async def test_missing_or_other_scheme(self) -> None:
        self.assertUnauthorized(await self.request("GET", "/_matrix/federation/v1/_test/echo/x"))
        self.assertUnauthorized(await self.request(
            "GET", "/_matrix/federation/v1/_test/echo/x", access_token="abc"
        ))

    async def test_malformed(self) -> None:
        response = await self.signed(
            "GET", "/_matrix/federation/v1/_test/echo/x", raw_header='X-Matrix origin="a'
        )
        self.assertUnauthorized(response)
        self.assertIn("Malformed", response.json["error"])

    async def test_tampered(self) -> None:
        uri = "/_matrix/federation/v1/_test/echo/x"
        for kw in [
            {"sign_uri": uri + "?a=1"},
            {"content": {"k": 1}, "sign_content": {"k": 2}},
            {"key": self.keyring.add_server("other.example")},
            {"origin": "other.example:8448"},  # no key known for it
            {"key_id": "ed25519:unknown"},
        ]:
            method = "PUT" if "content" in kw else "GET"
            self.assertUnauthorized(await self.signed(method, uri, **kw))

    async def test_other_destination(self) -> None:
        response = await self.signed(
            "GET", "/_matrix/federation/v1/_test/echo/x", destination="elsewhere.example"
        )
        self.assertUnauthorized(response)

    async def test_invalid_origin(self) -> None:
        self.assertUnauthorized(await self.signed(
            "GET", "/_matrix/federation/v1/_test/echo/x", origin="not a server"
        ))

    async def test_forbidden_server_refused_without_key_fetch(self) -> None:
        self.keyring.add_server("banned.example")
        response = await self.signed(
            "GET", "/_matrix/federation/v1/_test/echo/x", origin="BANNED.example",
            key=self.keyring.add_server("BANNED.example"),
        )
        self.assertMatrixError(response, 403, "M_FORBIDDEN")
        self.assertEqual(self.keyring.lookups, [])

    async def test_bad_json_body(self) -> None:
        header = sign_request(
            self.key, "ed25519:k1", REMOTE, "test", "PUT", "/_matrix/federation/v1/_test/echo/x", {}
        ).decode()
        response = await self.request(
            "PUT", "/_matrix/federation/v1/_test/echo/x", headers={"Authorization": header},
            raw_body=b"{not json",
        )
        self.assertMatrixError(response, 400, "M_NOT_JSON")

    async def test_no_keyring_refuses(self) -> None:
        self.hs.federation_auth.keyring = None
        self.assertUnauthorized(await self.signed("GET", "/_matrix/federation/v1/_test/echo/x"))

    async def test_origin_seen_hook(self) -> None:
        seen: list[str] = []
        self.hs.federation_auth.on_origin_seen.append(seen.append)
        await self.signed("GET", "/_matrix/federation/v1/_test/echo/x")
        self.assertEqual(seen, [REMOTE])

    async def test_unauthenticated_endpoints_stay_open(self) -> None:
        """version and the key endpoints have no `security` in the spec's OpenAPI."""
        for path in ("/_matrix/federation/v1/version", "/_matrix/key/v2/server"):
            response = await self.request("GET", path)
            self.assertEqual(response.code, 200, path)
