"""URL previews (handlers/url_preview.py): off by default, allowlists, ip_range_denylist."""

from __future__ import annotations

from types import SimpleNamespace
import os
from urllib.parse import quote

from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from conduit_tw.handlers.url_preview import URLPreviewer, parse_html
from tests.api.test_media import CLIENT, NO_MEDIA_LIMIT, MediaTestCase

PAGE = b"""<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="The &amp; Title">
<meta property="og:description" content="A page">
<meta property="og:image" content="http://127.0.0.1/x.png">
</head><body>hello</body></html>"""


def previewer(**lists: object) -> URLPreviewer:
    config = SimpleNamespace(
        url_preview_domain_explicit_denylist=[], url_preview_domain_explicit_allowlist=[],
        url_preview_domain_contains_allowlist=[], url_preview_url_contains_allowlist=[],
        url_preview_check_root_domain=False, url_preview_max_spider_size=384_000,
    )
    for k, v in lists.items():
        setattr(config, "url_preview_" + k, v)
    return URLPreviewer(config, None, lambda: 0)


class AllowlistTests(unittest.TestCase):
    def test_off_by_default(self) -> None:
        p = previewer()
        self.assertFalse(p.enabled)
        self.assertFalse(p.allowed("https://matrix.org/"))

    def test_lists(self) -> None:
        p = previewer(
            domain_explicit_allowlist=["matrix.org"], domain_contains_allowlist=["wiki"],
            url_contains_allowlist=["example.com/ok/"], domain_explicit_denylist=["bad.wiki.org"],
        )
        self.assertTrue(p.allowed("https://matrix.org/blog"))
        self.assertFalse(p.allowed("https://www.matrix.org/blog"))
        self.assertTrue(p.allowed("https://en.wikipedia.org/x"))
        self.assertFalse(p.allowed("https://bad.wiki.org/x"))
        self.assertTrue(p.allowed("https://example.com/ok/page"))
        self.assertFalse(p.allowed("https://example.com/other"))
        self.assertFalse(p.allowed("ftp://matrix.org/"))
        self.assertFalse(p.allowed("not a url"))

    def test_root_domain_and_star(self) -> None:
        p = previewer(domain_explicit_allowlist=["wikipedia.org"], check_root_domain=True)
        self.assertTrue(p.allowed("https://en.m.wikipedia.org/"))
        p = previewer(domain_explicit_allowlist=["*"], domain_explicit_denylist=["evil.org"])
        self.assertTrue(p.allowed("https://anything.net/"))
        self.assertFalse(p.allowed("https://evil.org/"))

    def test_parse_html(self) -> None:
        self.assertEqual(
            parse_html(PAGE), {"og:title": "The & Title", "og:description": "A page"}
        )
        self.assertEqual(parse_html(b"<title> T </title>"), {"og:title": "T"})
        self.assertEqual(parse_html(b"\xff\xfe<<<>"), {})


class _PageServer:
    def __init__(self, test: unittest.TestCase) -> None:
        root = Resource()
        root.putChild(b"page", Data(PAGE, "text/html; charset=utf-8"))
        root.putChild(b"file", Data(b"\x00" * 10, "application/octet-stream"))
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        test.addCleanup(self.port.stopListening)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/{path}"


class PreviewDisabledTests(MediaTestCase):
    async def test_forbidden_by_default(self) -> None:
        r = await self.get(f"{CLIENT}/preview_url?url={quote('https://matrix.org/')}")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.get(f"{CLIENT}/preview_url")
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")


class PreviewDeniedRangeTests(MediaTestCase):
    """Allowed by the lists, but 127.0.0.1 is in the default ip_range_denylist."""

    config_overrides = {**NO_MEDIA_LIMIT, "url_preview_domain_explicit_allowlist": ["*"]}

    async def test_denied_after_resolution(self) -> None:
        pages = _PageServer(self)
        for url in (pages.url("page"), pages.url("page").replace("127.0.0.1", "localhost")):
            r = await self.get(f"{CLIENT}/preview_url?url={quote(url)}")
            self.assertMatrixError(r, 403, "M_FORBIDDEN")


