"""
URL previews (client-server-api, C{GET /_matrix/client/v1/media/preview_url}).

Off unless the operator allows URLs with the C{url_preview_*} keys
(conduwuit's semantics): C{url_preview_domain_explicit_denylist} wins;
then a URL is allowed when its host is in
C{url_preview_domain_explicit_allowlist}, contains an entry of
C{url_preview_domain_contains_allowlist}, or the URL contains an entry of
C{url_preview_url_contains_allowlist}; C{"*"} in any allowlist allows
everything. With C{url_preview_check_root_domain} the domain lists also
match the host's root domain (its last two labels).

Pages are fetched with the shared outgoing client (C{hs.http_client}), so
C{ip_range_denylist} is enforced after DNS resolution, redirects are not
followed, and at most C{url_preview_max_spider_size} bytes are read. The
answer is the page's OpenGraph C{og:*} properties (with C{<title>} and
the C{description} meta as fallbacks). Answers are cached in memory
for an hour.

C{og:image} (client-server-api C{GET /preview_url}: an C{mxc://} URI) is
fetched with the same client and limits as the page (C{ip_range_denylist}
after resolution, no redirects, at most C{url_preview_max_spider_size}
bytes, the domain denylist; it may be on another host than the page, as
images usually are on a CDN), streamed into the media directory, checked
to be an image Pillow can read (its header only, the decompression-bomb
limits of the thumbnailer apply) and stored as local media uploaded by
the requesting user. The answer then carries C{og:image},
C{og:image:type} (from the decoded format, not the remote server's
header), C{og:image:width}, C{og:image:height} and C{matrix:image:size}.
An image that cannot be fetched or read is left out; the rest of the
preview is still answered.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

from twisted.internet.threads import deferToThread

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.handlers import thumbnailer
from conduit_tw.http.errors import DeniedDestinationError, ResponseTooLargeError
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.url_preview")

CACHE_MS = 3600 * 1000
CACHE_SIZE = 1000
FETCH_TIMEOUT_S = 10.0
_MAX_VALUE = 1000


class _OpenGraph(HTMLParser):
    """Collects C{<meta property="og:...">}, C{<title>} and the description meta."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs if v is not None}
        if tag == "meta":
            prop = a.get("property") or a.get("name") or ""
            content = a.get("content")
            if content is None:
                return
            if prop.startswith("og:") and prop not in self.og:
                self.og[prop] = content[:_MAX_VALUE]
            elif prop.lower() == "description" and self.description is None:
                self.description = content[:_MAX_VALUE]
        elif tag == "title" and self.title is None:
            self._in_title = True
            self.title = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and self.title is not None and len(self.title) < _MAX_VALUE:
            self.title += data


def parse_html(body: bytes) -> dict[str, Any]:
    """The OpenGraph data of an HTML page (never C{og:image}: not an mxc URI)."""
    return parse_page(body)[0]


def parse_page(body: bytes) -> tuple[dict[str, Any], str | None]:
    """L{parse_html} and the page's C{og:image} URL (as written in the page)."""
    parser = _OpenGraph()
    try:
        parser.feed(body.decode("utf-8", "replace"))
        parser.close()
    except Exception:
        pass
    result: dict[str, Any] = {
        k: v for k, v in parser.og.items() if not k.startswith("og:image")
    }
    if "og:title" not in result and parser.title:
        result["og:title"] = parser.title.strip()
    if "og:description" not in result and parser.description:
        result["og:description"] = parser.description
    image = next(
        (parser.og[k] for k in ("og:image", "og:image:url", "og:image:secure_url") if parser.og.get(k)),
        None,
    )
    return result, image.strip() if image else None


