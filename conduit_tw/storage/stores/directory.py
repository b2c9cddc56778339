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
from conduit_tw.storage.stores.room_id_set import RoomIdSet

PUBLIC_ROOMS = "publicroomids"


class DirectoryStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.rooms = RoomIdSet(db, PUBLIC_ROOMS)

    async def public_room_ids(self) -> frozenset[str]:
        """Every published room ID."""
        return frozenset(await self.rooms.all())

    async def is_public(self, room_id: str) -> bool:
        """Whether the room is published."""
        return await self.rooms.contains(room_id)

    async def set_public(self, room_id: str, public: bool) -> None:
        """Publish or unpublish a room (a no-op when nothing changes)."""
        if await self.rooms.contains(room_id) != public:
            await self.rooms.update([room_id], public)
