"""
Server-side key backups (client-server-api "Server-side key backups",
key_backup.yaml): per user, numbered backup versions and the encrypted
megolm session keys stored in them. The server never reads the keys: a
session's C{session_data} is opaque JSON.

Layout::

    userbackupversion_info  user_id 0xFF u64 version
                            -> JSON {"algorithm", "auth_data", "count", "etag"}
                               or {"deleted": true} (a tombstone)
    userbackupsession_key   user_id 0xFF u64 version 0xFF sha256hex(room_id)
                            0xFF sha256hex(session_id)
                            -> JSON {"room_id", "session_id", "first_message_index",
                               "forwarded_count", "is_verified", "session_data"}

Versions are numbered from 1 per user and never reused: a deleted version
keeps its tombstone, so the next one is always the last key plus one and
an old version id can never name new data. C{count} is the number of
sessions in the version and C{etag} a counter bumped by every change of
them, both rewritten in the batch that changes the sessions.

Room and session IDs are client-chosen strings of any length, so keys
carry their SHA-256 (hex: never 0xFF, fixed size, so a key stays under
the 511-byte limit for any user ID) and the value carries the IDs
themselves. A room's sessions are one prefix scan; a version's too.

Writers must be serialised per user by the caller (the key backup
handler holds a per-user lock): version numbers and the count/etag
record are read-modify-write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, digest_part, from_u64, join, u64
from conduit_tw.storage.values import compact_json

VERSIONS = "userbackupversion_info"
SESSIONS = "userbackupsession_key"


@dataclass
class BackupVersion:
    """One live backup version: its metadata and key count/etag counter."""

    version: int
    algorithm: str
    auth_data: dict[str, Any]
    count: int
    etag: int

    def _record(self) -> bytes:
        return compact_json(
            {"algorithm": self.algorithm, "auth_data": self.auth_data,
             "count": self.count, "etag": self.etag}
        )


@dataclass
class BackedUpSession:
    """One stored session key (C{data}: the KeyBackupData object)."""

    room_id: str
    session_id: str
    data: dict[str, Any]


def _session(raw: bytes) -> BackedUpSession:
    value = json.loads(raw)
    room_id = value.pop("room_id")
    session_id = value.pop("session_id")
    return BackedUpSession(room_id, session_id, value)


class KeyBackupStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.versions = db.open_tree(VERSIONS)
        self.sessions = db.open_tree(SESSIONS)

    # -- versions

    async def _version_rows(self, user_id: str, reverse: bool = False) -> list[tuple[int, dict[str, Any]]]:
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.versions.scan_prefix(prefix, reverse=reverse)
        return [(from_u64(k[len(prefix):]), json.loads(v)) for k, v in rows]

    @staticmethod
    def _live(version: int, record: dict[str, Any]) -> BackupVersion | None:
        if record.get("deleted"):
            return None
        return BackupVersion(
            version, record["algorithm"], record["auth_data"], record["count"], record["etag"]
        )

    async def get_version(self, user_id: str, version: int) -> BackupVersion | None:
        """The live version C{version} of the user, or None (unknown or deleted)."""
        raw = await self.versions.get(join(user_id, u64(version)))
        return None if raw is None else self._live(version, json.loads(raw))

    async def was_deleted(self, user_id: str, version: int) -> bool:
        """Whether the user had this version and deleted it."""
        raw = await self.versions.get(join(user_id, u64(version)))
        return raw is not None and bool(json.loads(raw).get("deleted"))

    async def latest_version(self, user_id: str) -> BackupVersion | None:
        """The user's newest live version (the one keys are written to), or None."""
        for version, record in await self._version_rows(user_id, reverse=True):
            live = self._live(version, record)
            if live is not None:
                return live
        return None

    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
        """A new, empty version numbered after every earlier one (deleted ones too)."""
        rows = await self.versions.scan_prefix(user_id.encode("utf-8") + SEP, reverse=True, limit=1)
        version = from_u64(rows[0][0][-8:]) + 1 if rows else 1
        info = BackupVersion(version, algorithm, auth_data, 0, 0)
        await self.versions.insert(join(user_id, u64(version)), info._record())
        return version

    async def set_auth_data(self, user_id: str, info: BackupVersion, auth_data: dict[str, Any]) -> None:
        """Replace the C{auth_data} of a live version."""
        info.auth_data = auth_data
        await self.versions.insert(join(user_id, u64(info.version)), info._record())

    async def delete_version(self, user_id: str, version: int) -> None:
        """Tombstone the version and remove every key stored in it, in one batch."""
        batch = self.db.batch()
        batch.put(VERSIONS, join(user_id, u64(version)), compact_json({"deleted": True}))
        for key, _ in await self.sessions.scan_prefix(join(user_id, u64(version)) + SEP):
            batch.delete(SESSIONS, key)
        await self.db.write(batch)

    async def delete_user(self, user_id: str) -> None:
        """Forget every version (tombstones too) and key of the user, in one batch."""
        prefix = user_id.encode("utf-8") + SEP
        batch = self.db.batch()
        for key, _ in await self.versions.scan_prefix(prefix):
            batch.delete(VERSIONS, key)
        for key, _ in await self.sessions.scan_prefix(prefix):
            batch.delete(SESSIONS, key)
        if len(batch):
            await self.db.write(batch)

    # -- sessions

    @staticmethod
    def _prefix(user_id: str, version: int, room_id: str | None = None) -> bytes:
        parts: list[bytes | str] = [user_id, u64(version)]
        if room_id is not None:
            parts.append(digest_part(room_id))
        return join(*parts) + SEP

    @staticmethod
    def _key(user_id: str, version: int, room_id: str, session_id: str) -> bytes:
        return join(user_id, u64(version), digest_part(room_id), digest_part(session_id))

    async def get_sessions(
        self, user_id: str, version: int, room_id: str | None = None
    ) -> list[BackedUpSession]:
        """Every session of the version, or of one room in it."""
        rows = await self.sessions.scan_prefix(self._prefix(user_id, version, room_id))
        return [_session(v) for _, v in rows]

    async def get_session(
        self, user_id: str, version: int, room_id: str, session_id: str
    ) -> BackedUpSession | None:
        """One session, or None."""
        raw = await self.sessions.get(self._key(user_id, version, room_id, session_id))
        return None if raw is None else _session(raw)

    async def get_many(
        self, user_id: str, version: int, ids: list[tuple[str, str]]
    ) -> list[BackedUpSession | None]:
        """The stored sessions for C{(room_id, session_id)} pairs, None where absent."""
        raws = await self.sessions.get_many([self._key(user_id, version, r, s) for r, s in ids])
        return [None if raw is None else _session(raw) for raw in raws]

    async def put_sessions(
        self, user_id: str, info: BackupVersion, sessions: Iterable[BackedUpSession], added: int
    ) -> None:
        """
        Store C{sessions} (new or replacing) in the version, C{added} of them
        new, and the version's new count and etag, in one batch. Does
        nothing when C{sessions} is empty.
        """
        batch = self.db.batch()
        for s in sessions:
            value = dict(s.data, room_id=s.room_id, session_id=s.session_id)
            batch.put(SESSIONS, self._key(user_id, info.version, s.room_id, s.session_id), compact_json(value))
        if not len(batch):
            return
        info.count += added
        info.etag += 1
        batch.put(VERSIONS, join(user_id, u64(info.version)), info._record())
        await self.db.write(batch)

    async def delete_sessions(
        self, user_id: str, info: BackupVersion, room_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        """
        Remove the version's sessions (all, one room's, or one) and update
        its count and etag, in one batch; nothing is written when there was
        nothing to remove.
        """
        if session_id is not None and room_id is not None:
            key = self._key(user_id, info.version, room_id, session_id)
            keys = [key] if await self.sessions.get(key) is not None else []
        else:
            rows = await self.sessions.scan_prefix(self._prefix(user_id, info.version, room_id))
            keys = [k for k, _ in rows]
        if not keys:
            return
        batch = self.db.batch()
        for key in keys:
            batch.delete(SESSIONS, key)
        info.count -= len(keys)
        info.etag += 1
        batch.put(VERSIONS, join(user_id, u64(info.version)), info._record())
        await self.db.write(batch)