class URLPreviewer:
    """See the module docstring."""

    def __init__(
        self, config: Any, http_client: Any, clock_ms: Callable[[], int], media: Any = None
    ) -> None:
        self._explicit_deny = {d.lower() for d in config.url_preview_domain_explicit_denylist}
        self._explicit_allow = {d.lower() for d in config.url_preview_domain_explicit_allowlist}
        self._contains_allow = [d.lower() for d in config.url_preview_domain_contains_allowlist]
        self._url_contains = list(config.url_preview_url_contains_allowlist)
        self._check_root = config.url_preview_check_root_domain
        self._max_size = config.url_preview_max_spider_size
        self._http = http_client
        self._clock_ms = clock_ms
        #: The L{conduit_tw.handlers.media.MediaHandler} images are stored
        #: with (None: no C{og:image}).
        self._media = media
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}

    @property
    def enabled(self) -> bool:
        """Whether any URL can be allowed at all."""
        return bool(self._explicit_allow or self._contains_allow or self._url_contains)

    def _hosts(self, url: str) -> list[str] | None:
        """The host (and root domain) the domain lists match, or None if not http(s)."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not host:
            return None
        hosts = [host]
        if self._check_root:
            labels = host.split(".")
            if len(labels) > 2:
                hosts.append(".".join(labels[-2:]))
        return hosts

    def _denied(self, hosts: list[str]) -> bool:
        return "*" in self._explicit_deny or any(h in self._explicit_deny for h in hosts)

    def allowed(self, url: str) -> bool:
        """Whether the allowlists let C{url} be previewed."""
        hosts = self._hosts(url)
        if hosts is None or self._denied(hosts):
            return False
        if "*" in self._explicit_allow or "*" in self._contains_allow or "*" in self._url_contains:
            return True
        if any(h in self._explicit_allow for h in hosts):
            return True
        if any(c in h for c in self._contains_allow for h in hosts):
            return True
        return any(c in url for c in self._url_contains)

    async def preview(self, url: str, user_id: str) -> dict[str, Any]:
        """
        The preview of C{url}.

        @raise MatrixError: 403 M_FORBIDDEN when not allowed (or the
            address is denied), 502 M_UNKNOWN when the fetch fails.
        """
        if not self.allowed(url):
            raise forbidden("URL previews are not allowed for this URL")
        now = self._clock_ms()
        cached = self._cache.get(url)
        if cached is not None and now - cached[0] < CACHE_MS:
            return dict(cached[1])
        try:
            response = await self._http.request(
                "GET", url, max_size=self._max_size, timeout=FETCH_TIMEOUT_S,
                headers={"Accept": "text/html, */*;q=0.5"},
            )
        except DeniedDestinationError:
            raise forbidden("URL previews of this address are not allowed") from None
        except ResponseTooLargeError:
            raise MatrixError(502, Codes.TOO_LARGE, "The page is too large to preview") from None
        except Exception:
            # OutgoingRequestError, connection and TLS errors, timeouts.
            raise MatrixError(502, Codes.UNKNOWN, "Could not fetch the URL") from None
        if response.code != 200:
            raise MatrixError(502, Codes.UNKNOWN, f"The URL answered {response.code}")
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        result: dict[str, Any] = {}
        if content_type.split(b";")[0].strip().lower() in (b"text/html", b"application/xhtml+xml"):
            result, image_url = parse_page(response.body)
            if image_url and self._media is not None:
                result.update(await self._image(urljoin(url, image_url), user_id))
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[url] = (now, result)
        return dict(result)

    async def _image(self, url: str, user_id: str) -> dict[str, Any]:
        """
        Fetch and store a page's C{og:image} (see the module docstring);
        the C{og:image*} keys of the answer, or nothing.
        """
        hosts = self._hosts(url)
        if hosts is None or self._denied(hosts):
            return {}
        spool = self._media.files.spool()
        try:
            response = await self._http.request(
                "GET", url, max_size=self._max_size, timeout=FETCH_TIMEOUT_S,
                headers={"Accept": "image/*"}, sink=spool,
            )
            if response.code != 200 or spool.out_of_space or spool.size == 0:
                return {}
            spool.seek(0)
            info = await deferToThread(thumbnailer.inspect, spool)
            if info.content_type is None:
                return {}
            mxc = await self._media.upload(user_id, spool, info.content_type, None)
        except (thumbnailer.CannotThumbnail, thumbnailer.TooLarge, MatrixError) as e:
            log.debug("Preview image {url} refused: {e}", url=url, e=str(e))
            return {}
        except Exception as e:
            # Denied addresses, too large, timeouts, connection errors.
            log.debug("Preview image {url} not fetched: {e}", url=url, e=repr(e))
            return {}
        finally:
            spool.close()  # deletes the temporary file unless it was stored
        return {
            "og:image": mxc,
            "og:image:type": info.content_type,
            "og:image:width": info.width,
            "og:image:height": info.height,
            "matrix:image:size": spool.size,
        }
