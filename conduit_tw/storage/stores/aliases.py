"""
Room aliases (client-server-api "Room aliases"): local aliases only (the
server part of every alias stored here is ours). Used by room creation
(C{room_alias_name}, in the room's own transaction) and by the directory
handler (C{PUT/DELETE /directory/room/{alias}}).

Layout (C{·} is 0xFF)::

    alias_roomid     alias            -> compact JSON {"room_id", "creator"}
    roomid_aliases   room_id·alias    -> b""

C{creator} is the user who made the alias (they may always delete it).
Both trees are written in one batch, so they never disagree. Aliases and
room IDs are at most 255 bytes, so keys fit every backend.
"""

from __future__ import annotations

import json
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP
from conduit_tw.storage.txn import StoreTxn

ALIASES = "alias_roomid"
ROOM_ALIASES = "roomid_aliases"


class AliasStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.aliases = db.open_tree(ALIASES)
        self.room_aliases = db.open_tree(ROOM_ALIASES)
        #: Aliases being created by transactions not yet committed, so two
        #: concurrent requests cannot take the same one.
        self._pending: set[str] = set()

    async def get_alias(self, alias: str) -> dict[str, Any] | None:
        """C{{"room_id", "creator"}} for an alias, or None."""
        raw = await self.aliases.get(alias.encode("utf-8"))
        return json.loads(raw) if raw is not None else None

    async def get_room_for_alias(self, alias: str) -> str | None:
        """The room ID an alias points to."""
        info = await self.get_alias(alias)
        return info["room_id"] if info else None

    async def aliases_for_room(self, room_id: str) -> list[str]:
        """Every local alias of a room, sorted."""
        prefix = room_id.encode("utf-8") + SEP
        rows = await self.room_aliases.scan_prefix(prefix)
        return [k[len(prefix):].decode("utf-8") for k, _ in rows]

    async def is_taken(self, alias: str) -> bool:
        """Whether the alias exists or is being created."""
        return alias in self._pending or await self.get_alias(alias) is not None

    def reserve(self, alias: str, txn: StoreTxn) -> None:
        """Hold C{alias} until C{txn} commits or fails (see L{is_taken})."""
        self._pending.add(alias)
        txn.after_commit(lambda: self._pending.discard(alias))
        txn.after_failure(lambda: self._pending.discard(alias))

    def put_alias(self, txn: StoreTxn, alias: str, room_id: str, creator: str) -> None:
        """Write an alias mapping in C{txn}."""
        value = json.dumps({"room_id": room_id, "creator": creator}, separators=(",", ":"))
        txn.batch.put(ALIASES, alias.encode("utf-8"), value.encode("utf-8"))
        txn.batch.put(ROOM_ALIASES, room_id.encode("utf-8") + SEP + alias.encode("utf-8"), b"")

    async def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        """
        Create an alias unless it exists (or is being created): False if
        it is taken. Safe against concurrent calls for the same alias.
        """
        if alias in self._pending:
            return False
        self._pending.add(alias)
        try:
            if await self.get_alias(alias) is not None:
                return False
            txn = StoreTxn(self.db)
            self.put_alias(txn, alias, room_id, creator)
            await txn.commit()
            return True
        finally:
            self._pending.discard(alias)

    async def delete_alias(self, alias: str) -> bool:
        """Remove an alias; False if it did not exist."""
        info = await self.get_alias(alias)
        if info is None:
            return False
        batch = self.db.batch()
        batch.delete(ALIASES, alias.encode("utf-8"))
        batch.delete(ROOM_ALIASES, info["room_id"].encode("utf-8") + SEP + alias.encode("utf-8"))
        await self.db.write(batch)
        return True

    async def move_to_room(self, old_room_id: str, new_room_id: str, default_creator: str) -> list[str]:
        """
        Point every local alias of C{old_room_id} at C{new_room_id} in one
        atomic write (room upgrades); returns the moved aliases. Each keeps
        its creator (C{default_creator} when none was recorded).
        """
        moved = await self.aliases_for_room(old_room_id)
        if not moved:
            return moved
        txn = StoreTxn(self.db)
        for alias in moved:
            info = await self.get_alias(alias)
            creator = info.get("creator", default_creator) if info else default_creator
            self.put_alias(txn, alias, new_room_id, creator)
            txn.batch.delete(
                ROOM_ALIASES, old_room_id.encode("utf-8") + SEP + alias.encode("utf-8")
            )
        await txn.commit()
        return moved
