"""
Device list changes, for C{device_lists} in /sync and C{/keys/changes}
(client-server-api "Tracking the device list for a user").

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    keychange          u64 stream position·user_id -> b""
    userkeychange      user_id -> u64 stream position of the user's latest entry in keychange
    devicelistchange   viewer·u64 stream position·kind·other user -> b""

- C{keychange}: users whose devices or keys changed (a device with keys
  added or removed, device keys or cross-signing keys uploaded), one
  entry per user at its latest position (the previous one is deleted in
  the same batch, through C{userkeychange}). Who may see an entry (users
  sharing a room with that user) is decided when reading.
- C{devicelistchange}: entries meant for one local viewer: C{kind} C{c}
  ("changed": they now share a room, or the viewer's signature on the
  other's key changed) or C{l} ("left": they no longer share a room).
"""

from __future__ import annotations

from typing import Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase, IWriteBatch
from conduit_tw.storage.keys import SEP, from_u64, u64
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LatestPositions

KEY_CHANGES = "keychange"
USER_KEY_CHANGE = "userkeychange"
VIEWER_CHANGES = "devicelistchange"

CHANGED = b"c"
LEFT = b"l"


class DeviceListStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.key_tree = db.open_tree(KEY_CHANGES)
        self.user_tree = db.open_tree(USER_KEY_CHANGE)
        self.viewer_tree = db.open_tree(VIEWER_CHANGES)
        #: Latest positions: None for C{keychange}, a viewer for C{devicelistchange}.
        self._latest = LatestPositions(50_000)

    async def put_key_change(self, user_id: str, position: int) -> None:
        """Record that C{user_id}'s devices or keys changed at C{position}."""
        uid = user_id.encode("utf-8")
        batch = self.db.batch()
        old = await self.user_tree.get(uid)
        if old is not None:
            batch.delete(KEY_CHANGES, old + uid)
        batch.put(KEY_CHANGES, u64(position) + uid, b"")
        batch.put(USER_KEY_CHANGE, uid, u64(position))
        self._latest.wrote(None, position)
        await self.db.write(batch)

    async def _last_key_change(self) -> int:
        rows = await self.key_tree.iter_range(b"", None, reverse=True, limit=1)
        return from_u64(rows[0][0][:8]) if rows else 0

    async def key_changes(self, since: int, to: int) -> list[str]:
        """Users with a key change in C{(since, to]}."""
        if await self._latest.nothing_after(None, since, self._last_key_change):
            return []
        rows = await self.key_tree.iter_range(u64(since + 1), u64(to + 1))
        return [k[8:].decode("utf-8") for k, _ in rows]

    def put_viewer_changes(
        self, txn: StoreTxn, position: int, entries: Iterable[tuple[str, bytes, str]]
    ) -> None:
        """Add C{(viewer, kind, other)} entries at C{position} to C{txn}."""
        self._put_entries(txn.batch, position, entries)

    async def add_viewer_changes(
        self, position: int, entries: Iterable[tuple[str, bytes, str]]
    ) -> None:
        """L{put_viewer_changes} in a batch of its own."""
        batch = self.db.batch()
        self._put_entries(batch, position, entries)
        await self.db.write(batch)

    def _put_entries(
        self, batch: IWriteBatch, position: int, entries: Iterable[tuple[str, bytes, str]]
    ) -> None:
        for viewer, kind, other in entries:
            self._latest.wrote(viewer, position)
            batch.put(
                VIEWER_CHANGES,
                viewer.encode("utf-8") + SEP + u64(position) + kind + other.encode("utf-8"),
                b"",
            )

    async def viewer_changes(self, viewer: str, since: int, to: int) -> list[tuple[int, bytes, str]]:
        """The viewer's C{(position, kind, other)} entries in C{(since, to]}, oldest first."""
        prefix = viewer.encode("utf-8") + SEP

        async def last() -> int:
            rows = await self.viewer_tree.scan_prefix(prefix, reverse=True, limit=1)
            return from_u64(rows[0][0][len(prefix):len(prefix) + 8]) if rows else 0

        if await self._latest.nothing_after(viewer, since, last):
            return []
        rows = await self.viewer_tree.iter_range(prefix + u64(since + 1), prefix + u64(to + 1))
        n = len(prefix)
        return [
            (from_u64(k[n:n + 8]), k[n + 8:n + 9], k[n + 9:].decode("utf-8")) for k, _ in rows
        ]
