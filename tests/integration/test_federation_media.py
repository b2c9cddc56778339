"""
Media over federation between two real servers on loopback over TLS
(server names C{localhost:<port>}, certificate verification off,
C{ip_range_denylist = []}): a client of A uploads, a client of B downloads
through B (handlers/remote_media.py, api/federation/media.py); plus a
stand-in for an older server that only has the legacy download, and one
that answers with a C{Location} part.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any
from urllib.parse import quote

from PIL import Image
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.trial import unittest
from twisted.web import resource, server

from conduit_tw.federation import multipart
from conduit_tw.federation.errors import RemoteError
from conduit_tw.homeserver import HomeServer
from conduit_tw.http.client import OutgoingHTTPClient, Response
from tests.integration.federation import start_homeserver
from tests.server import make_config

CLIENT = "/_matrix/client/v1/media"


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 240)).save(buf, "PNG")
    return buf.getvalue()


def _port_of(server_name: str) -> int:
    return int(server_name.rsplit(":", 1)[1])


class _OldServer(resource.Resource):
    """
    A server from before Matrix 1.11 (C{mode="legacy"}: the federation
    media endpoint is unknown, 404 M_UNRECOGNIZED), one that answers it
    with a C{Location} part (C{mode="location"}) pointing at C{/cdn/...},
    with a broken body (C{"malformed"}) or 404 M_NOT_FOUND (C{"unknown"}).
    """

    isLeaf = True

    def __init__(self, mode: str, content: bytes) -> None:
        super().__init__()
        self.mode = mode
        self.content = content
        self.paths: list[str] = []
        self.base = ""

    def render_GET(self, request: Any) -> bytes:
        path = request.path.decode()
        self.paths.append(path)
        if path.startswith("/_matrix/federation/v1/media/download/"):
            if self.mode == "malformed":
                request.setHeader(b"Content-Type", b"multipart/mixed; boundary=zz")
                return b"--zz\r\nContent-Type: application/json\r\n\r\n{}\r\n--zz\r\n\r\ncut off"
            if self.mode == "unknown":
                request.setResponseCode(404)
                request.setHeader(b"Content-Type", b"application/json")
                return b'{"errcode":"M_NOT_FOUND","error":"Not found"}'
            if self.mode == "location":
                boundary = "cafe"
                request.setHeader(b"Content-Type", multipart.content_type(boundary))
                location = (self.base + "/cdn/file").encode()
                return multipart.head(boundary, {b"Location": location}) + multipart.tail(boundary)
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}).encode()
        if path.startswith("/_matrix/media/v3/download/") or path == "/cdn/file":
            request.setHeader(b"Content-Type", b"text/plain")
            request.setHeader(b"Content-Disposition", b'attachment; filename="old.txt"')
            return self.content
        request.setResponseCode(404)
        return b'{"errcode":"M_UNRECOGNIZED","error":"no"}'


class FederationMediaTests(unittest.TestCase):
    async def start(self, **extra: Any) -> HomeServer:
        hs = await start_homeserver(self, **{"rc_media_per_second": 0, **extra})
        self.cert, self.key = hs.config.tls.certs, hs.config.tls.key
        return hs

    async def _setup(self) -> None:
        self.http = OutgoingHTTPClient(
            reactor, make_config(ip_range_denylist=[], allow_invalid_tls_certificates=True)
        )
        self.addCleanup(self.http.close)
        self.a = await self.start()

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._setup())

    async def call(
        self, hs: HomeServer, method: str, path: str, body: bytes | None = None,
        token: str | None = None, headers: dict[str, str] | None = None,
    ) -> Response:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        return await self.http.request(
            method, f"https://127.0.0.1:{_port_of(hs.server_name)}{path}", h, body,
            max_size=10 * 1024 * 1024,
        )

    async def register(self, hs: HomeServer, name: str) -> str:
        hs.passwords.hasher.__init__(time_cost=1, memory_cost=256, parallelism=1)  # cheap
        body = {"username": name, "password": "secret pw", "auth": {"type": "m.login.dummy"}}
        r = await self.call(hs, "POST", "/_matrix/client/v3/register", json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})
        self.assertEqual(r.code, 200, r.body)
        return r.json()["access_token"]

    async def upload_on_a(self, data: bytes, content_type: str, filename: str) -> str:
        token = await self.register(self.a, "alice")
        r = await self.call(self.a, "POST", f"/_matrix/media/v3/upload?filename={quote(filename)}",
                            data, token, {"Content-Type": content_type})
        self.assertEqual(r.code, 200, r.body)
        uri = r.json()["content_uri"]
        self.assertTrue(uri.startswith(f"mxc://{self.a.server_name}/"), uri)
        return uri.rsplit("/", 1)[1]

    def count_fetches(self, hs: HomeServer) -> list[str]:
        """Counts the federation media fetches of C{hs}."""
        calls: list[str] = []
        original = hs.federation_client.get_stream

        async def counting(destination: str, path: str, *a: Any, **k: Any) -> Any:
            calls.append(path)
            return await original(destination, path, *a, **k)

        hs.federation_client.get_stream = counting  # type: ignore[method-assign]
        return calls

    async def test_download_through_b_cached_and_thumbnail(self) -> None:
        b = await self.start()
        image = png(1000, 500)
        media_id = await self.upload_on_a(image, "image/png", "blue sky.png")
        bob = await self.register(b, "bob")
        fetches = self.count_fetches(b)
        path = f"{CLIENT}/download/{quote(self.a.server_name)}/{media_id}"
        r = await self.call(b, "GET", path, token=bob)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.body, image)
        self.assertEqual(r.headers.getRawHeaders(b"content-type"), [b"image/png"])
        self.assertEqual(r.headers.getRawHeaders(b"content-disposition"),
                         [b'inline; filename="blue sky.png"'])
        self.assertEqual(r.headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        self.assertTrue(r.headers.getRawHeaders(b"content-security-policy")[0].startswith(b"sandbox"))
        self.assertEqual(len(fetches), 1)
        # Authenticated media: no token, no media.
        r = await self.call(b, "GET", path)
        self.assertEqual(r.code, 401)
        # Cached: served again without asking A.
        r = await self.call(b, "GET", path, token=bob)
        self.assertEqual((r.code, r.body), (200, image))
        self.assertEqual(len(fetches), 1)
        # Thumbnail of remote media, made by B from its cached copy.
        r = await self.call(
            b, "GET",
            f"{CLIENT}/thumbnail/{quote(self.a.server_name)}/{media_id}?width=32&height=32&method=scale",
            token=bob,
        )
        self.assertEqual(r.code, 200, r.body)
        # The smallest 'scale' preset at least as large as asked (320x240).
        self.assertEqual(Image.open(io.BytesIO(r.body)).size, (320, 160))
        self.assertEqual(len(fetches), 1)
        # B does not serve A's media over federation (only its own).
        with self.assertRaises(RemoteError) as e:
            await self.a.federation_client.get_stream(
                b.server_name, f"/_matrix/federation/v1/media/download/{media_id}",
                sink=io.BytesIO(),
            )
        self.assertEqual((e.exception.code, e.exception.errcode), (404, "M_NOT_FOUND"))

    async def test_concurrent_downloads_fetch_once(self) -> None:
        b = await self.start()
        data = os.urandom(300_000)
        media_id = await self.upload_on_a(data, "application/octet-stream", "blob.bin")
        bob = await self.register(b, "bob")
        fetches = self.count_fetches(b)
        path = f"{CLIENT}/download/{quote(self.a.server_name)}/{media_id}"
        from twisted.internet.defer import gatherResults

        results = await gatherResults([
            Deferred.fromCoroutine(self.call(b, "GET", path, token=bob)) for _ in range(3)
        ])
        self.assertEqual([(r.code, r.body == data) for r in results], [(200, True)] * 3)
        self.assertEqual(results[0].headers.getRawHeaders(b"content-disposition"),
                         [b'attachment; filename="blob.bin"'])
        self.assertEqual(len(fetches), 1)

    async def test_federation_endpoints(self) -> None:
        b = await self.start()
        image = png(64, 64)
        media_id = await self.upload_on_a(image, "image/png", "x.png")
        sink = io.BytesIO()
        response = await b.federation_client.get_stream(
            self.a.server_name, f"/_matrix/federation/v1/media/download/{media_id}", sink=sink
        )
        boundary = multipart.boundary_of(response.headers.getRawHeaders(b"content-type")[0].decode())
        self.assertIsNotNone(boundary)
        part = multipart.parse(sink, boundary)
        self.assertEqual(part.metadata, {})
        self.assertEqual(sink.getvalue()[part.start:part.end], image)
        self.assertEqual(part.headers["content-type"], "image/png")
        # Boundaries are random per response.
        sink2 = io.BytesIO()
        response2 = await b.federation_client.get_stream(
            self.a.server_name, f"/_matrix/federation/v1/media/thumbnail/{media_id}",
            {"width": "32", "height": "32", "method": "crop"}, sink=sink2,
        )
        boundary2 = multipart.boundary_of(response2.headers.getRawHeaders(b"content-type")[0].decode())
        self.assertNotEqual(boundary, boundary2)
        thumb = multipart.parse(sink2, boundary2)
        self.assertEqual(Image.open(io.BytesIO(sink2.getvalue()[thumb.start:thumb.end])).size, (32, 32))
        # Unknown media; unsigned requests.
        with self.assertRaises(RemoteError) as e:
            await b.federation_client.get_stream(
                self.a.server_name, "/_matrix/federation/v1/media/download/nope", sink=io.BytesIO()
            )
        self.assertEqual((e.exception.code, e.exception.errcode), (404, "M_NOT_FOUND"))
        r = await self.call(self.a, "GET", f"/_matrix/federation/v1/media/download/{media_id}")
        self.assertEqual(r.code, 401)

    async def test_prevent_media_downloads_from(self) -> None:
        b = await self.start(prevent_media_downloads_from=[self.a.server_name])
        media_id = await self.upload_on_a(b"secret", "text/plain", "s.txt")
        bob = await self.register(b, "bob")
        fetches = self.count_fetches(b)
        r = await self.call(b, "GET", f"{CLIENT}/download/{quote(self.a.server_name)}/{media_id}",
                            token=bob)
        self.assertEqual(r.code, 404)
        self.assertEqual(r.json()["errcode"], "M_NOT_FOUND")
        self.assertEqual(fetches, [])

    async def test_too_large(self) -> None:
        b = await self.start(max_request_size=1000)
        media_id = await self.upload_on_a(os.urandom(5000), "application/octet-stream", "big")
        bob = await self.register(b, "bob")
        r = await self.call(b, "GET", f"{CLIENT}/download/{quote(self.a.server_name)}/{media_id}",
                            token=bob)
        self.assertEqual((r.code, r.json()["errcode"]), (502, "M_TOO_LARGE"))

    async def _old_server(self, mode: str, content: bytes) -> tuple[str, _OldServer]:
        old = _OldServer(mode, content)
        with open(self.cert, "rb") as c, open(self.key, "rb") as k:
            cert = ssl.PrivateCertificate.loadPEM(c.read() + k.read())
        port = reactor.listenSSL(0, server.Site(old), cert.options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        old.base = f"https://127.0.0.1:{number}"
        return f"localhost:{number}", old

    async def test_legacy_fallback(self) -> None:
        b = await self.start()
        bob = await self.register(b, "bob")
        name, old = await self._old_server("legacy", b"from the old days")
        path = f"{CLIENT}/download/{quote(name)}/oldMedia123"
        r = await self.call(b, "GET", path, token=bob)
        self.assertEqual((r.code, r.body), (200, b"from the old days"))
        self.assertEqual(r.headers.getRawHeaders(b"content-disposition"),
                         [b'inline; filename="old.txt"'])
        self.assertEqual(old.paths, [
            "/_matrix/federation/v1/media/download/oldMedia123",
            f"/_matrix/media/v3/download/{name}/oldMedia123",
        ])
        r = await self.call(b, "GET", path, token=bob)
        self.assertEqual((r.code, r.body), (200, b"from the old days"))
        self.assertEqual(len(old.paths), 2)

    async def test_location_part_followed(self) -> None:
        b = await self.start()
        bob = await self.register(b, "bob")
        name, old = await self._old_server("location", b"from a CDN")
        r = await self.call(b, "GET", f"{CLIENT}/download/{quote(name)}/cdnMedia", token=bob)
        self.assertEqual((r.code, r.body), (200, b"from a CDN"))
        self.assertEqual(old.paths, ["/_matrix/federation/v1/media/download/cdnMedia", "/cdn/file"])

    async def test_malformed_answer_not_cached(self) -> None:
        b = await self.start()
        bob = await self.register(b, "bob")
        name, old = await self._old_server("malformed", b"")
        path = f"{CLIENT}/download/{quote(name)}/broken"
        for attempt in (1, 2):
            r = await self.call(b, "GET", path, token=bob)
            self.assertEqual((r.code, r.json()["errcode"]), (502, "M_UNKNOWN"))
            self.assertEqual(len(old.paths), attempt)
        # Nothing half-written is left in the media directory's tmp/.
        self.assertEqual(os.listdir(b.media.files.tmp), [])

    async def test_unknown_media_no_fallback(self) -> None:
        b = await self.start()
        bob = await self.register(b, "bob")
        name, old = await self._old_server("unknown", b"")
        r = await self.call(b, "GET", f"{CLIENT}/download/{quote(name)}/gone", token=bob)
        self.assertEqual((r.code, r.json()["errcode"]), (404, "M_NOT_FOUND"))
        self.assertEqual(old.paths, ["/_matrix/federation/v1/media/download/gone"])
