"""
Account data of local users, global and per room (client-server-api
"Client Config"), with a change index so /sync reads "what changed for
user U since stream position X" with one prefix range scan.

Layout::

    useraccountdata         user 0xFF room 0xFF type -> JSON {"room_id", "type", "content", "pos"}
    useraccountdata_changes user 0xFF u64(pos)       -> the useraccountdata key of that entry

C{room} is empty for global account data. A key part longer than
L{MAX_PART} bytes (a long event type or room ID) is replaced by 0x00 +
its sha256 digest, so keys stay under the 511-byte limit; the real room
ID and type are always read from the value.

The change index holds exactly one entry per (user, room, type): writing
an entry removes the index key of its previous position in the same
batch. So the index never grows beyond the number of live entries, and
"changes since X" returns each changed entry once, at its latest value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase, IWriteBatch
from conduit_tw.storage.keys import SEP, from_u64, prefix_end, u64
from conduit_tw.util.caches import LatestPositions

DATA = "useraccountdata"
CHANGES = "useraccountdata_changes"

#: Longest key part stored verbatim (3 parts + 2 separators stay < 511).
MAX_PART = 160


def _part(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) <= MAX_PART:
        return raw
    return b"\x00" + hashlib.sha256(raw).digest().replace(SEP, b"\xfe")


def data_key(user_id: str, room_id: str | None, event_type: str) -> bytes:
    """The C{useraccountdata} key of one entry."""
    return SEP.join((_part(user_id), _part(room_id or ""), _part(event_type)))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class AccountDataEntry:
    """One stored piece of account data."""

    room_id: str | None
    type: str
    content: dict[str, Any]
    #: The stream position of its last change.
    position: int


def _entry(raw: bytes) -> AccountDataEntry:
    data = json.loads(raw)
    return AccountDataEntry(data["room_id"], data["type"], data["content"], data["pos"])


class AccountDataStore:
    """Typed access to the two account-data trees."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.data = db.open_tree(DATA)
        self.changes = db.open_tree(CHANGES)
        self._latest = LatestPositions(50_000)

    async def get(
        self, user_id: str, room_id: str | None, event_type: str
    ) -> AccountDataEntry | None:
        """One entry, or None."""
        raw = await self.data.get(data_key(user_id, room_id, event_type))
        return _entry(raw) if raw is not None else None

    async def put_in_batch(
        self,
        batch: IWriteBatch,
        user_id: str,
        room_id: str | None,
        event_type: str,
        content: dict[str, Any],
        position: int,
    ) -> None:
        """
        Add the writes that set one entry at C{position} to C{batch}
        (reads the previous entry to drop its old index key).
        """
        key = data_key(user_id, room_id, event_type)
        user = _part(user_id)
        old = await self.data.get(key)
        if old is not None:
            batch.delete(CHANGES, user + SEP + u64(json.loads(old)["pos"]))
        batch.put(
            DATA,
            key,
            _dumps({"room_id": room_id, "type": event_type, "content": content, "pos": position}),
        )
        batch.put(CHANGES, user + SEP + u64(position), key)
        self._latest.wrote(user_id, position)

    async def put(
        self,
        user_id: str,
        room_id: str | None,
        event_type: str,
        content: dict[str, Any],
        position: int,
    ) -> None:
        """Set one entry at stream C{position}, atomically."""
        batch = self.db.batch()
        await self.put_in_batch(batch, user_id, room_id, event_type, content, position)
        await self.db.write(batch)

    async def changed_since(
        self, user_id: str, since: int, to: int | None = None
    ) -> list[AccountDataEntry]:
        """
        Every entry of the user whose last change is in C{(since, to]}
        (C{to=None}: no upper bound), in stream order.
        """
        if await self._latest.nothing_after(user_id, since, lambda: self.max_position(user_id)):
            return []
        user = _part(user_id) + SEP
        end = user + u64(to + 1) if to is not None else prefix_end(user)
        rows = await self.changes.iter_range(user + u64(since + 1), end)
        if not rows:
            return []
        values = await self.data.get_many([v for _, v in rows])
        return [_entry(v) for v in values if v is not None]

    async def all_for_user(self, user_id: str) -> list[AccountDataEntry]:
        """Every entry of the user (global and per room)."""
        rows = await self.data.scan_prefix(_part(user_id) + SEP)
        return [_entry(v) for _, v in rows]

    async def max_position(self, user_id: str) -> int:
        """The stream position of the user's latest change (0 if none)."""
        user = _part(user_id) + SEP
        rows = await self.changes.scan_prefix(user, reverse=True, limit=1)
        return from_u64(rows[0][0][len(user):]) if rows else 0
