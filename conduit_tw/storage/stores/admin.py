"""
The admin room's persistent state: which room is the admin room, and the
rooms banned by the operator (docs/admin.md, C{rooms moderation}).

Layout::

    admin_meta       b"admin_room" -> room_id
    bannedroomids    room_id -> b""     (one key per banned room)

Banned rooms are few and checked on every local membership event, so the
set is read into memory on first use and kept in step with every write.
(The admin flag of users lives in the accounts, L{UserStore}.)
"""

from __future__ import annotations

from conduit_tw.storage.interfaces import IKeyValueDatabase

ADMIN_META = "admin_meta"
BANNED_ROOMS = "bannedroomids"

_ADMIN_ROOM = b"admin_room"


class AdminStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.meta = db.open_tree(ADMIN_META)
        self.banned = db.open_tree(BANNED_ROOMS)
        self._banned: set[str] | None = None

    async def admin_room_id(self) -> str | None:
        """The admin room's ID, once it was created."""
        raw = await self.meta.get(_ADMIN_ROOM)
        return raw.decode("utf-8") if raw is not None else None

    async def set_admin_room_id(self, room_id: str) -> None:
        """Record the admin room's ID."""
        batch = self.db.batch()
        batch.put(ADMIN_META, _ADMIN_ROOM, room_id.encode("utf-8"))
        await self.db.write(batch)

    async def _load_banned(self) -> set[str]:
        if self._banned is None:
            rows = await self.banned.scan_prefix(b"")
            banned = {k.decode("utf-8") for k, _ in rows}
            if self._banned is None:
                self._banned = banned
        return self._banned

    async def banned_room_ids(self) -> list[str]:
        """Every banned room ID, sorted."""
        return sorted(await self._load_banned())

    async def is_banned(self, room_id: str) -> bool:
        """Whether the room is banned."""
        return room_id in await self._load_banned()

    async def set_banned(self, room_ids: list[str], banned: bool) -> None:
        """Ban or unban rooms (one batch)."""
        rooms = await self._load_banned()
        batch = self.db.batch()
        for room_id in room_ids:
            if banned:
                batch.put(BANNED_ROOMS, room_id.encode("utf-8"), b"")
            else:
                batch.delete(BANNED_ROOMS, room_id.encode("utf-8"))
        await self.db.write(batch)
        if banned:
            rooms.update(room_ids)
        else:
            rooms.difference_update(room_ids)
