"""
The federation content repository (server-server-api "Content
Repository", content_repository.yaml, Matrix 1.11):
C{GET /_matrix/federation/v1/media/download/{mediaId}} and
C{/thumbnail/{mediaId}}, X-Matrix authenticated, for our own media only
(other servers' media, cached here or not, answers 404 M_NOT_FOUND).

The answer is C{multipart/mixed} with a random boundary: an empty JSON
metadata part, then the bytes with their C{Content-Type} and a sanitised
C{Content-Disposition} (api/media.py), streamed from the media file
(L{conduit_tw.federation.multipart.MultipartFile}). Thumbnails come from
the media handler's thumbnailer, as for clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.media import content_disposition, thumbnail_disposition, thumbnail_of
from conduit_tw.api.resource import FileResponse, MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.federation import multipart
from conduit_tw.handlers.media import MediaContent

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

PREFIX = "/_matrix/federation/v1/media"


def multipart_response(content: MediaContent, disposition: bytes) -> FileResponse:
    """A two-part answer around C{content}'s file (closed when sent)."""
    boundary = multipart.new_boundary()
    part_headers = {
        b"Content-Type": content.content_type.encode("latin-1", "replace"),
        b"Content-Disposition": disposition,
    }
    body = multipart.multipart_body(boundary, part_headers, content.file, content.size)
    return FileResponse(
        body,  # type: ignore[arg-type]  # read()/close() is all it needs
        body.size,
        {b"Content-Type": multipart.content_type(boundary), b"X-Content-Type-Options": b"nosniff"},
    )


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the federation media endpoints."""
    media = hs.media

    async def download(request: MatrixRequest, origin: str, media_id: str) -> FileResponse:
        """GET /media/download/{mediaId}: our media's bytes."""
        content = await media.download(
            hs.server_name, media_id, request.int_arg("timeout_ms", None, minimum=0)
        )
        return multipart_response(
            content, content_disposition(content.content_type, content.filename)
        )

    async def thumbnail(request: MatrixRequest, origin: str, media_id: str) -> FileResponse:
        """GET /media/thumbnail/{mediaId}: a thumbnail of our media."""
        content = await thumbnail_of(request, media, hs.server_name, media_id)
        return multipart_response(content, thumbnail_disposition(content))

    federation_route(router, hs.federation_auth, "GET", PREFIX + "/download/{media_id}", download)
    federation_route(router, hs.federation_auth, "GET", PREFIX + "/thumbnail/{media_id}", thumbnail)
