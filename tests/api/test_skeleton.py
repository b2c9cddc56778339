"""The HTTP skeleton: Matrix conventions on every response."""

from __future__ import annotations

import json

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from conduit_tw.api.resource import MatrixRequest
from conduit_tw.errors import MatrixError
from tests.server import HomeserverTestCase


class ConventionsTests(HomeserverTestCase):
    """Errors, CORS, HEAD, OPTIONS, security headers."""

    config_overrides = {"max_request_size": 1000}

    async def test_versions(self) -> None:
        r = await self.request("GET", "/_matrix/client/versions")
        self.assertEqual(r.code, 200)
        self.assertIsInstance(r.json["versions"], list)
        self.assertIsInstance(r.json["unstable_features"], dict)
        self.assertEqual(r.header("content-type"), "application/json")

    async def test_unknown_endpoint(self) -> None:
        r = await self.request("GET", "/_matrix/client/v3/nonexistent")
        self.assertMatrixError(r, 404, "M_UNRECOGNIZED")
        r = await self.request("GET", "/somewhere/else")
        self.assertMatrixError(r, 404, "M_UNRECOGNIZED")

    async def test_wrong_method(self) -> None:
        r = await self.request("POST", "/_matrix/client/versions", {})
        self.assertMatrixError(r, 405, "M_UNRECOGNIZED")

    async def test_cors_and_security_headers(self) -> None:
        for path in ("/_matrix/client/versions", "/_matrix/client/v3/nope"):
            r = await self.request("GET", path)
            self.assertEqual(r.header("access-control-allow-origin"), "*")
            methods = r.header("access-control-allow-methods")
            for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                self.assertIn(m, methods)
            self.assertIn("Authorization", r.header("access-control-allow-headers"))
            self.assertEqual(r.header("x-content-type-options"), "nosniff")
            self.assertEqual(r.header("x-frame-options"), "DENY")
            self.assertIn("default-src 'none'", r.header("content-security-policy"))

    async def test_options_preflight(self) -> None:
        r = await self.request(
            "OPTIONS",
            "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1",
            headers={"Origin": "https://app.element.io",
                     "Access-Control-Request-Method": "PUT"},
        )
        self.assertIn(r.code, (200, 204))
        self.assertEqual(r.header("access-control-allow-origin"), "*")
        self.assertIn("PUT", r.header("access-control-allow-methods"))

    async def test_head_like_get_without_body(self) -> None:
        get = await self.request("GET", "/_matrix/client/versions")
        head = await self.request("HEAD", "/_matrix/client/versions")
        self.assertEqual(head.code, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))

    async def test_body_too_large_declared(self) -> None:
        r = await self.request("POST", "/_matrix/client/versions", raw_body=b"x" * 5000)
        self.assertMatrixError(r, 413, "M_TOO_LARGE")

    async def test_body_too_large_chunked(self) -> None:
        """Without Content-Length the limit is enforced while reading chunks."""
        chunk = b"x" * 600
        body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 3 + b"0\r\n\r\n"
        r = await self.request(
            "POST", "/_matrix/client/versions",
            raw_body=body, headers={"Transfer-Encoding": "chunked"},
        )
        self.assertMatrixError(r, 413, "M_TOO_LARGE")

    async def test_not_json_and_missing_token(self) -> None:
        async def echo(request: MatrixRequest):
            return request.json_object()

        async def authed(request: MatrixRequest):
            requester = await self.hs.auth.get_requester(request)
            return {"user_id": requester.user_id}

        async def boom(request: MatrixRequest):
            raise RuntimeError("secret internals")

        self.hs.router.add("POST", "/_test/echo", echo)
        self.hs.router.add("GET", "/_test/authed", authed)
        self.hs.router.add("GET", "/_test/boom", boom)
        r = await self.request("POST", "/_test/echo", raw_body=b"{not json")
        self.assertMatrixError(r, 400, "M_NOT_JSON")
        r = await self.request("POST", "/_test/echo", raw_body=b"[1,2]")
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", "/_test/echo", raw_body=b'{"a": NaN}')
        self.assertMatrixError(r, 400, "M_NOT_JSON")
        r = await self.request("POST", "/_test/echo", {"a": 1})
        self.assertEqual((r.code, r.json), (200, {"a": 1}))
        r = await self.request("GET", "/_test/authed")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        # The (deprecated) query parameter is read: an unknown token.
        r = await self.request("GET", "/_test/authed?access_token=abc")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        r = await self.request("GET", "/_test/authed", access_token="nope")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        r = await self.request("GET", "/_test/boom")
        self.assertMatrixError(r, 500, "M_UNKNOWN")
        self.assertNotIn(b"secret", r.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class WellKnownUnsetTests(HomeserverTestCase):
    """Without [global.well_known] the documents are 404."""

    async def test_unset(self) -> None:
        for name in ("client", "server", "support"):
            r = await self.request("GET", f"/.well-known/matrix/{name}")
            self.assertMatrixError(r, 404, "M_NOT_FOUND")


class WellKnownSetTests(HomeserverTestCase):
    """Documents from the config."""

    config_overrides = {
        "well_known": {"client": "https://matrix.example.com/", "server": "matrix.example.com:443"}
    }

    async def test_documents(self) -> None:
        r = await self.request("GET", "/.well-known/matrix/client")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.json, {"m.homeserver": {"base_url": "https://matrix.example.com"}})
        r = await self.request("GET", "/.well-known/matrix/server")
        self.assertEqual(r.json, {"m.server": "matrix.example.com:443"})
        self.assertEqual(r.header("access-control-allow-origin"), "*")


