"""The content repository (handlers/media.py, api/media.py)."""

from __future__ import annotations

import io
import os
from typing import Any

from PIL import Image

from conduit_tw.storage.stores.media_files import media_key
from tests.api.accounts import OPEN, AccountsTestCase
from tests.server import Response

MEDIA = "/_matrix/media/v3"
CLIENT = "/_matrix/client/v1/media"

NO_MEDIA_LIMIT = {**OPEN, "rc_media_per_second": 0}


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A PNG of one colour."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int, height: int) -> bytes:
    """A JPEG with a gradient (so it is not trivially compressible)."""
    im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


def animated_gif(width: int, height: int, frames: int = 3) -> bytes:
    """An animated GIF of C{frames} colours."""
    ims = [Image.new("RGB", (width, height), (80 * i % 256, 40, 200)) for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, "GIF", save_all=True, append_images=ims[1:], duration=100, loop=0)
    return buf.getvalue()


def media_id_of(uri: str) -> tuple[str, str]:
    """C{(server_name, media_id)} of an mxc URI."""
    server, _, media_id = uri[len("mxc://"):].partition("/")
    return server, media_id


class MediaTestCase(AccountsTestCase):
    """A server with a user C{self.token} and no media rate limit."""

    config_overrides: dict[str, Any] = NO_MEDIA_LIMIT

    async def _start(self) -> None:
        await super()._start()
        body = await self.register("alice")
        self.user_id, self.token = body["user_id"], body["access_token"]

    async def upload(
        self, data: bytes, content_type: str | None = "image/png", filename: str | None = None,
        token: str | None = None, expect: int = 200,
    ) -> Any:
        path = MEDIA + "/upload"
        if filename is not None:
            from urllib.parse import quote

            path += "?filename=" + quote(filename)
        headers = {"Content-Type": content_type} if content_type else {}
        r = await self.request(
            "POST", path, raw_body=data, access_token=token or self.token, headers=headers
        )
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def get(self, path: str, token: str | None = None, method: str = "GET") -> Response:
        return await self.request(method, path, access_token=token or self.token)


