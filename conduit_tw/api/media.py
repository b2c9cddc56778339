"""
Content repository endpoints (client-server-api "Content repository";
handlers/media.py, docs/media.md):

- C{POST /_matrix/media/v3/upload}, C{POST /_matrix/media/v1/create},
  C{PUT /_matrix/media/v3/upload/{serverName}/{mediaId}}: bodies are
  streamed to a file in the media directory while they arrive
  (C{body_spool}), limited by C{max_request_size}.
- Authenticated media (v1.11): C{GET /_matrix/client/v1/media/download},
  C{/thumbnail}, C{/config}, C{/preview_url}.
- Legacy C{/_matrix/media/v3} (and C{r0}) C{download}/C{thumbnail}:
  unauthenticated, only for media uploaded while new media was not frozen
  (handlers/media.py); C{config} and C{preview_url} there need a token,
  as their spec says.

Downloads and thumbnails carry the spec's sandboxing
C{Content-Security-Policy}, C{Cross-Origin-Resource-Policy: cross-origin}
("Content repository"), a year-long immutable C{Cache-Control}, and a
C{Content-Disposition} that is C{inline} only for the types of "Serving
inline content".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from conduit_tw.api.resource import FileResponse, MatrixRequest
from conduit_tw.api.router import Handler, Router
from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.media import MediaContent, MediaHandler, clean_content_type
from conduit_tw.storage.stores.media_files import UploadSpool

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: client-server-api "Serving inline content".
INLINE_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

MEDIA_HEADERS: dict[bytes, bytes] = {
    b"Cache-Control": b"public, max-age=31536000, immutable",
    b"Content-Security-Policy": (
        b"sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
        b"style-src 'unsafe-inline'; object-src 'self';"
    ),
    b"Cross-Origin-Resource-Policy": b"cross-origin",
    b"X-Content-Type-Options": b"nosniff",
}

_TOKEN_FILENAME = re.compile(r"[A-Za-z0-9!#$&+.^_`|~ -]+\Z")
MAX_FILENAME = 1024
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}


def content_disposition(content_type: str, filename: str | None, inline: bool | None = None) -> bytes:
    """
    C{inline} for the spec's safe types, else C{attachment}; the file name
    quoted when plain ASCII, else as RFC 6266 C{filename*} (UTF-8,
    percent-encoded), so no byte of it can break the header.
    """
    if inline is None:
        inline = content_type.split(";")[0].strip().lower() in INLINE_TYPES
    value = "inline" if inline else "attachment"
    if filename:
        if _TOKEN_FILENAME.match(filename):
            value += f'; filename="{filename}"'
        else:
            value += "; filename*=utf-8''" + quote(filename, safe="")
    return value.encode("ascii")


def clean_filename(raw: str | None) -> str | None:
    """The C{filename} query argument without control characters; 400 when too long."""
    if raw is None:
        return None
    name = "".join(ch for ch in raw if ch.isprintable())
    if len(name) > MAX_FILENAME:
        raise MatrixError(400, Codes.INVALID_PARAM, "filename is too long")
    return name or None


def media_response(content: MediaContent, disposition: bytes) -> FileResponse:
    """A download/thumbnail answer with the media headers."""
    headers = dict(MEDIA_HEADERS)
    headers[b"Content-Type"] = content.content_type.encode("latin-1", "replace")
    headers[b"Content-Disposition"] = disposition
    return FileResponse(content.file, content.size, headers)


async def thumbnail_of(
    request: MatrixRequest, media: MediaHandler, server_name: str, media_id: str,
    legacy: bool = False,
) -> MediaContent:
    """A thumbnail as the query arguments (C{width}, C{height}, C{method}, ...) ask."""
    width = request.int_arg("width", None, minimum=1)
    height = request.int_arg("height", None, minimum=1)
    if width is None or height is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "width and height are required")
    return await media.thumbnail(
        server_name, media_id, width, height, request.arg("method", "scale") or "scale",
        animated=request.bool_arg("animated", False),
        timeout_ms=request.int_arg("timeout_ms", None, minimum=0), legacy=legacy,
    )


def thumbnail_disposition(content: MediaContent) -> bytes:
    """C{inline; filename="thumbnail.<ext>"}."""
    ext = _EXTENSIONS.get(content.content_type, "bin")
    return content_disposition(content.content_type, f"thumbnail.{ext}", inline=True)


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the content repository endpoints."""
    media = hs.media
    limiter = hs.media_ratelimit

    def spool_for(length: int | None) -> UploadSpool:
        if length is not None and not media.files.has_space_for(length):
            raise MatrixError(413, Codes.TOO_LARGE, "Not enough free disk space for this upload")
        return media.files.spool()

    def the_spool(request: MatrixRequest) -> UploadSpool:
        spool = request.content
        if not isinstance(spool, UploadSpool):
            raise MatrixError(400, Codes.UNKNOWN, "No upload body")
        return spool

    async def uploader(request: MatrixRequest) -> str:
        requester = await hs.auth.get_requester(request)
        await hs.ratelimit.check_requester(limiter, requester)
        return requester.user_id

    async def upload(request: MatrixRequest) -> Any:
        try:
            user_id = await uploader(request)
            uri = await media.upload(
                user_id, the_spool(request),
                clean_content_type(request.getHeader(b"content-type")),
                clean_filename(request.arg("filename")),
            )
        except BaseException:
            # Refused: delete the spooled body before answering, however
            # late the storage answered (never after the response).
            _discard(request)
            raise
        return {"content_uri": uri}

    async def create(request: MatrixRequest) -> Any:
        user_id = await uploader(request)
        uri, expires_at = await media.create(user_id)
        return {"content_uri": uri, "unused_expires_at": expires_at}

    async def upload_to(request: MatrixRequest, server_name: str, media_id: str) -> Any:
        try:
            requester = await hs.auth.get_requester(request)
            await media.upload_to(
                requester.user_id, server_name, media_id, the_spool(request),
                clean_content_type(request.getHeader(b"content-type")),
                clean_filename(request.arg("filename")),
            )
        except BaseException:
            _discard(request)
            raise
        return {}

    def _discard(request: MatrixRequest) -> None:
        spool = request.content
        if isinstance(spool, UploadSpool):
            spool.close()

    upload.body_spool = spool_for  # type: ignore[attr-defined]
    upload_to.body_spool = spool_for  # type: ignore[attr-defined]

    async def download(
        request: MatrixRequest, server_name: str, media_id: str, file_name: str | None = None,
        legacy: bool = False,
    ) -> FileResponse:
        if legacy and request.arg("allow_remote") == "false" and server_name != hs.server_name:
            raise MatrixError(404, Codes.NOT_FOUND, "Remote media not requested")
        content = await media.download(
            server_name, media_id, request.int_arg("timeout_ms", None, minimum=0), legacy=legacy
        )
        # nio asks for .../{mediaId}/ (an empty name): the stored name then.
        name = file_name or content.filename
        return media_response(content, content_disposition(content.content_type, name))

    async def thumbnail(
        request: MatrixRequest, server_name: str, media_id: str, legacy: bool = False
    ) -> FileResponse:
        content = await thumbnail_of(request, media, server_name, media_id, legacy)
        return media_response(content, thumbnail_disposition(content))

    async def authed_download(request: MatrixRequest, **kw: str) -> FileResponse:
        await hs.auth.get_requester(request, allow_guest=True)
        return await download(request, **kw)

    async def authed_thumbnail(request: MatrixRequest, **kw: str) -> FileResponse:
        await hs.auth.get_requester(request, allow_guest=True)
        return await thumbnail(request, **kw)

    async def legacy_download(request: MatrixRequest, **kw: str) -> FileResponse:
        return await download(request, legacy=True, **kw)

    async def legacy_thumbnail(request: MatrixRequest, **kw: str) -> FileResponse:
        return await thumbnail(request, legacy=True, **kw)

    async def config(request: MatrixRequest) -> Any:
        await hs.auth.get_requester(request, allow_guest=True)
        return {"m.upload.size": hs.config.max_request_size}

    async def preview_url(request: MatrixRequest) -> Any:
        requester = await hs.auth.get_requester(request)
        url = request.arg("url")
        if not url:
            raise MatrixError(400, Codes.MISSING_PARAM, "url is required")
        await hs.ratelimit.check_requester(limiter, requester)
        return await hs.url_previews.preview(url, requester.user_id)

    for version in ("v3", "r0", "v1"):
        router.add("POST", f"/_matrix/media/{version}/upload", upload)
    router.add("POST", "/_matrix/media/v1/create", create)
    router.add("PUT", "/_matrix/media/v3/upload/{server_name}/{media_id}", upload_to)

    def mount(prefix: str, download_handler: Handler, thumbnail_handler: Handler) -> None:
        media_path = f"{prefix}/download/{{server_name}}/{{media_id}}"
        router.add("GET", media_path, download_handler)
        router.add("GET", media_path + "/{file_name}", download_handler)
        router.add("GET", f"{prefix}/thumbnail/{{server_name}}/{{media_id}}", thumbnail_handler)
        router.add("GET", f"{prefix}/config", config)
        router.add("GET", f"{prefix}/preview_url", preview_url)

    mount("/_matrix/client/v1/media", authed_download, authed_thumbnail)
    for version in ("v3", "r0"):
        mount(f"/_matrix/media/{version}", legacy_download, legacy_thumbnail)
