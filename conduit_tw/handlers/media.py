"""
The media repository (client-server-api "Content repository"): uploads,
asynchronous uploads (v1.7), downloads, thumbnails and deletion of local
media. See docs/media.md for the operator's view.

Media ids are 24 random characters of C{A-Za-z0-9} (the spec allows
C{A-Za-z0-9_-}); ids and server names from the URL are checked before
anything is read ("Security considerations"). Remote media goes through
L{MediaHandler.fetch_remote} (L{conduit_tw.handlers.remote_media}: fetched
over federation, cached under its own server name and id, thumbnailed
here like local media).
"""

from __future__ import annotations

import errno
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Awaitable, BinaryIO, Callable

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.threads import deferToThread

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.handlers import thumbnailer
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.media import MediaStore
from conduit_tw.storage.stores.media_files import MediaFiles, UploadSpool, media_key
from conduit_tw.util.caches import LruCache
from conduit_tw.util.linearizer import Linearizer

log = get_logger("conduit_tw.media")

_ID_ALPHABET = string.ascii_letters + string.digits
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
#: Server names (appendices "Server name"): a DNS name, IPv4 or [IPv6], optional port.
_SERVER_NAME = re.compile(r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?\Z")

#: How long an id made by /create waits for its content (Synapse's default).
UNUSED_EXPIRY_MS = 24 * 3600 * 1000
#: Pending ids per user (client-server-api, POST /media/v1/create).
MAX_PENDING_UPLOADS = 5
#: Default and largest C{timeout_ms} of a download waiting for its content.
DEFAULT_WAIT_MS = 20_000
MAX_WAIT_MS = 60_000
#: A broken image is answered as it is (thumbnail requests) up to this size.
BROKEN_IMAGE_FALLBACK_MAX = 1024 * 1024
#: Thumbnails generated at once (each holds a decoded image in memory).
THUMBNAIL_CONCURRENCY = 2
#: Thumbnails are answered in these types only; originals of these types
#: are safe to answer to a thumbnail request as they are.
WEB_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_ANIMATABLE = frozenset({"image/gif", "image/webp", "image/png", "image/apng"})
#: Downloads of one media (or thumbnail) are recorded at most this often
#: (retention policies' C{accessed}; saves a write per download).
ACCESS_RESOLUTION_MS = 60_000


@dataclass
class MediaContent:
    """Something to answer a download or thumbnail with."""

    file: BinaryIO
    size: int
    content_type: str
    filename: str | None


async def _no_remote(server_name: str, media_id: str) -> Any:
    raise not_found("Remote media is not available (no federation yet)")


#: A content type as stored: C{type/subtype} with optional parameters,
#: printable ASCII only.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[\x20-\x7e]*)?\Z")


def clean_content_type(raw: bytes | str | None) -> str | None:
    """The upload's C{Content-Type}, or None when absent or not a sane type."""
    if raw is None:
        return None
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text.strip()
    if len(text) > 255 or not _CONTENT_TYPE.match(text):
        return None
    return text


def valid_media_id(media_id: str) -> bool:
    """Whether C{media_id} has only the characters the spec allows."""
    return bool(_MEDIA_ID.match(media_id))


def check_mxc_parts(server_name: str, media_id: str) -> None:
    """404 M_NOT_FOUND for a server name or media id outside the grammar."""
    if not _SERVER_NAME.match(server_name) or not valid_media_id(media_id):
        raise not_found("Unknown media")


def choose_variant(width: int, height: int, method: str, animated: bool) -> tuple[str, int, int, str]:
    """
    The stored thumbnail a request is answered from: the smallest of the
    spec's recommended sizes with this method that is at least as large as
    asked, else C{full} (the whole image at its own size: never smaller
    than asked unless the image is). Returns C{(variant, box_w, box_h, method)}.
    """
    suffix = "-animated" if animated else ""
    for pw, ph, pm in thumbnailer.PRESETS:
        if pm == method and pw >= width and ph >= height:
            return f"{pw}x{ph}-{pm}{suffix}", pw, ph, pm
    return "full" + suffix, 1 << 30, 1 << 30, "scale"


class MediaHandler:
    """
    Local media; see the module docstring.

    @ivar fetch_remote: C{async (server_name, media_id) -> metadata} of
        remote media once its file is cached under C{media_key(server_name,
        media_id)} (or a L{MediaContent} to answer as it is, which cannot
        be thumbnailed); federation replaces it. The default raises 404
        M_NOT_FOUND.
    @ivar legacy_for_new_media: whether media uploaded now may be served
        by the unauthenticated C{/_matrix/media/v3} endpoints (the
        "freeze" of client-server-api "Client behaviour" is C{False}).
    """

    def __init__(
        self,
        server_name: str,
        store: MediaStore,
        files: MediaFiles,
        reactor: Any,
        clock_ms: Callable[[], int],
        max_upload_size: int,
        legacy_for_new_media: bool = False,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.files = files
        self._reactor = reactor
        self._clock_ms = clock_ms
        self.max_upload_size = max_upload_size
        self.legacy_for_new_media = legacy_for_new_media
        self.fetch_remote: Callable[
            [str, str], Awaitable[dict[str, Any] | MediaContent]
        ] = _no_remote
        self._waiters: dict[str, list[Deferred[None]]] = {}
        self._uploading: set[str] = set()
        self._thumb_locks = Linearizer("thumbnails")
        self._cpu = DeferredSemaphore(THUMBNAIL_CONCURRENCY)
        #: Last access written per media key (see L{ACCESS_RESOLUTION_MS}).
        self._touched: LruCache[tuple[str, str, str], int] = LruCache(10_000)

    async def setup(self) -> None:
        """Create the directories, drop leftovers of a crash and expired ids."""
        self.files.setup()
        await self.expire_pending()

    async def expire_pending(self) -> int:
        """
        Forget the ids made by C{/create} whose content never came before
        C{unused_expires_at} (at start-up and by the periodic housekeeping).
        Returns how many.
        """
        now = self._clock_ms()
        expired = 0
        for user_id, media_id, expires in await self.store.all_pending():
            if expires <= now:
                await self.store.delete(self.server_name, media_id, user_id, [])
                expired += 1
        return expired

    async def _touch(self, server_name: str, media_id: str, variant: str = "") -> None:
        """Record a download for the C{accessed} retention policies."""
        now = self._clock_ms()
        key = (server_name, media_id, variant)
        last = self._touched.get(key)
        if last is not None and now - last < ACCESS_RESOLUTION_MS:
            return
        self._touched.set(key, now)
        await self.store.touch(server_name, media_id, variant, now)

    def mxc(self, media_id: str) -> str:
        """The C{mxc://} URI of a local media id."""
        return f"mxc://{self.server_name}/{media_id}"

    # -- uploads

    async def upload(
        self, uploader: str, spool: UploadSpool, content_type: str | None, filename: str | None
    ) -> str:
        """Store an uploaded body under a new media id; returns its C{mxc://} URI."""
        media_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))
        await self._store_content(uploader, media_id, spool, content_type, filename)
        return self.mxc(media_id)

    async def create(self, uploader: str) -> tuple[str, int]:
        """
        POST /media/v1/create: a new id for a later upload; returns the URI
        and C{unused_expires_at}.

        @raise MatrixError: 429 M_LIMIT_EXCEEDED with too many pending ids.
        """
        now = self._clock_ms()
        live = 0
        for media_id, expires in await self.store.pending_of(uploader):
            if expires <= now:
                await self.store.delete(self.server_name, media_id, uploader, [])
            else:
                live += 1
        if live >= MAX_PENDING_UPLOADS:
            raise MatrixError(
                429, Codes.LIMIT_EXCEEDED, "Too many pending uploads", retry_after_ms=60_000
            )
        media_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))
        expires_at = now + UNUSED_EXPIRY_MS
        await self.store.add_pending(self.server_name, media_id, uploader, now, expires_at)
        return self.mxc(media_id), expires_at

    async def upload_to(
        self,
        uploader: str,
        server_name: str,
        media_id: str,
        spool: UploadSpool,
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """
        PUT /media/v3/upload/{serverName}/{mediaId}: the content of an id
        made by L{create}, by its creator, once.

        @raise MatrixError: 404 unknown or expired id, 403 someone else's,
            409 M_CANNOT_OVERWRITE_MEDIA already uploaded (or uploading).
        """
        if server_name != self.server_name:
            raise not_found("Unknown media ID")
        check_mxc_parts(server_name, media_id)
        meta = await self.store.get(server_name, media_id)
        if meta is None:
            raise not_found("Unknown media ID")
        if meta.get("uploader") != uploader:
            raise forbidden("This media ID was created by another user")
        if not meta.get("pending") or media_id in self._uploading:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")
        if meta["unused_expires_at"] <= self._clock_ms():
            await self.store.delete(server_name, media_id, uploader, [])
            raise not_found("Media ID expired")
        self._uploading.add(media_id)
        try:
            await self._store_content(uploader, media_id, spool, content_type, filename)
        finally:
            self._uploading.discard(media_id)

    async def _store_content(
        self,
        uploader: str,
        media_id: str,
        spool: UploadSpool,
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """File first (atomic rename), then metadata: a crash leaves no half media."""
        if spool.size > self.max_upload_size:
            raise MatrixError(413, Codes.TOO_LARGE, "Upload is larger than allowed")
        try:
            await self.files.commit(spool, media_key(self.server_name, media_id))
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise MatrixError(
                    413, Codes.TOO_LARGE, "Not enough free disk space for this upload"
                ) from None
            raise
        metadata: dict[str, Any] = {
            "content_type": content_type or "application/octet-stream",
            "size": spool.size,
            "uploader": uploader,
            "created_ts": self._clock_ms(),
        }
        if filename:
            metadata["filename"] = filename
        if self.legacy_for_new_media:
            metadata["legacy"] = True
        await self.store.put(self.server_name, media_id, metadata)
        for d in self._waiters.pop(media_id, []):
            d.callback(None)

    # -- downloads

    async def _metadata(
        self, server_name: str, media_id: str, timeout_ms: int | None, legacy: bool
    ) -> dict[str, Any] | MediaContent:
        """
        The metadata of local media once it has content (waiting up to
        C{timeout_ms} for a pending upload), or what L{fetch_remote} gives
        for remote media.
        """
        check_mxc_parts(server_name, media_id)
        if server_name != self.server_name:
            if legacy:
                raise not_found("Remote media is not served on this endpoint")
            return await self.fetch_remote(server_name, media_id)
        meta = await self.store.get(server_name, media_id)
        if meta is not None and meta.get("pending"):
            if meta["unused_expires_at"] <= self._clock_ms():
                raise not_found("Unknown media")
            wait = DEFAULT_WAIT_MS if timeout_ms is None else timeout_ms
            await self._wait_for_upload(media_id, max(0, min(wait, MAX_WAIT_MS)))
            meta = await self.store.get(server_name, media_id)
            if meta is not None and meta.get("pending"):
                raise MatrixError(504, Codes.NOT_YET_UPLOADED, "Content has not yet been uploaded")
        if meta is None:
            raise not_found("Unknown media")
        if legacy and not meta.get("legacy"):
            # client-server-api "Client behaviour": frozen for new media.
            raise not_found("This media is only served on the authenticated endpoints")
        return meta

    async def _wait_for_upload(self, media_id: str, timeout_ms: int) -> None:
        if timeout_ms <= 0:
            return
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(media_id, []).append(d)
        call = self._reactor.callLater(timeout_ms / 1000.0, lambda: d.called or d.callback(None))
        try:
            await d
        finally:
            if call.active():
                call.cancel()
            waiters = self._waiters.get(media_id)
            if waiters and d in waiters:
                waiters.remove(d)
                if not waiters:
                    del self._waiters[media_id]

    async def download(
        self, server_name: str, media_id: str, timeout_ms: int | None = None, legacy: bool = False
    ) -> MediaContent:
        """
        The content of a media id.

        @raise MatrixError: 404 unknown (or frozen on a legacy endpoint),
            504 M_NOT_YET_UPLOADED when a pending upload did not arrive.
        """
        meta = await self._metadata(server_name, media_id, timeout_ms, legacy)
        if isinstance(meta, MediaContent):
            return meta
        f = self.files.open(media_key(server_name, media_id))
        if f is None:
            log.warn("Media {id} has metadata but no file", id=media_id)
            raise not_found("Unknown media")
        await self._touch(server_name, media_id)
        return MediaContent(f, meta["size"], meta["content_type"], meta.get("filename"))

    async def thumbnail(
        self,
        server_name: str,
        media_id: str,
        width: int,
        height: int,
        method: str,
        animated: bool = False,
        timeout_ms: int | None = None,
        legacy: bool = False,
    ) -> MediaContent:
        """
        A thumbnail (client-server-api "Thumbnails"), generated on first
        request in a thread and stored like media.

        @raise MatrixError: 400 M_UNKNOWN when the content cannot be
            thumbnailed, 413 M_TOO_LARGE for images with too many pixels.
        """
        if method not in ("crop", "scale"):
            raise MatrixError(400, Codes.INVALID_PARAM, "method must be crop or scale")
        if width <= 0 or height <= 0:
            raise MatrixError(400, Codes.INVALID_PARAM, "width and height must be positive")
        meta = await self._metadata(server_name, media_id, timeout_ms, legacy)
        if isinstance(meta, MediaContent):
            raise MatrixError(400, Codes.UNKNOWN, "Cannot thumbnail remote media yet")
        content_type = meta["content_type"].split(";")[0].strip().lower()
        if content_type not in thumbnailer.THUMBNAILABLE:
            raise MatrixError(400, Codes.UNKNOWN, "Cannot generate thumbnails for the requested content")
        animated = animated and content_type in _ANIMATABLE
        variant, box_w, box_h, box_method = choose_variant(width, height, method, animated)
        # A thumbnail shown is the media seen: both count as accessed.
        await self._touch(server_name, media_id)
        await self._touch(server_name, media_id, variant)
        async with self._thumb_locks.queue((server_name, media_id, variant)):
            stored = await self.store.thumbnail(server_name, media_id, variant)
            if stored is not None:
                f = self.files.open(media_key(server_name, media_id, variant))
                if f is not None:
                    return MediaContent(f, stored["size"], stored["content_type"], None)
            original_key = media_key(server_name, media_id)
            try:
                thumb = await self._cpu.run(
                    deferToThread, _thumbnail_file, self.files.path_for(original_key),
                    box_w, box_h, box_method, animated,
                )
            except thumbnailer.TooLarge:
                raise MatrixError(413, Codes.TOO_LARGE, "Content is too large to thumbnail") from None
            except (thumbnailer.CannotThumbnail, FileNotFoundError):
                return self._broken_image(server_name, media_id, meta, content_type)
            key = media_key(server_name, media_id, variant)
            await self.files.write(key, thumb.data)
            await self.store.put_thumbnail(
                server_name, media_id, variant,
                {"content_type": thumb.content_type, "size": len(thumb.data),
                 "width": thumb.width, "height": thumb.height,
                 "created_ts": self._clock_ms()},
            )
            f = self.files.open(key)
            if f is None:
                raise not_found("Unknown media")
            return MediaContent(f, len(thumb.data), thumb.content_type, None)

    def _broken_image(
        self, server_name: str, media_id: str, meta: dict[str, Any], content_type: str
    ) -> MediaContent:
        """An image Pillow cannot decode: the original if small and web-safe, else 400."""
        if content_type in WEB_IMAGE_TYPES and meta["size"] <= BROKEN_IMAGE_FALLBACK_MAX:
            f = self.files.open(media_key(server_name, media_id))
            if f is not None:
                return MediaContent(f, meta["size"], content_type, None)
        raise MatrixError(400, Codes.UNKNOWN, "Cannot generate thumbnails for the requested content")

    # -- administration

    async def delete(self, server_name: str, media_id: str) -> bool:
        """
        Delete media: metadata (with its thumbnails') first, in one batch,
        then the files. Returns whether the media existed. Used by the
        admin room.
        """
        if not _SERVER_NAME.match(server_name) or not valid_media_id(media_id):
            return False
        meta = await self.store.get(server_name, media_id)
        if meta is None:
            return False
        variants = await self.store.thumbnail_variants(server_name, media_id)
        await self.store.delete(server_name, media_id, meta.get("uploader"), variants)
        keys = [media_key(server_name, media_id)]
        keys += [media_key(server_name, media_id, v) for v in variants]
        await deferToThread(self.files.remove, keys)
        return True

    async def delete_thumbnails(self, server_name: str, media_id: str, variants: list[str]) -> None:
        """
        Delete some stored thumbnails of a media id (metadata in one batch,
        then the files); they are generated again when asked for.
        """
        await self.store.delete_thumbnails(server_name, media_id, variants)
        keys = [media_key(server_name, media_id, v) for v in variants]
        await deferToThread(self.files.remove, keys)


def _thumbnail_file(
    path: str, box_w: int, box_h: int, method: str, animated: bool
) -> thumbnailer.Thumbnail:
    """Thread side: open the original and thumbnail it."""
    with open(path, "rb") as f:
        return thumbnailer.thumbnail(f, box_w, box_h, method, animated)