class UploadDownloadTests(MediaTestCase):
    async def test_round_trip(self) -> None:
        data = png(10, 10)
        uri = (await self.upload(data, filename="cat.png"))["content_uri"]
        server, media_id = media_id_of(uri)
        self.assertEqual(server, "test")
        self.assertRegex(media_id, r"^[A-Za-z0-9]{24}$")
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.body, data)
        self.assertEqual(r.header("content-type"), "image/png")
        self.assertEqual(r.header("content-disposition"), 'inline; filename="cat.png"')
        self.assertEqual(int(r.header("content-length")), len(data))

    async def test_large_file_round_trip(self) -> None:
        """~5 MB of random bytes arrive identical; the body went to the media directory."""
        data = os.urandom(5 * 1024 * 1024 + 123)
        from conduit_tw.handlers.media import MediaHandler
        from conduit_tw.storage.stores.media_files import UploadSpool

        bodies: list[Any] = []
        original_upload = MediaHandler.upload

        async def upload(handler: Any, uploader: str, spool: Any, *a: Any) -> str:
            bodies.append((type(spool), os.path.dirname(spool.path), os.path.getsize(spool.path)))
            return await original_upload(handler, uploader, spool, *a)

        self.patch(MediaHandler, "upload", upload)
        uri = (await self.upload(data, "application/octet-stream", "blob.bin"))["content_uri"]
        # The body was in a file of the media directory, not in memory.
        self.assertEqual(bodies, [(UploadSpool, self.hs.media.files.tmp, len(data))])
        server, media_id = media_id_of(uri)
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}")
        self.assertEqual(r.code, 200)
        self.assertEqual(len(r.body), len(data))
        self.assertEqual(r.body, data)
        self.assertEqual(r.header("content-disposition"), 'attachment; filename="blob.bin"')
        # Stored under a hashed name; nothing is left in the temporary folder.
        path = self.hs.media.files.path_for(media_key(server, media_id))
        self.assertEqual(os.path.getsize(path), len(data))
        self.assertEqual(os.listdir(self.hs.media.files.tmp), [])

    async def test_headers(self) -> None:
        uri = (await self.upload(b"<script>alert(1)</script>", "text/html", "x.html"))["content_uri"]
        server, media_id = media_id_of(uri)
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("cache-control"), "public, max-age=31536000, immutable")
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        self.assertEqual(r.header("cross-origin-resource-policy"), "cross-origin")
        csp = r.header("content-security-policy")
        self.assertIn("sandbox", csp)
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'none'", csp)
        # HTML is never inline.
        self.assertEqual(r.header("content-disposition"), 'attachment; filename="x.html"')

    async def test_filename_encoding(self) -> None:
        name = 'ünïcødé "quoted"\r\nX-Evil: 1.txt'
        uri = (await self.upload(b"hi", "text/plain", name))["content_uri"]
        server, media_id = media_id_of(uri)
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}")
        disposition = r.header("content-disposition")
        self.assertTrue(disposition.startswith("inline; filename*=utf-8''"), disposition)
        self.assertNotIn("\r", disposition)
        self.assertIsNone(r.header("x-evil"))
        from urllib.parse import unquote

        self.assertEqual(
            unquote(disposition.split("''", 1)[1]), 'ünïcødé "quoted"X-Evil: 1.txt'
        )
        # Overridden name in the path.
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}/other.txt")
        self.assertEqual(r.header("content-disposition"), 'inline; filename="other.txt"')
        self.assertEqual(r.body, b"hi")

    async def test_no_filename_no_content_type(self) -> None:
        uri = (await self.upload(b"\x00\x01", None))["content_uri"]
        server, media_id = media_id_of(uri)
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}")
        self.assertEqual(r.header("content-type"), "application/octet-stream")
        self.assertEqual(r.header("content-disposition"), "attachment")

    async def test_head(self) -> None:
        data = png(4, 4)
        uri = (await self.upload(data))["content_uri"]
        server, media_id = media_id_of(uri)
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}", method="HEAD")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(int(r.header("content-length")), len(data))
        self.assertEqual(r.header("cache-control"), "public, max-age=31536000, immutable")

    async def test_auth_required(self) -> None:
        uri = (await self.upload(png(4, 4)))["content_uri"]
        server, media_id = media_id_of(uri)
        for path in (
            f"{CLIENT}/download/{server}/{media_id}",
            f"{CLIENT}/download/{server}/{media_id}/a.png",
            f"{CLIENT}/thumbnail/{server}/{media_id}?width=32&height=32",
            f"{CLIENT}/config",
            f"{CLIENT}/preview_url?url=https://example.org",
        ):
            r = await self.request("GET", path)
            self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("POST", MEDIA + "/upload", raw_body=b"x")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("POST", "/_matrix/media/v1/create")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_unknown_and_malformed(self) -> None:
        r = await self.get(f"{CLIENT}/download/test/doesNotExist")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get(f"{CLIENT}/download/test/..%2F..%2Fetc%2Fpasswd")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get(f"{CLIENT}/download/bad%20server/abc")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_remote_not_on_legacy_endpoints(self) -> None:
        r = await self.get(f"{MEDIA}/download/remote.example/abcdef")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_remote_fetcher_plugs_in(self) -> None:
        from conduit_tw.handlers.media import MediaContent

        async def fetch(server_name: str, media_id: str) -> MediaContent:
            return MediaContent(io.BytesIO(b"remote!"), 7, "text/plain", "r.txt")

        self.hs.media.fetch_remote = fetch
        r = await self.get(f"{CLIENT}/download/remote.example/abcdef")
        self.assertEqual((r.code, r.body), (200, b"remote!"))

    async def test_config(self) -> None:
        r = await self.get(f"{CLIENT}/config")
        self.assertEqual(r.json, {"m.upload.size": self.config.max_request_size})
        r = await self.get(f"{MEDIA}/config")
        self.assertEqual(r.json, {"m.upload.size": self.config.max_request_size})

    async def test_delete(self) -> None:
        uri = (await self.upload(png(400, 300)))["content_uri"]
        server, media_id = media_id_of(uri)
        r = await self.get(f"{CLIENT}/thumbnail/{server}/{media_id}?width=32&height=32&method=crop")
        self.assertEqual(r.code, 200)
        files = self.hs.media.files
        original = files.path_for(media_key(server, media_id))
        thumb = files.path_for(media_key(server, media_id, "32x32-crop"))
        self.assertTrue(os.path.exists(original) and os.path.exists(thumb))
        self.assertTrue(await self.hs.media.delete(server, media_id))
        self.assertFalse(os.path.exists(original) or os.path.exists(thumb))
        self.assertIsNone(await self.hs.media.store.get(server, media_id))
        self.assertEqual(await self.hs.media.store.thumbnail_variants(server, media_id), [])
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertFalse(await self.hs.media.delete(server, media_id))


