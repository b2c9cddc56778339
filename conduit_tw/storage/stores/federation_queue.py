"""
The federation sender's queues and the transactions we received
(server-server-api "Transactions").

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    fedqueue_item   destination·u64(seq) -> b"p" + event_id      (a PDU, by event ID)
                                          | b"e" + compact JSON   (an EDU)
    fedqueue_meta   b"txn_id"           -> u64 last transaction ID handed out
    fedtxn_received origin              -> compact JSON [txn_id, response]

- A destination's queue is its key prefix, in the order things were
  queued (C{seq} grows for the process and starts above the largest
  stored one). Items are deleted only once the destination answered
  200 to the transaction carrying them.
- Transaction IDs are numbers that only grow, also across restarts: the
  next one is C{max(last + 1, now in ms)}, written before it is used, so
  a receiver never sees an ID of ours twice (it would answer from its
  de-duplication record and drop the new content).
- Received transactions: a sender must get a 200 before it sends a
  transaction with another ID (transactions.yaml), so only the latest
  transaction of each origin can be retried: one record per origin is
  enough for de-duplication.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.values import compact_json
from conduit_tw.storage.keys import SEP, from_u64, prefix_end, u64
from conduit_tw.storage.txn import StoreTxn

ITEMS = "fedqueue_item"
META = "fedqueue_meta"
RECEIVED = "fedtxn_received"

_TXN_ID = b"txn_id"
_PDU, _EDU = b"p", b"e"



def _prefix(destination: str) -> bytes:
    return destination.encode("utf-8") + SEP


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """One queued PDU (C{event_id}) or EDU (C{edu}) for a destination."""

    key: bytes
    event_id: str | None = None
    edu: dict[str, Any] | None = None


class FederationQueueStore:
    """The sender's queue trees; see the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.items = db.open_tree(ITEMS)
        self.meta = db.open_tree(META)
        self.received = db.open_tree(RECEIVED)
        self._seq = 0
        self._txn_id: int | None = None

    async def destinations(self) -> list[str]:
        """
        Every destination with something queued (skipping from one
        destination's prefix to the next); also moves the sequence past the
        largest stored one. Call once at start-up, before queueing.
        """
        out: list[str] = []
        start: bytes | None = b""
        while start is not None:
            rows = await self.items.iter_from(start, limit=1)
            if not rows:
                break
            destination = rows[0][0].split(SEP, 1)[0]
            prefix = destination + SEP
            last = await self.items.scan_prefix(prefix, reverse=True, limit=1)
            self._seq = max(self._seq, from_u64(last[0][0][len(prefix):]))
            out.append(destination.decode("utf-8"))
            start = prefix_end(prefix)
        return out

    def _put(self, txn: StoreTxn, destinations: Iterable[str], value: bytes) -> None:
        for destination in destinations:
            self._seq += 1
            txn.batch.put(ITEMS, _prefix(destination) + u64(self._seq), value)

    def queue_pdu(self, txn: StoreTxn, destinations: Iterable[str], event_id: str) -> None:
        """Queue a PDU (by event ID) for each destination, in C{txn}."""
        self._put(txn, destinations, _PDU + event_id.encode("utf-8"))

    def queue_edu(self, txn: StoreTxn, destinations: Iterable[str], edu: dict[str, Any]) -> None:
        """Queue an EDU for each destination, in C{txn}."""
        self._put(txn, destinations, _EDU + compact_json(edu))

    async def add_edu(self, destinations: Iterable[str], edu: dict[str, Any]) -> None:
        """L{queue_edu} in a transaction of its own, committed."""
        txn = StoreTxn(self.db)
        self.queue_edu(txn, destinations, edu)
        if len(txn.batch):
            await txn.commit()

    async def add_pdu(self, destinations: Iterable[str], event_id: str) -> None:
        """L{queue_pdu} in a transaction of its own, committed."""
        txn = StoreTxn(self.db)
        self.queue_pdu(txn, destinations, event_id)
        if len(txn.batch):
            await txn.commit()

    async def peek(self, destination: str, max_pdus: int, max_edus: int) -> list[QueuedItem]:
        """
        The oldest queued items of a destination, in order, up to the
        first one that would exceed C{max_pdus} PDUs or C{max_edus} EDUs.
        """
        rows = await self.items.scan_prefix(_prefix(destination), limit=max_pdus + max_edus)
        out: list[QueuedItem] = []
        pdus = edus = 0
        for key, value in rows:
            if value[:1] == _PDU:
                pdus += 1
                if pdus > max_pdus:
                    break
                out.append(QueuedItem(key, event_id=value[1:].decode("utf-8")))
            else:
                edus += 1
                if edus > max_edus:
                    break
                out.append(QueuedItem(key, edu=json.loads(value[1:])))
        return out

    async def remove(self, keys: Iterable[bytes]) -> None:
        """Delete sent items (their L{QueuedItem.key}s) in one batch."""
        txn = StoreTxn(self.db)
        for key in keys:
            txn.batch.delete(ITEMS, key)
        if len(txn.batch):
            await txn.commit()

    async def trim_edus(self, destination: str, keep: int) -> int:
        """
        Delete all but the newest C{keep} queued EDUs of a destination
        (PDUs stay); returns how many were deleted.
        """
        rows = await self.items.scan_prefix(_prefix(destination))
        edu_keys = [k for k, v in rows if v[:1] == _EDU]
        drop = edu_keys[: max(0, len(edu_keys) - keep)]
        await self.remove(drop)
        return len(drop)

    async def next_txn_id(self, now_ms: int) -> str:
        """A new transaction ID, larger than every earlier one (written first)."""
        if self._txn_id is None:
            raw = await self.meta.get(_TXN_ID)
            if self._txn_id is None:  # not loaded meanwhile by another caller
                self._txn_id = from_u64(raw) if raw is not None else 0
        self._txn_id = value = max(self._txn_id + 1, now_ms)
        txn = StoreTxn(self.db)
        txn.batch.put(META, _TXN_ID, u64(value))
        await txn.commit()
        return str(value)

    # -- received transactions

    async def received_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        """Our stored response to C{origin}'s transaction C{txn_id}, if it is their latest."""
        raw = await self.received.get(origin.encode("utf-8"))
        if raw is None:
            return None
        stored_id, response = json.loads(raw)
        return response if stored_id == txn_id else None

    async def put_received(self, origin: str, txn_id: str, response: dict[str, Any]) -> None:
        """Remember our response to C{origin}'s latest transaction."""
        txn = StoreTxn(self.db)
        txn.batch.put(RECEIVED, origin.encode("utf-8"), compact_json([txn_id, response]))
        await txn.commit()