class PreviewFetchTests(MediaTestCase):
    config_overrides = {
        **NO_MEDIA_LIMIT, "url_preview_domain_explicit_allowlist": ["127.0.0.1"],
        "ip_range_denylist": [],
    }

    async def test_preview(self) -> None:
        pages = _PageServer(self)
        r = await self.get(f"{CLIENT}/preview_url?url={quote(pages.url('page'))}")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"og:title": "The & Title", "og:description": "A page"})
        r = await self.get(f"/_matrix/media/v3/preview_url?url={quote(pages.url('file'))}")
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.get(f"{CLIENT}/preview_url?url={quote(pages.url('missing'))}")
        self.assertMatrixError(r, 502, "M_UNKNOWN")


def _noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress (random pixels)."""
    import io
    import os as _os

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), _os.urandom(width * height * 3)).save(buf, "PNG")
    return buf.getvalue()


def _page(image_url: str) -> bytes:
    return (
        '<html><head><meta property="og:title" content="With image">'
        f'<meta property="og:image" content="{image_url}"></head></html>'
    ).encode()


class _ImagePages:
    """Pages whose og:image is a PNG (relative), a large PNG, a non-image, or elsewhere."""

    def __init__(self, test: unittest.TestCase, other_host: str = "127.0.0.2") -> None:
        from tests.api.test_media import png

        self.image = png(60, 40, (10, 200, 30))
        root = Resource()
        root.putChild(b"img.png", Data(self.image, "application/octet-stream"))
        root.putChild(b"big.png", Data(_noise_png(200, 200), "image/png"))
        root.putChild(b"text.png", Data(b"not an image at all", "image/png"))
        root.putChild(b"relative", Data(_page("/img.png"), "text/html"))
        root.putChild(b"big", Data(_page("big.png"), "text/html"))
        root.putChild(b"text", Data(_page("text.png"), "text/html"))
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        test.addCleanup(self.port.stopListening)
        # The same images on another loopback address (another "host").
        other = reactor.listenTCP(0, Site(root), interface=other_host)
        test.addCleanup(other.stopListening)
        n = other.getHost().port
        root.putChild(b"elsewhere", Data(_page(f"http://{other_host}:{n}/img.png"), "text/html"))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/{path}"


class _PreviewImageCase(MediaTestCase):
    config_overrides = {
        **NO_MEDIA_LIMIT, "url_preview_domain_explicit_allowlist": ["127.0.0.1"],
        "ip_range_denylist": ["127.0.0.2/32"], "url_preview_max_spider_size": 20_000,
    }

    async def preview(self, path: str, pages: _ImagePages) -> dict:
        r = await self.get(f"{CLIENT}/preview_url?url={quote(pages.url(path))}")
        self.assertEqual(r.code, 200, r.body)
        return r.json


class PreviewImageTests(_PreviewImageCase):
    """og:image fetched, stored as local media and answered as mxc:// (real HTTP server)."""

    async def test_image_stored_as_media(self) -> None:
        pages = _ImagePages(self)
        body = await self.preview("relative", pages)
        self.assertEqual(body["og:title"], "With image")
        self.assertTrue(body["og:image"].startswith("mxc://test/"), body)
        # The type comes from the decoded image, not the remote header.
        self.assertEqual(
            {k: body[k] for k in ("og:image:type", "og:image:width", "og:image:height")},
            {"og:image:type": "image/png", "og:image:width": 60, "og:image:height": 40},
        )
        self.assertEqual(body["matrix:image:size"], len(pages.image))
        media_id = body["og:image"].rpartition("/")[2]
        r = await self.get(f"{CLIENT}/download/test/{media_id}")
        self.assertEqual((r.code, r.body), (200, pages.image))
        self.assertEqual(r.header("content-type"), "image/png")
        meta = await self.hs.media.store.get("test", media_id)
        self.assertEqual(meta["uploader"], self.user_id)

    async def test_unusable_images_left_out(self) -> None:
        pages = _ImagePages(self)
        for path in ("big", "text", "elsewhere"):
            body = await self.preview(path, pages)
            self.assertEqual(body, {"og:title": "With image"}, path)
        # Nothing was stored, no temporary file left.
        self.assertEqual(await self.hs.media.store.all_media(), [])
        self.assertEqual(os.listdir(self.hs.media.files.tmp), [])


class PreviewImageElsewhereTests(_PreviewImageCase):
    """The image host is not in ip_range_denylist: the image is fetched from it."""

    config_overrides = {**_PreviewImageCase.config_overrides, "ip_range_denylist": []}

    async def test_image_on_another_host(self) -> None:
        body = await self.preview("elsewhere", _ImagePages(self))
        self.assertTrue(body["og:image"].startswith("mxc://test/"), body)