class VersionEndpointsTests(HomeserverTestCase):
    """Federation version and Conduit's server_version."""

    async def test_versions(self) -> None:
        r = await self.request("GET", "/_matrix/federation/v1/version")
        self.assertEqual(r.json["server"]["name"], "conduit-tw")
        r = await self.request("GET", "/_conduit/server_version")
        self.assertEqual(r.json["name"], "conduit-tw")


class ServerKeyTests(HomeserverTestCase):
    """GET /_matrix/key/v2/server: a persisted, self-signed ed25519 key."""

    async def test_signed_and_valid(self) -> None:
        r = await self.request("GET", "/_matrix/key/v2/server")
        self.assertEqual(r.code, 200)
        body = r.json
        self.assertEqual(body["server_name"], "test")
        now = self.hs.clock_ms()
        self.assertGreater(body["valid_until_ts"], now + 3600 * 1000)
        self.assertLessEqual(body["valid_until_ts"], now + 7 * 24 * 3600 * 1000)
        [(key_id, key)] = body["verify_keys"].items()
        self.assertTrue(key_id.startswith("ed25519:"))
        verify_key = decode_verify_key_bytes(key_id, decode_base64(key["key"]))
        verify_signed_json(body, "test", verify_key)  # raises if wrong
        body["valid_until_ts"] += 1
        self.assertRaises(Exception, verify_signed_json, body, "test", verify_key)

    async def test_key_persists(self) -> None:
        first = (await self.request("GET", "/_matrix/key/v2/server")).json
        key = await self.hs.globals.get_or_create_signing_key()
        self.assertEqual(
            list(first["verify_keys"]), [f"ed25519:{key.version}"]
        )


class ErrorShapeTests(HomeserverTestCase):
    """MatrixError extras (e.g. retry_after_ms) reach the body."""

    async def test_extra(self) -> None:
        async def limited(request: MatrixRequest):
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "slow down", retry_after_ms=1500)

        self.hs.router.add("GET", "/_test/limited", limited)
        r = await self.request("GET", "/_test/limited")
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertEqual(json.loads(r.body)["retry_after_ms"], 1500)


async def _client_ip(request: MatrixRequest):
    return {"ip": request.client_ip}


class ForwardedForIgnoredTests(HomeserverTestCase):
    """Without trusted proxies, X-Forwarded-For is not believed."""

    async def test_ignored(self) -> None:
        self.hs.router.add("GET", "/_test/ip", _client_ip)
        r = await self.request(
            "GET", "/_test/ip", headers={"X-Forwarded-For": "203.0.113.9"}, client_ip="10.0.0.2"
        )
        self.assertEqual(r.json["ip"], "10.0.0.2")


class ForwardedForTrustedTests(HomeserverTestCase):
    """Behind a configured proxy the first untrusted hop is the client."""

    config_overrides = {"trusted_proxies": ["10.0.0.0/8"]}

    async def test_trusted_proxy(self) -> None:
        self.hs.router.add("GET", "/_test/ip", _client_ip)
        r = await self.request(
            "GET", "/_test/ip",
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.1.1.1"},
            client_ip="10.0.0.2",
        )
        self.assertEqual(r.json["ip"], "203.0.113.9")
        # A request straight from an untrusted peer keeps the peer address.
        r = await self.request(
            "GET", "/_test/ip", headers={"X-Forwarded-For": "1.2.3.4"}, client_ip="192.0.2.1"
        )
        self.assertEqual(r.json["ip"], "192.0.2.1")
