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
the C{description} meta as fallbacks). C{og:image} is not fetched yet, so
it is left out (it must be an C{mxc://} URI). Answers are cached in memory
for an hour.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any, Callable
from urllib.parse import urlsplit

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.http.errors import DeniedDestinationError, ResponseTooLargeError

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
    return result


class URLPreviewer:
    """See the module docstring."""

    def __init__(self, config: Any, http_client: Any, clock_ms: Callable[[], int]) -> None:
        self._explicit_deny = {d.lower() for d in config.url_preview_domain_explicit_denylist}
        self._explicit_allow = {d.lower() for d in config.url_preview_domain_explicit_allowlist}
        self._contains_allow = [d.lower() for d in config.url_preview_domain_contains_allowlist]
        self._url_contains = list(config.url_preview_url_contains_allowlist)
        self._check_root = config.url_preview_check_root_domain
        self._max_size = config.url_preview_max_spider_size
        self._http = http_client
        self._clock_ms = clock_ms
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}

    @property
    def enabled(self) -> bool:
        """Whether any URL can be allowed at all."""
        return bool(self._explicit_allow or self._contains_allow or self._url_contains)

    def allowed(self, url: str) -> bool:
        """Whether the allowlists let C{url} be previewed."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host:
            return False
        hosts = [host]
        if self._check_root:
            labels = host.split(".")
            if len(labels) > 2:
                hosts.append(".".join(labels[-2:]))
        if "*" in self._explicit_deny or any(h in self._explicit_deny for h in hosts):
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
            result = parse_html(response.body)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[url] = (now, result)
        return dict(result)
