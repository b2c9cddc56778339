"""
Server-side key backups (client-server-api "Server-side key backups",
key_backup.yaml): backup versions, and the encrypted room keys clients
store in them. Each user sees and changes only their own backups (every
method takes the requester's user ID, never another).

- Keys are written only to the current version, the newest one not
  deleted; writing to another is 403 C{M_WRONG_ROOM_KEYS_VERSION} with
  C{current_version}, and 404 when the user has no backup at all.
- A key for a session already stored replaces it only when it is better
  by the spec's rules (L{keeps_existing}).
- Reading or deleting keys works on any live version; an unknown or
  deleted version is 404 C{M_NOT_FOUND}.

Changes are serialised per user, so a version's key count and etag (kept
by L{KeyBackupStore}) always match its keys.
"""

from __future__ import annotations

from typing import Any, Mapping

from conduit_tw.errors import Codes, MatrixError, invalid_param, not_found
from conduit_tw.storage.stores.key_backup import BackedUpSession, BackupVersion, KeyBackupStore
from conduit_tw.util.linearizer import Linearizer

#: The largest version number (versions are u64 keys).
_MAX_VERSION = 2**64 - 1


def keeps_existing(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """
    Whether the stored key C{old} stays when C{new} is uploaded for the same
    session ("Server-side key backups"): the verified one wins; then the
    lower C{first_message_index}; then the lower C{forwarded_count}. On a
    full tie the stored key stays (nothing changes, the etag neither).
    """
    if old["is_verified"] != new["is_verified"]:
        return bool(old["is_verified"])
    if old["first_message_index"] != new["first_message_index"]:
        return old["first_message_index"] < new["first_message_index"]
    return old["forwarded_count"] <= new["forwarded_count"]


def parse_version(version: str) -> int | None:
    """The number of a version id we issued (C{"1"}, C{"2"} ...), or None."""
    if not (version.isascii() and version.isdigit()) or version != str(int(version)):
        return None
    number = int(version)
    return number if 0 < number <= _MAX_VERSION else None


def _unknown_version() -> MatrixError:
    return not_found("Unknown backup version")


def _version_json(info: BackupVersion) -> dict[str, Any]:
    return {
        "algorithm": info.algorithm,
        "auth_data": info.auth_data,
        "count": info.count,
        "etag": str(info.etag),
        "version": str(info.version),
    }


def _update_json(info: BackupVersion) -> dict[str, Any]:
    """RoomKeysUpdateResponse."""
    return {"etag": str(info.etag), "count": info.count}


class KeyBackupHandler:
    """The room_keys endpoints; see the module docstring."""

    def __init__(self, store: KeyBackupStore) -> None:
        self.store = store
        self._per_user = Linearizer("key_backup")

    # -- versions

    async def create_version(
        self, user_id: str, algorithm: str, auth_data: dict[str, Any]
    ) -> dict[str, Any]:
        """
        C{POST /room_keys/version}: a new (current) version, numbered after
        every earlier one. The algorithm is stored as given, like
        C{auth_data}: the server never uses it, and refusing names outside
        the spec's list would lock out clients trying newer algorithms.
        """
        async with self._per_user.queue(user_id):
            version = await self.store.create_version(user_id, algorithm, auth_data)
        return {"version": str(version)}

    async def _live(self, user_id: str, version: str) -> BackupVersion:
        number = parse_version(version)
        info = None if number is None else await self.store.get_version(user_id, number)
        if info is None:
            raise _unknown_version()
        return info

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        """C{GET /room_keys/version[/{version}]}: that version, or the current one."""
        if version is None:
            info = await self.store.latest_version(user_id)
            if info is None:
                raise not_found("No current backup version")
        else:
            info = await self._live(user_id, version)
        return _version_json(info)

    async def update_version(
        self, user_id: str, version: str, algorithm: str, auth_data: dict[str, Any],
        body_version: str | None = None,
    ) -> None:
        """
        C{PUT /room_keys/version/{version}}: only C{auth_data} changes; the
        body's C{algorithm} must be the version's, its C{version} (if any)
        the path's (400 M_INVALID_PARAM otherwise).
        """
        async with self._per_user.queue(user_id):
            info = await self._live(user_id, version)
            if body_version is not None and body_version != version:
                raise invalid_param("The version in the body does not match the path")
            if algorithm != info.algorithm:
                raise invalid_param("Algorithm does not match")
            await self.store.set_auth_data(user_id, info, auth_data)

    async def delete_version(self, user_id: str, version: str) -> None:
        """
        C{DELETE /room_keys/version/{version}}: the version and all its keys
        go; deleting it again succeeds, an unknown version is 404.
        """
        number = parse_version(version)
        if number is None:
            raise _unknown_version()
        async with self._per_user.queue(user_id):
            if await self.store.get_version(user_id, number) is not None:
                await self.store.delete_version(user_id, number)
            elif not await self.store.was_deleted(user_id, number):
                raise _unknown_version()

    async def user_deactivated(self, user_id: str, erase: bool = False) -> None:
        """C{AccountHandler.on_deactivated}: every backup of the user goes."""
        async with self._per_user.queue(user_id):
            await self.store.delete_user(user_id)

    # -- keys

    async def put_keys(
        self, user_id: str, version: str, sessions: list[BackedUpSession]
    ) -> dict[str, Any]:
        """
        C{PUT /room_keys/keys[/{roomId}[/{sessionId}]]}: store C{sessions}
        (already checked) in the current version, keeping a stored key
        where the spec's rules prefer it; one batch for all of them.
        """
        async with self._per_user.queue(user_id):
            current = await self.store.latest_version(user_id)
            if current is None:
                raise not_found("No current backup version")
            if str(current.version) != version:
                raise MatrixError(
                    403, Codes.WRONG_ROOM_KEYS_VERSION, "Wrong backup version.",
                    current_version=str(current.version),
                )
            # The last of several uploads for one session in one body wins
            # the comparison against the stored key like any other.
            unique = {(s.room_id, s.session_id): s for s in sessions}
            stored = await self.store.get_many(user_id, current.version, list(unique))
            changed = []
            added = 0
            for new, old in zip(unique.values(), stored):
                if old is None:
                    added += 1
                elif keeps_existing(old.data, new.data):
                    continue
                changed.append(new)
            await self.store.put_sessions(user_id, current, changed, added)
            return _update_json(current)

    async def get_keys(
        self, user_id: str, version: str, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        """
        C{GET /room_keys/keys[/{roomId}[/{sessionId}]]}: C{{"rooms": ...}},
        C{{"sessions": ...}} (empty when none), or one KeyBackupData (404
        when absent).
        """
        info = await self._live(user_id, version)
        if session_id is not None and room_id is not None:
            found = await self.store.get_session(user_id, info.version, room_id, session_id)
            if found is None:
                raise not_found("Key not found.")
            return found.data
        sessions = await self.store.get_sessions(user_id, info.version, room_id)
        if room_id is not None:
            return {"sessions": {s.session_id: s.data for s in sessions}}
        rooms: dict[str, Any] = {}
        for s in sessions:
            rooms.setdefault(s.room_id, {"sessions": {}})["sessions"][s.session_id] = s.data
        return {"rooms": rooms}

    async def delete_keys(
        self, user_id: str, version: str, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        """C{DELETE /room_keys/keys[/{roomId}[/{sessionId}]]} from any live version."""
        async with self._per_user.queue(user_id):
            info = await self._live(user_id, version)
            await self.store.delete_sessions(user_id, info, room_id, session_id)
            return _update_json(info)