class LegacyTests(MediaTestCase):
    async def test_frozen_for_new_media(self) -> None:
        """New media is only served on the authenticated endpoints (the default)."""
        uri = (await self.upload(png(4, 4)))["content_uri"]
        server, media_id = media_id_of(uri)
        for path in (
            f"{MEDIA}/download/{server}/{media_id}",
            f"/_matrix/media/r0/download/{server}/{media_id}/x.png",
            f"{MEDIA}/thumbnail/{server}/{media_id}?width=32&height=32",
        ):
            r = await self.request("GET", path)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_media_from_before_the_freeze(self) -> None:
        """Media uploaded while legacy access was on keeps it after the freeze."""
        self.hs.media.legacy_for_new_media = True
        data = png(4, 4)
        old = media_id_of((await self.upload(data))["content_uri"])[1]
        self.hs.media.legacy_for_new_media = False
        new = media_id_of((await self.upload(data))["content_uri"])[1]
        r = await self.request("GET", f"{MEDIA}/download/test/{old}")
        self.assertEqual((r.code, r.body), (200, data))
        r = await self.request("GET", f"{MEDIA}/thumbnail/test/{old}?width=32&height=32")
        self.assertEqual(r.code, 200)
        r = await self.request("GET", f"{MEDIA}/download/test/{new}")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")


class LegacyUnfrozenTests(MediaTestCase):
    """freeze_legacy_media = false: new uploads stay reachable unauthenticated."""

    config_overrides = {**NO_MEDIA_LIMIT, "freeze_legacy_media": False}

    async def test_new_media_on_legacy_endpoints(self) -> None:
        data = png(4, 4)
        media_id = media_id_of((await self.upload(data))["content_uri"])[1]
        r = await self.request("GET", f"{MEDIA}/download/test/{media_id}")
        self.assertEqual((r.code, r.body), (200, data))


