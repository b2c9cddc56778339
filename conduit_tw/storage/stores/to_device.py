"""
Send-to-device messages waiting for local devices (client-server-api
"Send-to-Device messaging").

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    todevice      user·device·u64 stream position -> JSON {"type", "sender", "content"}
    todevice_txn  sender·sender device·txn_id -> b""
    todevice_txn_bytime  u64 ms + sender·sender device·txn_id -> b"" (expiry.py)

- A device's inbox is one prefix; its messages are ordered by the stream
  position of the C{sendToDevice} request that brought them, so "what is
  waiting up to position X" and "delete what the client has seen (up to
  its C{since} token)" are range operations.
- C{todevice_txn} remembers the transaction IDs already used by a sending
  device, for idempotency ("Transaction identifiers"), for a day
  (L{ToDeviceStore.purge_txns}, by the periodic housekeeping).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, join, u64
from conduit_tw.storage.stores.expiry import index_key, purge_before

INBOX = "todevice"
TXNS = "todevice_txn"
TXNS_BY_TIME = "todevice_txn_bytime"


def _prefix(user_id: str, device_id: str) -> bytes:
    return join(user_id, device_id) + SEP


class ToDeviceStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.inbox = db.open_tree(INBOX)
        self.txns = db.open_tree(TXNS)
        self.txns_by_time = db.open_tree(TXNS_BY_TIME)

    async def seen_txn(self, sender: str, device_id: str, txn_id: str) -> bool:
        """Whether the sending device already used C{txn_id}."""
        return await self.txns.get(join(sender, device_id, txn_id)) is not None

    async def put(
        self,
        sender: str,
        sender_device: str,
        txn_id: str,
        event_type: str,
        position: int,
        messages: Iterable[tuple[str, str, Any]],
        now_ms: int,
    ) -> None:
        """
        Queue C{(user, device, content)} messages at C{position} and record
        the transaction ID, in one batch.
        """
        batch = self.db.batch()
        for user_id, device_id, content in messages:
            value = {"type": event_type, "sender": sender, "content": content}
            batch.put(
                INBOX,
                _prefix(user_id, device_id) + u64(position),
                json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            )
        key = join(sender, sender_device, txn_id)
        batch.put(TXNS, key, b"")
        batch.put(TXNS_BY_TIME, index_key(now_ms, key), b"")
        await self.db.write(batch)

    async def purge_txns(self, before_ms: int) -> int:
        """Forget the transaction IDs used before C{before_ms}; returns how many."""
        return await purge_before(self.db, self.txns_by_time, TXNS_BY_TIME, TXNS, before_ms)

    async def messages(self, user_id: str, device_id: str, up_to: int) -> list[dict[str, Any]]:
        """The device's waiting messages with a position up to C{up_to}, oldest first."""
        prefix = _prefix(user_id, device_id)
        rows = await self.inbox.iter_range(prefix, prefix + u64(up_to + 1))
        return [json.loads(v) for _, v in rows]

    async def delete_up_to(self, user_id: str, device_id: str, position: int) -> None:
        """Delete the device's messages with a position up to C{position} (seen by the client)."""
        prefix = _prefix(user_id, device_id)
        rows = await self.inbox.iter_range(prefix, prefix + u64(position + 1))
        if rows:
            batch = self.db.batch()
            for k, _ in rows:
                batch.delete(INBOX, k)
            await self.db.write(batch)

    async def delete_device(self, user_id: str, device_id: str) -> None:
        """Drop a deleted device's inbox and transaction IDs, in one batch."""
        prefix = _prefix(user_id, device_id)
        batch = self.db.batch()
        for k, _ in await self.inbox.scan_prefix(prefix):
            batch.delete(INBOX, k)
        for k, _ in await self.txns.scan_prefix(prefix):
            batch.delete(TXNS, k)
        if len(batch):
            await self.db.write(batch)
