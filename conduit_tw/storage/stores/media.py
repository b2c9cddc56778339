"""
Media metadata (client-server-api "Content repository"); the bytes are
files (L{conduit_tw.storage.stores.media_files}).

Layout::

    mediaid_metadata   server_name 0xFF media_id -> compact JSON
                       {"content_type", "filename", "size", "uploader",
                        "created_ts"} of uploaded media, or
                       {"pending": true, "uploader", "created_ts",
                        "unused_expires_at"} of an id made by
                       POST /media/v1/create that has no content yet
    mediaid_thumbnail  server_name 0xFF media_id 0xFF variant -> compact JSON
                       {"content_type", "size", "width", "height"};
                       variant is "<w>x<h>-<method>[-animated]"
    userid_pendingmedia  user_id 0xFF media_id -> u64 unused_expires_at
                       (ms), one per pending id (counts a user's pending
                       uploads with one prefix scan)
    mediaid_accessed   server_name 0xFF media_id [0xFF variant] -> u64
                       last download (ms) of media or of one thumbnail,
                       recorded at most once a minute (retention policies)

Deleting media removes its metadata, its thumbnails' metadata, their
access times and any pending entry in one batch.
"""

from __future__ import annotations

import json
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.values import compact_json
from conduit_tw.storage.keys import from_u64, join, split, u64

METADATA = "mediaid_metadata"
THUMBNAILS = "mediaid_thumbnail"
PENDING = "userid_pendingmedia"
ACCESSED = "mediaid_accessed"



class MediaStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.metadata = db.open_tree(METADATA)
        self.thumbnails = db.open_tree(THUMBNAILS)
        self.pending = db.open_tree(PENDING)
        self.accessed = db.open_tree(ACCESSED)

    async def get(self, server_name: str, media_id: str) -> dict[str, Any] | None:
        """The metadata of a media id (uploaded or pending), or None."""
        raw = await self.metadata.get(join(server_name, media_id))
        return json.loads(raw) if raw is not None else None

    async def put(self, server_name: str, media_id: str, metadata: dict[str, Any]) -> None:
        """
        Record uploaded media (replacing a pending entry: the uploader's
        pending index entry goes in the same batch).
        """
        batch = self.db.batch()
        batch.put(METADATA, join(server_name, media_id), compact_json(metadata))
        uploader = metadata.get("uploader")
        if uploader:
            batch.delete(PENDING, join(uploader, media_id))
        await self.db.write(batch)

    async def add_pending(
        self, server_name: str, media_id: str, uploader: str, created_ts: int, expires_at: int
    ) -> None:
        """Record an id made by C{/create} that awaits its content."""
        batch = self.db.batch()
        batch.put(
            METADATA,
            join(server_name, media_id),
            compact_json({"pending": True, "uploader": uploader, "created_ts": created_ts,
                   "unused_expires_at": expires_at}),
        )
        batch.put(PENDING, join(uploader, media_id), u64(expires_at))
        await self.db.write(batch)

    async def pending_of(self, user_id: str) -> list[tuple[str, int]]:
        """C{(media_id, unused_expires_at)} of every pending id of a local user."""
        rows = await self.pending.scan_prefix(join(user_id, b""))
        return [(split(k)[-1].decode("utf-8"), from_u64(v)) for k, v in rows]

    async def all_pending(self) -> list[tuple[str, str, int]]:
        """C{(user_id, media_id, unused_expires_at)} of every pending id."""
        rows = await self.pending.iter_from(b"")
        out = []
        for k, v in rows:
            user, media_id = split(k)
            out.append((user.decode("utf-8"), media_id.decode("utf-8"), from_u64(v)))
        return out

    async def thumbnail(self, server_name: str, media_id: str, variant: str) -> dict[str, Any] | None:
        """A stored thumbnail's metadata, or None."""
        raw = await self.thumbnails.get(join(server_name, media_id, variant))
        return json.loads(raw) if raw is not None else None

    async def put_thumbnail(
        self, server_name: str, media_id: str, variant: str, metadata: dict[str, Any]
    ) -> None:
        """Record a generated thumbnail."""
        await self.thumbnails.insert(join(server_name, media_id, variant), compact_json(metadata))

    async def thumbnail_variants(self, server_name: str, media_id: str) -> list[str]:
        """The variants of every stored thumbnail of a media id."""
        rows = await self.thumbnails.scan_prefix(join(server_name, media_id, b""))
        return [split(k)[-1].decode("utf-8") for k, _ in rows]

    async def delete(
        self, server_name: str, media_id: str, uploader: str | None, variants: list[str]
    ) -> None:
        """Forget a media id, its thumbnails and its pending entry, in one batch."""
        batch = self.db.batch()
        batch.delete(METADATA, join(server_name, media_id))
        batch.delete(ACCESSED, join(server_name, media_id))
        # Thumbnail accesses may be recorded for variants never stored.
        for k, _ in await self.accessed.scan_prefix(join(server_name, media_id, b"")):
            batch.delete(ACCESSED, k)
        self._delete_thumbnails_in(batch, server_name, media_id, variants)
        if uploader:
            batch.delete(PENDING, join(uploader, media_id))
        await self.db.write(batch)

    async def delete_thumbnails(self, server_name: str, media_id: str, variants: list[str]) -> None:
        """Forget some thumbnails of a media id (and their access times), in one batch."""
        batch = self.db.batch()
        self._delete_thumbnails_in(batch, server_name, media_id, variants)
        await self.db.write(batch)

    @staticmethod
    def _delete_thumbnails_in(batch: Any, server_name: str, media_id: str, variants: list[str]) -> None:
        for variant in variants:
            batch.delete(THUMBNAILS, join(server_name, media_id, variant))
            batch.delete(ACCESSED, join(server_name, media_id, variant))

    # -- retention (handlers/media_retention.py)

    async def touch(self, server_name: str, media_id: str, variant: str, now_ms: int) -> None:
        """Record a download of media (C{variant=""}) or of one of its thumbnails."""
        parts = (server_name, media_id, variant) if variant else (server_name, media_id)
        await self.accessed.insert(join(*parts), u64(now_ms))

    async def all_media(self) -> list[tuple[str, str, dict[str, Any]]]:
        """C{(server_name, media_id, metadata)} of every media id, pending ones included."""
        out = []
        for k, v in await self._scan(self.metadata):
            server_name, media_id = split(k)
            out.append((server_name.decode("utf-8"), media_id.decode("utf-8"), json.loads(v)))
        return out

    async def all_thumbnails(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """C{(server_name, media_id, variant, metadata)} of every stored thumbnail."""
        out = []
        for k, v in await self._scan(self.thumbnails):
            server_name, media_id, variant = split(k)
            out.append((
                server_name.decode("utf-8"), media_id.decode("utf-8"), variant.decode("utf-8"),
                json.loads(v),
            ))
        return out

    async def access_times(self) -> dict[tuple[str, ...], int]:
        """Last download (ms) by C{(server_name, media_id[, variant])}."""
        return {
            tuple(p.decode("utf-8") for p in split(k)): from_u64(v)
            for k, v in await self._scan(self.accessed)
        }

    @staticmethod
    async def _scan(tree: Any, page: int = 1000) -> list[tuple[bytes, bytes]]:
        """A whole tree, read a page at a time."""
        rows: list[tuple[bytes, bytes]] = []
        start = b""
        while True:
            chunk = await tree.iter_from(start, limit=page)
            rows.extend(chunk)
            if len(chunk) < page:
                return rows
            start = chunk[-1][0] + b"\x00"
