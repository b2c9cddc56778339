"""
Application service registrations and their outgoing transaction queues
(application-service-api "Registration", "Pushing events").

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    appservice_registration  id                -> the registration YAML, as given (UTF-8)
    appservice_queue         id·u64(seq)       -> b"p" + event_id           (a room event)
                                                | b"e" + compact JSON       (an ephemeral event)
                                                | b"d" + compact JSON       (a to-device message)
    appservice_directory     id·network_id·room_id -> b""  (published in that network's directory)
    appservice_bridge_data   id·key            -> bytes (an in-process bridge's own data)
    appservice_txn           id                -> u64 last transaction ID handed out
                             id·b"pending"     -> u64(txn ID) + key of its last item

- Registrations made from the admin room live here; those of
  C{app_service_config_files} are read from their files at each start and
  never stored.
- A queue is its appservice's key prefix, in the order things were queued
  (C{seq} grows for the process and starts above the largest stored one).
  Items leave only once the appservice answered 200 to the transaction
  carrying them, so a restart resends them.
- Transaction IDs only grow: the next is C{last + 1}. The transaction
  being sent is recorded (its ID and its last item) when its ID is handed
  out and forgotten with its items once delivered, so after a restart
  the same transaction (same ID, same items) is sent again: an appservice
  never sees an ID twice with different content.
- Unregistering deletes the registration, its queue and its counter in one
  batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.values import compact_json
from conduit_tw.storage.keys import SEP, from_u64, join, split, u64
from conduit_tw.storage.txn import StoreTxn

REGISTRATIONS = "appservice_registration"
QUEUE = "appservice_queue"
DIRECTORY = "appservice_directory"
BRIDGE_DATA = "appservice_bridge_data"
TXN_IDS = "appservice_txn"

_EVENT, _EPHEMERAL, _TO_DEVICE = b"p", b"e", b"d"
_PENDING = b"pending"



def _prefix(appservice_id: str) -> bytes:
    return appservice_id.encode("utf-8") + SEP


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """One queued item: a room event by C{event_id}, an C{ephemeral} event or a C{to_device} message."""

    key: bytes
    event_id: str | None = None
    ephemeral: dict[str, Any] | None = None
    to_device: dict[str, Any] | None = None


class AppserviceStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.registrations = db.open_tree(REGISTRATIONS)
        self.queue = db.open_tree(QUEUE)
        self.txn_ids = db.open_tree(TXN_IDS)
        self.directory = db.open_tree(DIRECTORY)
        self.bridge_data = db.open_tree(BRIDGE_DATA)
        self._seq = 0

    # -- registrations

    async def all_registrations(self) -> list[tuple[str, str]]:
        """Every stored registration as C{(id, yaml_text)}."""
        rows = await self.registrations.iter_from(b"")
        return [(k.decode("utf-8"), v.decode("utf-8")) for k, v in rows]

    async def put_registration(self, appservice_id: str, yaml_text: str) -> None:
        """Store (or replace) a registration."""
        await self.registrations.insert(appservice_id.encode("utf-8"), yaml_text.encode("utf-8"))

    async def delete_registration(self, appservice_id: str) -> None:
        """Forget a registration with its queue and transaction counter, atomically."""
        batch = self.db.batch()
        batch.delete(REGISTRATIONS, appservice_id.encode("utf-8"))
        batch.delete(TXN_IDS, appservice_id.encode("utf-8"))
        batch.delete(TXN_IDS, _prefix(appservice_id) + _PENDING)
        for key, _ in await self.queue.scan_prefix(_prefix(appservice_id)):
            batch.delete(QUEUE, key)
        for key, _ in await self.directory.scan_prefix(_prefix(appservice_id)):
            batch.delete(DIRECTORY, key)
        for key, _ in await self.bridge_data.scan_prefix(_prefix(appservice_id)):
            batch.delete(BRIDGE_DATA, key)
        await self.db.write(batch)

    # -- in-process bridges' own data

    async def get_bridge_data(self, appservice_id: str, key: str) -> bytes | None:
        """A value a bridge stored."""
        return await self.bridge_data.get(join(appservice_id, key))

    async def put_bridge_data(self, appservice_id: str, key: str, value: bytes | None) -> None:
        """Store (or, with None, delete) a bridge's value."""
        if value is None:
            await self.bridge_data.remove(join(appservice_id, key))
        else:
            await self.bridge_data.insert(join(appservice_id, key), value)

    # -- published room directories per network

    async def set_network_room(
        self, appservice_id: str, network_id: str, room_id: str, public: bool
    ) -> None:
        """Publish (or hide) a room in the appservice's directory of C{network_id}."""
        key = join(appservice_id, network_id, room_id)
        if public:
            await self.directory.insert(key, b"")
        else:
            await self.directory.remove(key)

    async def network_rooms(
        self, appservice_id: str | None = None, network_id: str | None = None
    ) -> list[tuple[str, str, str]]:
        """C{(appservice_id, network_id, room_id)} published, for one appservice (and network) or all."""
        prefix = b""
        if appservice_id is not None:
            prefix = _prefix(appservice_id)
            if network_id is not None:
                prefix += network_id.encode("utf-8") + SEP
        rows = await self.directory.scan_prefix(prefix)
        out = []
        for key, _ in rows:
            parts = split(key)
            if len(parts) == 3:
                a, n, r = (p.decode("utf-8") for p in parts)
                out.append((a, n, r))
        return out

    # -- queues

    async def load_queues(self) -> list[str]:
        """
        The appservices with something queued; moves the sequence past the
        largest stored one. Call once at start-up, before queueing.
        """
        ids: list[str] = []
        for key, _ in await self.queue.iter_from(b""):
            owner, _, seq = key.rpartition(SEP)
            self._seq = max(self._seq, from_u64(seq))
            name = owner.decode("utf-8")
            if not ids or ids[-1] != name:
                ids.append(name)
        return ids

    def _next_key(self, appservice_id: str) -> bytes:
        self._seq += 1
        return _prefix(appservice_id) + u64(self._seq)

    @staticmethod
    def _item(kind: str, value: Any) -> bytes:
        if kind == "event":
            return _EVENT + value.encode("utf-8")
        if kind == "ephemeral":
            return _EPHEMERAL + compact_json(value)
        if kind == "to_device":
            return _TO_DEVICE + compact_json(value)
        raise ValueError(f"unknown queue item kind {kind!r}")

    def queue_event(self, txn: StoreTxn, appservice_ids: list[str], event_id: str) -> None:
        """Queue a room event for these appservices in the event's own C{txn}."""
        for appservice_id in appservice_ids:
            txn.batch.put(QUEUE, self._next_key(appservice_id), self._item("event", event_id))

    async def enqueue(self, items: list[tuple[str, str, Any]]) -> None:
        """
        Queue C{(appservice_id, kind, value)} items in one batch: kind
        C{"event"} with an event ID, C{"ephemeral"} or C{"to_device"} with
        a JSON object.
        """
        if not items:
            return
        batch = self.db.batch()
        for appservice_id, kind, value in items:
            batch.put(QUEUE, self._next_key(appservice_id), self._item(kind, value))
        await self.db.write(batch)

    async def head(
        self, appservice_id: str, limit: int, up_to: bytes | None = None
    ) -> list[QueuedItem]:
        """The oldest C{limit} items queued for an appservice (none after key C{up_to})."""
        rows = await self.queue.scan_prefix(_prefix(appservice_id), limit=limit)
        out = []
        for key, raw in rows:
            if up_to is not None and key > up_to:
                break
            kind, body = raw[:1], raw[1:]
            if kind == _EVENT:
                out.append(QueuedItem(key, event_id=body.decode("utf-8")))
            elif kind == _EPHEMERAL:
                out.append(QueuedItem(key, ephemeral=json.loads(body)))
            else:
                out.append(QueuedItem(key, to_device=json.loads(body)))
        return out

    async def pending(self, appservice_id: str) -> tuple[int, bytes] | None:
        """The transaction handed out and not yet delivered: C{(txn ID, key of its last item)}."""
        raw = await self.txn_ids.get(_prefix(appservice_id) + _PENDING)
        return (from_u64(raw[:8]), raw[8:]) if raw is not None else None

    async def start_transaction(self, appservice_id: str, last_key: bytes) -> int:
        """Hand out the next transaction ID for the items up to C{last_key}, recorded as pending."""
        key = appservice_id.encode("utf-8")
        raw = await self.txn_ids.get(key)
        txn_id = (from_u64(raw) if raw is not None else 0) + 1
        batch = self.db.batch()
        batch.put(TXN_IDS, key, u64(txn_id))
        batch.put(TXN_IDS, _prefix(appservice_id) + _PENDING, u64(txn_id) + last_key)
        await self.db.write(batch)
        return txn_id

    async def remove(self, appservice_id: str, keys: list[bytes], delivered: bool = True) -> None:
        """Drop items (delivered, or vanished) and, if C{delivered}, the pending record, in one batch."""
        batch = self.db.batch()
        for key in keys:
            batch.delete(QUEUE, key)
        if delivered:
            batch.delete(TXN_IDS, _prefix(appservice_id) + _PENDING)
        if len(batch):
            await self.db.write(batch)
