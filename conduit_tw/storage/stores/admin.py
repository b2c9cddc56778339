"""
The admin room's persistent state: which room is the admin room, the
rooms banned by the operator (docs/admin.md, C{rooms moderation}) and the
rooms whose incoming federation the operator disabled (C{federation
disable-room}).

Layout::

    admin_meta       b"admin_room" -> room_id
    bannedroomids    room_id -> b""     (one key per banned room)
    disabledroomids  room_id -> b""     (one key per room with federation disabled)

Both room sets are small and checked often (every local membership event,
every incoming PDU and EDU), so each is read into memory on first use and
kept in step with every write. (The admin flag of users lives in the
accounts, L{UserStore}.)
"""

from __future__ import annotations

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.stores.room_id_set import RoomIdSet

ADMIN_META = "admin_meta"
BANNED_ROOMS = "bannedroomids"
DISABLED_ROOMS = "disabledroomids"

_ADMIN_ROOM = b"admin_room"


class AdminStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.meta = db.open_tree(ADMIN_META)
        self.banned = RoomIdSet(db, BANNED_ROOMS)
        self.federation_disabled = RoomIdSet(db, DISABLED_ROOMS)

    async def admin_room_id(self) -> str | None:
        """The admin room's ID, once it was created."""
        raw = await self.meta.get(_ADMIN_ROOM)
        return raw.decode("utf-8") if raw is not None else None

    async def set_admin_room_id(self, room_id: str) -> None:
        """Record the admin room's ID."""
        batch = self.db.batch()
        batch.put(ADMIN_META, _ADMIN_ROOM, room_id.encode("utf-8"))
        await self.db.write(batch)

    async def banned_room_ids(self) -> list[str]:
        """Every banned room ID, sorted."""
        return await self.banned.all()

    async def is_banned(self, room_id: str) -> bool:
        """Whether the room is banned."""
        return await self.banned.contains(room_id)

    async def set_banned(self, room_ids: list[str], banned: bool) -> None:
        """Ban or unban rooms (one batch)."""
        await self.banned.update(room_ids, banned)

    async def federation_disabled_room_ids(self) -> list[str]:
        """Every room whose incoming federation is disabled, sorted."""
        return await self.federation_disabled.all()

    async def is_federation_disabled(self, room_id: str) -> bool:
        """Whether incoming federation of the room is disabled."""
        return await self.federation_disabled.contains(room_id)

    async def set_federation_disabled(self, room_ids: list[str], disabled: bool) -> None:
        """Disable or enable incoming federation of rooms (one batch)."""
        await self.federation_disabled.update(room_ids, disabled)
