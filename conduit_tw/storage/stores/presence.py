"""
Presence of local users (client-server-api "Presence"), with a stream
index so /sync reads "whose presence changed since position X" with one
range scan.

Layout::

    userid_presence   user_id   -> JSON {"presence", "status_msg", "last_active_ts", "pos"}
    presenceid_userid u64(pos)  -> user_id

The index holds one entry per user: a change removes the user's previous
index key in the same batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import from_u64, u64
from conduit_tw.util.caches import LatestPositions

PRESENCE = "userid_presence"
CHANGES = "presenceid_userid"


@dataclass(frozen=True)
class PresenceRecord:
    """The stored presence of one user."""

    presence: str
    status_msg: str | None
    #: When the user was last active (ms since the epoch), 0 if never.
    last_active_ts: int
    #: Stream position of the last change.
    pos: int = 0


class PresenceStore:
    """The presence trees."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.presence = db.open_tree(PRESENCE)
        self.changes = db.open_tree(CHANGES)
        self._latest = LatestPositions(1)

    async def get(self, user_id: str) -> PresenceRecord | None:
        """The user's record, or None if never set."""
        raw = await self.presence.get(user_id.encode("utf-8"))
        return PresenceRecord(**json.loads(raw)) if raw is not None else None

    async def get_many(self, user_ids: list[str]) -> dict[str, PresenceRecord]:
        """The records of those users that have one."""
        raws = await self.presence.get_many([u.encode("utf-8") for u in user_ids])
        return {u: PresenceRecord(**json.loads(r)) for u, r in zip(user_ids, raws) if r is not None}

    async def put(self, user_id: str, record: PresenceRecord) -> None:
        """Store C{record} (its C{pos} is the new stream position)."""
        key = user_id.encode("utf-8")
        old = await self.presence.get(key)
        batch = self.db.batch()
        if old is not None:
            batch.delete(CHANGES, u64(json.loads(old)["pos"]))
        batch.put(PRESENCE, key, json.dumps(asdict(record), separators=(",", ":")).encode("utf-8"))
        batch.put(CHANGES, u64(record.pos), key)
        self._latest.wrote(None, record.pos)
        await self.db.write(batch)

    async def changed_since(self, since: int, to: int | None = None) -> list[tuple[int, str]]:
        """C{(position, user_id)} of every user whose presence changed in C{(since, to]}."""
        if await self._latest.nothing_after(None, since, self._last_position):
            return []
        rows = await self.changes.iter_range(u64(since + 1), u64(to + 1) if to is not None else None)
        return [(from_u64(k), v.decode("utf-8")) for k, v in rows]

    async def _last_position(self) -> int:
        rows = await self.changes.iter_range(b"", None, reverse=True, limit=1)
        return from_u64(rows[0][0]) if rows else 0

    async def not_offline(self) -> list[tuple[str, PresenceRecord]]:
        """Every user whose stored presence is not offline (for restart timers)."""
        rows = await self.presence.iter_from(b"\x00")
        out: list[tuple[str, PresenceRecord]] = []
        for k, v in rows:
            data: dict[str, Any] = json.loads(v)
            if data["presence"] != "offline":
                out.append((k.decode("utf-8"), PresenceRecord(**data)))
        return out