class SizeLimitTests(MediaTestCase):
    config_overrides = {**NO_MEDIA_LIMIT, "max_request_size": 100_000}

    async def test_oversize_refused_without_buffering(self) -> None:
        """A chunked body past the limit is dropped as it arrives: 413, no file left."""
        body = b"x" * 150_000
        chunked = b""
        for i in range(0, len(body), 10_000):
            part = body[i:i + 10_000]
            chunked += b"%x\r\n" % len(part) + part + b"\r\n"
        chunked += b"0\r\n\r\n"
        seen: list[int] = []
        original_write = None
        from conduit_tw.storage.stores import media_files

        original_write = media_files.UploadSpool.write

        def write(spool: Any, data: bytes) -> None:
            seen.append(spool.size + len(data))
            original_write(spool, data)

        self.patch(media_files.UploadSpool, "write", write)
        r = await self.request(
            "POST", MEDIA + "/upload", raw_body=chunked, access_token=self.token,
            headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"},
        )
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
        # Nothing past the limit reached the spool, and the spool is gone.
        self.assertLessEqual(max(seen), 100_000)
        self.assertEqual(os.listdir(self.hs.media.files.tmp), [])

    async def test_declared_oversize(self) -> None:
        r = await self.request(
            "POST", MEDIA + "/upload", raw_body=b"x" * 100_001, access_token=self.token
        )
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
        self.assertEqual(os.listdir(self.hs.media.files.tmp), [])

    async def test_disk_space_checked(self) -> None:
        files = self.hs.media.files
        files.disk_free = lambda path: files.min_free + 1000
        await self.upload(b"y" * 500, "text/plain")
        r = await self.request(
            "POST", MEDIA + "/upload", raw_body=b"y" * 5000, access_token=self.token
        )
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
        self.assertIn("disk space", r.json["error"])
        self.assertEqual(os.listdir(files.tmp), [])

    async def test_refused_upload_leaves_no_file(self) -> None:
        r = await self.request(
            "POST", MEDIA + "/upload", raw_body=b"z" * 50_000, access_token="bogus"
        )
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(os.listdir(self.hs.media.files.tmp), [])

    async def test_crash_leftovers_removed_at_setup(self) -> None:
        files = self.hs.media.files
        with open(os.path.join(files.tmp, "half.part"), "wb") as f:
            f.write(b"half")
        files.setup()
        self.assertEqual(os.listdir(files.tmp), [])


