"""
Remote media for our clients (client-server-api "Content repository",
server-server-api "Content Repository"): L{RemoteMediaFetcher.fetch} is the
C{fetch_remote} hook of L{conduit_tw.handlers.media.MediaHandler}.

A media id of another server is fetched once, through
C{GET /_matrix/federation/v1/media/download/{mediaId}} (signed; a
C{multipart/mixed} answer whose second part is the bytes or a C{Location}
followed with the shared outgoing HTTP client, so C{ip_range_denylist}
applies), falling back to the legacy unauthenticated
C{GET /_matrix/media/v3/download/{serverName}/{mediaId}} for servers that
do not know the new endpoint. Bodies stream to a temporary file in the
media directory (at most C{max_request_size} bytes of media), then move
into place under the media's own key; the metadata (content type, file
name, size) goes to the media store marked C{"remote": true}. Later
downloads are served from that cache; one fetch per media id is in flight
at a time.

Thumbnails of remote media are generated here from the cached original,
like those of local media (docs/media.md): no second request to the
remote server, the same sizes and methods, and the thumbnail is cached too.

C{prevent_media_downloads_from} refuses a server's media with 404
M_NOT_FOUND without contacting it (already cached copies included, as
operators list servers whose media they no longer want to show);
C{allow_federation = false} makes all remote media 404.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Awaitable, BinaryIO, Callable, Iterable
from urllib.parse import quote

from twisted.internet.defer import CancelledError
from twisted.internet.threads import deferToThread

from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.federation import multipart
from conduit_tw.federation.errors import FederationDisabled, NotReachable, RemoteError
from conduit_tw.handlers.media import clean_content_type
from conduit_tw.http.errors import ResponseTooLargeError
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.media import MediaStore
from conduit_tw.storage.stores.media_files import MediaFiles, UploadSpool, media_key
from conduit_tw.util.linearizer import Linearizer

log = get_logger("conduit_tw.remote_media")

#: How long the remote server may wait for a pending upload (ms), as asked.
REMOTE_WAIT_MS = 20_000
#: Total seconds for one fetch (connect, discovery and the whole body).
FETCH_TIMEOUT = 120.0
#: Longest file name kept from a remote C{Content-Disposition}.
MAX_FILENAME = 1024
_COPY_CHUNK = 64 * 1024

GetStream = Callable[..., Awaitable[Any]]


def _falls_back(error: RemoteError) -> bool:
    """
    Whether an answer to the federation endpoint means "unknown endpoint"
    (servers before Matrix 1.11): then the legacy download is tried.
    """
    if error.code == 404:
        return error.errcode != Codes.NOT_FOUND
    return error.code in (400, 405, 501)


def _clean_filename(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = "".join(ch for ch in raw if ch.isprintable() and ch not in "/\\")[:MAX_FILENAME]
    return name or None


def _copy_range(source: BinaryIO, start: int, end: int, target: UploadSpool) -> None:
    """Thread side: copy C{source[start:end]} into C{target}."""
    source.seek(start)
    left = end - start
    while left > 0:
        chunk = source.read(min(_COPY_CHUNK, left))
        if not chunk:
            raise multipart.MultipartError("truncated body")
        target.write(chunk)
        left -= len(chunk)


class RemoteMediaFetcher:
    """
    See the module docstring.

    @param get_stream: C{FederationClient.get_stream}.
    @param http_request: C{OutgoingHTTPClient.request} (follows C{Location}).
    @param max_size: largest media accepted (C{max_request_size}).
    @param prevent_from: C{prevent_media_downloads_from}.
    @param enabled: C{allow_federation}.
    """

    def __init__(
        self,
        store: MediaStore,
        files: MediaFiles,
        get_stream: GetStream,
        http_request: Callable[..., Awaitable[Any]],
        clock_ms: Callable[[], int],
        max_size: int,
        prevent_from: Iterable[str] = (),
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.files = files
        self._get_stream = get_stream
        self._http_request = http_request
        self._clock_ms = clock_ms
        self.max_size = max_size
        self.prevent_from = frozenset(n.lower() for n in prevent_from)
        self.enabled = enabled
        self._in_flight = Linearizer("remote_media")

    async def fetch(self, server_name: str, media_id: str) -> dict[str, Any]:
        """
        The metadata of remote media, fetched and cached first if needed;
        its file is then under C{media_key(server_name, media_id)}.

        @raise MatrixError: 404 M_NOT_FOUND (refused, unknown there,
            federation off), 502 M_TOO_LARGE (over C{max_request_size}),
            502 M_UNKNOWN (the server could not be reached or answered
            nonsense).
        """
        if not self.enabled:
            raise not_found("Remote media is not available (federation is disabled)")
        if server_name.lower() in self.prevent_from:
            raise not_found("Media from this server is not available here")
        async with self._in_flight.queue((server_name, media_id)):
            meta = await self.store.get(server_name, media_id)
            if meta is not None and os.path.exists(self.files.path_for(media_key(server_name, media_id))):
                return meta
            return await self._download(server_name, media_id)

    async def _download(self, server_name: str, media_id: str) -> dict[str, Any]:
        spool = self.files.spool()
        try:
            content_type, filename = await self._fetch_into(server_name, media_id, spool)
            if spool.out_of_space:
                raise MatrixError(502, Codes.TOO_LARGE, "Not enough free disk space for this media")
            size = spool.size
            try:
                await self.files.commit(spool, media_key(server_name, media_id))
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise MatrixError(502, Codes.TOO_LARGE, "Not enough free disk space") from None
                raise
        finally:
            spool.close()
        meta: dict[str, Any] = {
            "content_type": content_type or "application/octet-stream",
            "size": size,
            "created_ts": self._clock_ms(),
            "remote": True,
        }
        if filename:
            meta["filename"] = filename
        await self.store.put(server_name, media_id, meta)
        log.info("Cached remote media {server}/{id} ({size} bytes)",
                 server=server_name, id=media_id, size=size)
        return meta

    async def _fetch_into(
        self, server_name: str, media_id: str, spool: UploadSpool
    ) -> tuple[str | None, str | None]:
        """Fetch into C{spool}; returns C{(content type, file name)}."""
        args = {"timeout_ms": str(REMOTE_WAIT_MS)}
        # Room for the framing around the bytes (bounded by multipart.HEAD_LIMIT).
        framed_max = self.max_size + multipart.HEAD_LIMIT + multipart.TAIL_LIMIT
        try:
            try:
                raw = self.files.spool()
                try:
                    response = await self._get_stream(
                        server_name, "/_matrix/federation/v1/media/download/" + quote(media_id, safe=""),
                        args, sink=raw, max_size=framed_max, timeout=FETCH_TIMEOUT,
                    )
                    return await self._unpack(server_name, response, raw, spool)
                finally:
                    raw.close()
            except RemoteError as e:
                if not _falls_back(e):
                    raise
                log.info("{server} has no federation media endpoint ({code}); legacy download",
                         server=server_name, code=e.code)
            response = await self._get_stream(
                server_name,
                f"/_matrix/media/v3/download/{quote(server_name, safe=':')}/{quote(media_id, safe='')}",
                {**args, "allow_remote": "false", "allow_redirect": "true"},
                sink=spool, max_size=self.max_size, timeout=FETCH_TIMEOUT,
            )
            if 300 <= response.code < 400:
                return await self._follow(server_name, _header(response, "location"), spool)
            if response.code != 200:
                raise MatrixError(502, Codes.UNKNOWN, "Unexpected answer from the remote server")
            return _described(response)
        except FederationDisabled:
            raise not_found("Remote media is not available from this server") from None
        except RemoteError as e:
            if e.code == 404:
                raise not_found("Unknown media") from None
            if e.code == 504 and e.errcode == Codes.NOT_YET_UPLOADED:
                raise MatrixError(504, Codes.NOT_YET_UPLOADED, "Content has not yet been uploaded") from None
            if e.code == 502 and e.errcode == Codes.TOO_LARGE:
                raise MatrixError(502, Codes.TOO_LARGE, "Remote media is too large") from None
            log.info("Fetching {server}/{id} failed: {e}", server=server_name, id=media_id, e=e)
            raise MatrixError(502, Codes.UNKNOWN, "The remote server could not serve the media") from None
        except NotReachable as e:
            if isinstance(e.__cause__, ResponseTooLargeError):
                raise MatrixError(502, Codes.TOO_LARGE, "Remote media is larger than allowed") from None
            log.info("Fetching {server}/{id} failed: {e}", server=server_name, id=media_id, e=e)
            raise MatrixError(502, Codes.UNKNOWN, "The remote server could not be reached") from None

    async def _unpack(
        self, server_name: str, response: Any, raw: UploadSpool, spool: UploadSpool
    ) -> tuple[str | None, str | None]:
        """The federation answer in C{raw}: its media bytes (or C{Location}) into C{spool}."""
        if response.code != 200:
            raise MatrixError(502, Codes.UNKNOWN, "Unexpected answer from the remote server")
        try:
            boundary = multipart.boundary_of(_header(response, "content-type"))
            if boundary is None:
                raise multipart.MultipartError("not multipart/mixed")
            part = await deferToThread(multipart.parse, raw, boundary)
        except multipart.MultipartError as e:
            log.info("Malformed media answer from {server}: {e}", server=server_name, e=e)
            raise MatrixError(502, Codes.UNKNOWN, "Malformed answer from the remote server") from None
        if part.location is not None:
            return await self._follow(server_name, part.location, spool)
        if part.end - part.start > self.max_size:
            raise MatrixError(502, Codes.TOO_LARGE, "Remote media is larger than allowed")
        await deferToThread(_copy_range, raw, part.start, part.end, spool)
        return (
            clean_content_type(part.headers.get("content-type")),
            _clean_filename(multipart.disposition_filename(part.headers.get("content-disposition"))),
        )

    async def _follow(
        self, server_name: str, location: str | None, spool: UploadSpool
    ) -> tuple[str | None, str | None]:
        """GET a C{Location} with the shared client (ip_range_denylist applies), one hop."""
        if not location or not location.startswith(("https://", "http://")):
            raise MatrixError(502, Codes.UNKNOWN, "Unusable media location from the remote server")
        try:
            response = await self._http_request(
                "GET", location, sink=spool, max_size=self.max_size, timeout=FETCH_TIMEOUT
            )
        except CancelledError:
            raise
        except ResponseTooLargeError:
            raise MatrixError(502, Codes.TOO_LARGE, "Remote media is larger than allowed") from None
        except Exception as e:
            log.info("Media location of {server} failed: {e}", server=server_name, e=e)
            raise MatrixError(502, Codes.UNKNOWN, "The media location could not be fetched") from None
        if response.code == 404:
            raise not_found("Unknown media")
        if response.code != 200:
            raise MatrixError(502, Codes.UNKNOWN, "The media location did not answer with it")
        return _described(response)


def _header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    if not values:
        return None
    value = values[0]
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _described(response: Any) -> tuple[str | None, str | None]:
    """C{(content type, file name)} from a plain download's headers."""
    return (
        clean_content_type(_header(response, "content-type")),
        _clean_filename(multipart.disposition_filename(_header(response, "content-disposition"))),
    )
