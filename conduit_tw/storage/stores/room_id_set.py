"""
L{RoomIdSet}: a small persisted set of room IDs (one tree, one key per
room, empty values), read into memory on first use and kept in step with
every write, for sets checked far more often than changed (published,
banned, federation-disabled rooms).
"""

from __future__ import annotations

from conduit_tw.storage.interfaces import IKeyValueDatabase


class RoomIdSet:
    """A persisted set of room IDs (one tree, one key per room), cached in memory."""

    def __init__(self, db: IKeyValueDatabase, tree: str) -> None:
        self.db = db
        self.name = tree
        self.tree = db.open_tree(tree)
        self._rooms: set[str] | None = None

    async def _load(self) -> set[str]:
        if self._rooms is None:
            rows = await self.tree.scan_prefix(b"")
            rooms = {k.decode("utf-8") for k, _ in rows}
            if self._rooms is None:
                self._rooms = rooms
        return self._rooms

    async def all(self) -> list[str]:
        """Every room ID of the set, sorted."""
        return sorted(await self._load())

    async def contains(self, room_id: str) -> bool:
        """Whether the room is in the set."""
        return room_id in await self._load()

    async def update(self, room_ids: list[str], present: bool) -> None:
        """Add (C{present}) or remove rooms, in one batch."""
        rooms = await self._load()
        batch = self.db.batch()
        for room_id in room_ids:
            if present:
                batch.put(self.name, room_id.encode("utf-8"), b"")
            else:
                batch.delete(self.name, room_id.encode("utf-8"))
        await self.db.write(batch)
        if present:
            rooms.update(room_ids)
        else:
            rooms.difference_update(room_ids)