class AsyncUploadTests(MediaTestCase):
    async def create(self, token: str | None = None) -> dict[str, Any]:
        r = await self.request("POST", "/_matrix/media/v1/create", access_token=token or self.token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def put(self, uri: str, data: bytes, token: str | None = None) -> Response:
        server, media_id = media_id_of(uri)
        return await self.request(
            "PUT", f"{MEDIA}/upload/{server}/{media_id}?filename=a.txt", raw_body=data,
            access_token=token or self.token, headers={"Content-Type": "text/plain"},
        )

    async def test_flow(self) -> None:
        body = await self.create()
        self.assertTrue(body["content_uri"].startswith("mxc://test/"))
        self.assertGreater(body["unused_expires_at"], 0)
        server, media_id = media_id_of(body["content_uri"])
        # Not uploaded yet: 504 after the (short) wait.
        r = await self.get(f"{CLIENT}/download/{server}/{media_id}?timeout_ms=0")
        self.assertMatrixError(r, 504, "M_NOT_YET_UPLOADED")
        # A waiting download is answered when the content arrives.
        waiting = self.get(f"{CLIENT}/download/{server}/{media_id}?timeout_ms=10000")
        r = await self.put(body["content_uri"], b"later")
        self.assertEqual((r.code, r.json), (200, {}))
        r = await waiting
        self.assertEqual((r.code, r.body), (200, b"later"))
        self.assertEqual(r.header("content-disposition"), 'inline; filename="a.txt"')
        # Only once.
        r = await self.put(body["content_uri"], b"again")
        self.assertMatrixError(r, 409, "M_CANNOT_OVERWRITE_MEDIA")

    async def test_refusals(self) -> None:
        body = await self.create()
        bob = await self.register("bob")
        r = await self.put(body["content_uri"], b"mine", token=bob["access_token"])
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.put("mxc://test/neverCreated", b"x")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.put("mxc://other.example/abc", b"x")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # Media uploaded with POST /upload cannot be overwritten either.
        uri = (await self.upload(b"done", "text/plain"))["content_uri"]
        r = await self.put(uri, b"x")
        self.assertMatrixError(r, 409, "M_CANNOT_OVERWRITE_MEDIA")
        self.assertEqual(os.listdir(self.hs.media.files.tmp), [])

    async def test_expiry(self) -> None:
        body = await self.create()
        self.clock.advance(25 * 3600)
        r = await self.put(body["content_uri"], b"late")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        server, media_id = media_id_of(body["content_uri"])
        self.assertIsNone(await self.hs.media.store.get(server, media_id))

    async def test_too_many_pending(self) -> None:
        from conduit_tw.handlers.media import MAX_PENDING_UPLOADS

        for _ in range(MAX_PENDING_UPLOADS):
            await self.create()
        r = await self.request("POST", "/_matrix/media/v1/create", access_token=self.token)
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        # Expired ones no longer count.
        self.clock.advance(25 * 3600)
        await self.create()


class RateLimitTests(MediaTestCase):
    config_overrides = {**OPEN, "rc_media_per_second": 0.1, "rc_media_burst_count": 2}

    async def test_rc_media(self) -> None:
        """Per user on uploads and /create; the first user (an admin) is exempt."""
        bob = (await self.register("bob"))["access_token"]
        await self.upload(b"1", "text/plain", token=bob)
        await self.upload(b"2", "text/plain", token=bob)
        r = await self.request("POST", MEDIA + "/upload", raw_body=b"3", access_token=bob)
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        r = await self.request("POST", "/_matrix/media/v1/create", access_token=bob)
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        await self.upload(b"3", "text/plain")


class ThumbnailTests(MediaTestCase):
    async def thumb(self, media_id: str, query: str, token: str | None = None) -> Response:
        return await self.get(f"{CLIENT}/thumbnail/test/{media_id}?{query}", token=token)

    async def upload_image(self, data: bytes, content_type: str = "image/png") -> str:
        return media_id_of((await self.upload(data, content_type))["content_uri"])[1]

    def size_of(self, r: Response) -> tuple[int, int]:
        self.assertEqual(r.code, 200, r.body)
        return Image.open(io.BytesIO(r.body)).size

    async def test_spec_sizes(self) -> None:
        media_id = await self.upload_image(jpeg(1600, 1200), "image/jpeg")
        expected = {
            (32, 32, "crop"): (32, 32),
            (96, 96, "crop"): (96, 96),
            (320, 240, "scale"): (320, 240),
            (640, 480, "scale"): (640, 480),
            (800, 600, "scale"): (800, 600),
        }
        for (w, h, method), size in expected.items():
            r = await self.thumb(media_id, f"width={w}&height={h}&method={method}")
            self.assertEqual(self.size_of(r), size, (w, h, method))
            self.assertEqual(r.header("content-type"), "image/jpeg")
            self.assertEqual(r.header("content-disposition"), 'inline; filename="thumbnail.jpg"')
            self.assertEqual(r.header("cache-control"), "public, max-age=31536000, immutable")
        variants = await self.hs.media.store.thumbnail_variants("test", media_id)
        self.assertEqual(len(variants), 5)

    async def test_methods_keep_or_change_aspect(self) -> None:
        media_id = await self.upload_image(png(1000, 250))
        # scale keeps 4:1 and fits the box.
        self.assertEqual(self.size_of(await self.thumb(media_id, "width=300&height=200&method=scale")), (320, 80))
        # crop fills the (preset) box exactly.
        self.assertEqual(self.size_of(await self.thumb(media_id, "width=90&height=90&method=crop")), (96, 96))
        # Larger than every preset: the whole image, never smaller than asked.
        self.assertEqual(self.size_of(await self.thumb(media_id, "width=900&height=200")), (1000, 250))

    async def test_never_upscaled(self) -> None:
        media_id = await self.upload_image(png(20, 10))
        self.assertEqual(self.size_of(await self.thumb(media_id, "width=320&height=240")), (20, 10))
        self.assertEqual(self.size_of(await self.thumb(media_id, "width=96&height=96&method=crop")), (10, 10))

    async def test_cached(self) -> None:
        media_id = await self.upload_image(png(500, 500))
        first = await self.thumb(media_id, "width=96&height=96&method=crop")
        calls = []
        from conduit_tw.handlers import thumbnailer

        original = thumbnailer.thumbnail
        self.patch(thumbnailer, "thumbnail", lambda *a: calls.append(a) or original(*a))
        second = await self.thumb(media_id, "width=50&height=50&method=crop")
        self.assertEqual(first.body, second.body)
        self.assertEqual(calls, [])

    async def test_animated(self) -> None:
        media_id = await self.upload_image(animated_gif(200, 200, frames=4), "image/gif")
        r = await self.thumb(media_id, "width=96&height=96&method=crop&animated=true")
        self.assertIn(r.header("content-type"), ("image/webp", "image/gif"))
        im = Image.open(io.BytesIO(r.body))
        self.assertEqual(im.size, (96, 96))
        self.assertTrue(getattr(im, "is_animated", False))
        self.assertEqual(im.n_frames, 4)
        # Without animated=true: a still image.
        r = await self.thumb(media_id, "width=96&height=96&method=crop")
        self.assertEqual(r.header("content-type"), "image/png")
        self.assertFalse(getattr(Image.open(io.BytesIO(r.body)), "is_animated", False))

    async def test_bad_image(self) -> None:
        # A small "image" that is not one: answered as it is.
        media_id = await self.upload_image(b"\x89PNG\r\n\x1a\nnot really", "image/png")
        r = await self.thumb(media_id, "width=32&height=32")
        self.assertEqual((r.code, r.body), (200, b"\x89PNG\r\n\x1a\nnot really"))
        # Not an image type at all: 400.
        media_id = await self.upload_image(b"%PDF-1.4", "application/pdf")
        r = await self.thumb(media_id, "width=32&height=32")
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        # A decodable-looking but truncated image of a type we cannot serve as is.
        data = png(300, 300)[:200]
        media_id = await self.upload_image(data, "image/bmp")
        r = await self.thumb(media_id, "width=32&height=32")
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        # Truncated JPEG.
        media_id = await self.upload_image(jpeg(400, 400)[:300], "image/jpeg")
        r = await self.thumb(media_id, "width=32&height=32")
        self.assertIn(r.code, (200, 400))

    async def test_bad_parameters(self) -> None:
        media_id = await self.upload_image(png(50, 50))
        r = await self.thumb(media_id, "width=0&height=32")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.thumb(media_id, "width=abc&height=32")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.thumb(media_id, "height=32")
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.thumb(media_id, "width=32&height=32&method=stretch")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_decompression_bomb(self) -> None:
        """A tiny PNG announcing 20000x20000 pixels is refused before decoding."""
        buf = io.BytesIO()
        Image.new("1", (20000, 20000)).save(buf, "PNG", optimize=True)
        data = buf.getvalue()
        self.assertLess(len(data), 100_000)
        media_id = await self.upload_image(data)
        r = await self.thumb(media_id, "width=32&height=32")
        self.assertMatrixError(r, 413, "M_TOO_LARGE")


class RemoteMediaRefusedTests(MediaTestCase):
    """
    Remote media without contacting anyone (handlers/remote_media.py; the
    fetching itself is tests/integration/test_federation_media.py).
    """

    config_overrides = {**NO_MEDIA_LIMIT, "allow_federation": False}

    async def test_federation_off(self) -> None:
        r = await self.get(f"{CLIENT}/download/remote.example/abcdef")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get(f"{CLIENT}/thumbnail/remote.example/abcdef?width=32&height=32")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")


class PreventedServerTests(MediaTestCase):
    config_overrides = {**NO_MEDIA_LIMIT, "prevent_media_downloads_from": ["remote.example"]}

    async def test_prevented(self) -> None:
        r = await self.get(f"{CLIENT}/download/remote.example/abcdef")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get(f"{CLIENT}/download/REMOTE.example/abcdef")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
