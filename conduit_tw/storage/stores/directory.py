"""
The published room directory (client-server-api "Published room
directory"): which rooms this server lists in C{/publicRooms}.

Layout::

    publicroomids    room_id -> b""     (one key per published room)

The set of published rooms is small next to everything else (a few
thousand rooms on a big server), so it is read once into memory on first
use and kept in step with every write; listing the directory costs no
database read.
"""

from __future__ import annotations

from conduit_tw.storage.interfaces import IKeyValueDatabase

PUBLIC_ROOMS = "publicroomids"


class DirectoryStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.tree = db.open_tree(PUBLIC_ROOMS)
        self._public: set[str] | None = None

    async def _load(self) -> set[str]:
        if self._public is None:
            rows = await self.tree.scan_prefix(b"")
            public = {k.decode("utf-8") for k, _ in rows}
            if self._public is None:
                self._public = public
        return self._public

    async def public_room_ids(self) -> frozenset[str]:
        """Every published room ID."""
        return frozenset(await self._load())

    async def is_public(self, room_id: str) -> bool:
        """Whether the room is published."""
        return room_id in await self._load()

    async def set_public(self, room_id: str, public: bool) -> None:
        """Publish or unpublish a room (a no-op when nothing changes)."""
        rooms = await self._load()
        if (room_id in rooms) == public:
            return
        batch = self.db.batch()
        if public:
            batch.put(PUBLIC_ROOMS, room_id.encode("utf-8"), b"")
        else:
            batch.delete(PUBLIC_ROOMS, room_id.encode("utf-8"))
        await self.db.write(batch)
        if public:
            rooms.add(room_id)
        else:
            rooms.discard(room_id)
