"""
Devices of local users (client-server-api "Relationship between access
tokens and devices", "Device Management").

Layout::

    userdeviceid_metadata  user_id 0xFF device_id -> JSON {"display_name", "created_ts"}
    userdeviceid_lastseen  user_id 0xFF device_id -> JSON {"ip", "ts"}

Last-seen data lives in its own tree so that flushing it is a blind write
(no read-modify-write of the metadata). The tokens of a device are in
L{conduit_tw.storage.stores.tokens}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, join
from conduit_tw.storage.stores.tokens import TokenStore

METADATA = "userdeviceid_metadata"
LAST_SEEN = "userdeviceid_lastseen"


@dataclass(frozen=True)
class Device:
    """One device as the client-server API shows it."""

    user_id: str
    device_id: str
    display_name: str | None = None
    created_ts: int = 0
    last_seen_ip: str | None = None
    last_seen_ts: int | None = None

    def to_client(self) -> dict[str, Any]:
        """
        The C{client_device.yaml} object. Unknown values are C{null} rather
        than absent, as Synapse answers and clients (matrix-nio) require.
        """
        return {
            "device_id": self.device_id,
            "display_name": self.display_name,
            "last_seen_ip": self.last_seen_ip,
            "last_seen_ts": self.last_seen_ts,
        }


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class DeviceStore:
    """Device metadata and last-seen records."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.metadata = db.open_tree(METADATA)
        self.last_seen = db.open_tree(LAST_SEEN)

    async def get(self, user_id: str, device_id: str) -> Device | None:
        """One device, or None."""
        key = join(user_id, device_id)
        raw = await self.metadata.get(key)
        if raw is None:
            return None
        seen = await self.last_seen.get(key)
        return _device(user_id, device_id, raw, seen)

    async def exists(self, user_id: str, device_id: str) -> bool:
        """Whether the user has this device."""
        return await self.metadata.get(join(user_id, device_id)) is not None

    async def list(self, user_id: str) -> list[Device]:
        """Every device of the user, ordered by device ID (two prefix scans)."""
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.metadata.scan_prefix(prefix)
        seen = dict(await self.last_seen.scan_prefix(prefix))
        return [
            _device(user_id, k[len(prefix):].decode("utf-8"), v, seen.get(k))
            for k, v in rows
        ]

    async def device_ids(self, user_id: str) -> list[str]:
        """The IDs of every device of the user."""
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.metadata.scan_prefix(prefix)
        return [k[len(prefix):].decode("utf-8") for k, _ in rows]

    def put_in_batch(
        self, batch: Any, user_id: str, device_id: str, display_name: str | None, created_ts: int
    ) -> None:
        """Create or overwrite a device's metadata in C{batch}."""
        batch.put(
            METADATA,
            join(user_id, device_id),
            _dumps({"display_name": display_name, "created_ts": created_ts}),
        )

    def put_last_seen_in_batch(self, batch: Any, user_id: str, device_id: str, ip: str, ts: int) -> None:
        """Record when and from where the device was last seen, in C{batch}."""
        batch.put(LAST_SEEN, join(user_id, device_id), _dumps({"ip": ip, "ts": ts}))

    def delete_in_batch(self, batch: Any, user_id: str, device_id: str) -> None:
        """Remove the device's metadata and last-seen record in C{batch}."""
        key = join(user_id, device_id)
        batch.delete(METADATA, key)
        batch.delete(LAST_SEEN, key)

    async def login_device(
        self,
        tokens: TokenStore,
        user_id: str,
        device_id: str,
        *,
        create: bool,
        display_name: str | None,
        ip: str | None,
        now: int,
        is_guest: bool = False,
        expires_at: int | None = None,
        with_refresh: bool = False,
        appservice_id: str | None = None,
    ) -> tuple[str, str | None]:
        """
        In one batch: create the device's metadata (when C{create}), record
        its last-seen data (when C{ip} is given) and issue fresh tokens
        through C{tokens}.

        @return: the new access token and refresh token (or None).
        """
        batch = self.db.batch()
        if create:
            self.put_in_batch(batch, user_id, device_id, display_name, now)
        if ip is not None:
            self.put_last_seen_in_batch(batch, user_id, device_id, ip, now)
        access, refresh = await tokens.issue_in_batch(
            batch,
            user_id,
            device_id,
            is_guest=is_guest,
            expires_at=expires_at,
            with_refresh=with_refresh,
            appservice_id=appservice_id,
        )
        await tokens.write(batch)
        return access, refresh

    async def delete_devices(self, tokens: TokenStore, user_id: str, device_ids: Iterable[str]) -> list[str]:
        """
        Delete devices and every token bound to them (through C{tokens}) in
        one batch. Tokens are removed even when a device's metadata is
        missing, so a half-created device can never keep a live token.

        @param device_ids: distinct, non-empty IDs; unknown ones are skipped.
        @return: the IDs that existed and were deleted.
        """
        batch = self.db.batch()
        deleted: list[str] = []
        for device_id in device_ids:
            exists = await self.exists(user_id, device_id)
            await tokens.remove_all_for_device_in_batch(batch, user_id, device_id)
            if exists:
                self.delete_in_batch(batch, user_id, device_id)
                deleted.append(device_id)
        if len(batch):
            await tokens.write(batch)
        return deleted

    async def set_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """Rename a device; False if it does not exist."""
        key = join(user_id, device_id)
        raw = await self.metadata.get(key)
        if raw is None:
            return False
        data = json.loads(raw)
        data["display_name"] = display_name
        batch = self.db.batch()
        batch.put(METADATA, key, _dumps(data))
        await self.db.write(batch)
        return True

    async def write_last_seen(self, records: Iterable[tuple[str, str, str, int]]) -> None:
        """Write many C{(user_id, device_id, ip, ts)} records in one batch."""
        batch = self.db.batch()
        for user_id, device_id, ip, ts in records:
            self.put_last_seen_in_batch(batch, user_id, device_id, ip, ts)
        if len(batch):
            await self.db.write(batch)


def _device(user_id: str, device_id: str, raw: bytes, seen: bytes | None) -> Device:
    data = json.loads(raw)
    ip = ts = None
    if seen is not None:
        s = json.loads(seen)
        ip, ts = s.get("ip"), s.get("ts")
    return Device(
        user_id=user_id,
        device_id=device_id,
        display_name=data.get("display_name"),
        created_ts=data.get("created_ts", 0),
        last_seen_ip=ip,
        last_seen_ts=ts,
    )
