"""
Server-side key backups (client-server-api "Server-side key backups",
key_backup.yaml):

- C{POST|GET /_matrix/client/v3/room_keys/version}
- C{GET|PUT|DELETE /_matrix/client/v3/room_keys/version/{version}}
- C{GET|PUT|DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=}

Bodies are checked here against the spec's schemas (a wrong type is 400
M_BAD_JSON, a missing key M_MISSING_PARAM); the handler applies the rules.
Every endpoint acts on the requester's own backups only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from conduit_tw.api.body import body_field, check_body
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError, invalid_param, missing_param
from conduit_tw.storage.stores.key_backup import BackedUpSession

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: KeyBackupData (definitions/key_backup_data.yaml): key -> spec type; all required.
KEY_BACKUP_DATA = {
    "first_message_index": "integer",
    "forwarded_count": "integer",
    "is_verified": "boolean",
    "session_data": "object",
}

#: The body of POST /room_keys/version; PUT /room_keys/version/{version} adds C{version}.
NEW_VERSION_BODY = {"algorithm": "string", "auth_data": "object"}
VERSION_BODY = {**NEW_VERSION_BODY, "version": "string"}


def key_backup_data(value: Any, where: str) -> dict[str, Any]:
    """
    A KeyBackupData object checked against its schema (every key required,
    integers not negative); returns only the schema's keys.

    @raise MatrixError: 400 M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM.
    """
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"'{where}' must be an object")
    check_body(value, KEY_BACKUP_DATA, required=tuple(KEY_BACKUP_DATA), where=f"{where}.")
    for key in ("first_message_index", "forwarded_count"):
        if value[key] < 0:
            raise invalid_param(f"'{where}.{key}' must not be negative")
    return {key: value[key] for key in KEY_BACKUP_DATA}


def _check_room_id(room_id: str) -> None:
    if not room_id.startswith("!"):
        raise invalid_param(f"Not a room ID: {room_id!r}")


def room_key_backup(value: Any, room_id: str, where: str) -> list[BackedUpSession]:
    """A RoomKeyBackup object (C{{"sessions": {id: KeyBackupData}}}) as sessions."""
    _check_room_id(room_id)
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"'{where}' must be an object")
    sessions = body_field(value, "sessions", "object", required=True, where=f"{where}.")
    return [
        BackedUpSession(room_id, session_id, key_backup_data(data, f"{where}sessions.{session_id}"))
        for session_id, data in sessions.items()
    ]


def parse_put_body(
    body: Mapping[str, Any], room_id: str | None = None, session_id: str | None = None
) -> list[BackedUpSession]:
    """
    The sessions of a PUT body: C{{"rooms": {roomId: RoomKeyBackup}}} for
    the whole backup, a RoomKeyBackup for one room, a KeyBackupData for one
    session.
    """
    if room_id is not None and session_id is not None:
        _check_room_id(room_id)
        return [BackedUpSession(room_id, session_id, key_backup_data(body, "body"))]
    if room_id is not None:
        return room_key_backup(body, room_id, "")
    rooms = body_field(body, "rooms", "object", required=True)
    out: list[BackedUpSession] = []
    for rid, value in rooms.items():
        out.extend(room_key_backup(value, rid, f"rooms.{rid}."))
    return out


def _version_arg(request: MatrixRequest) -> str:
    """The required C{version} query parameter of the /room_keys/keys endpoints."""
    version = request.arg("version")
    if version is None:
        raise missing_param("The 'version' query parameter is required")
    return version


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the key backup endpoints."""
    handler = hs.key_backup

    async def create_version(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        check_body(body, NEW_VERSION_BODY, required=("algorithm", "auth_data"))
        return await handler.create_version(requester.user_id, body["algorithm"], body["auth_data"])

    async def current_version(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return await handler.get_version(requester.user_id, None)

    async def get_version(request: MatrixRequest, version: str):
        requester = await hs.auth.get_requester(request)
        return await handler.get_version(requester.user_id, version)

    async def update_version(request: MatrixRequest, version: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        check_body(body, VERSION_BODY, required=("algorithm", "auth_data"))
        await handler.update_version(
            requester.user_id, version, body["algorithm"], body["auth_data"], body.get("version")
        )
        return {}

    async def delete_version(request: MatrixRequest, version: str):
        requester = await hs.auth.get_requester(request)
        await handler.delete_version(requester.user_id, version)
        return {}

    async def put_keys(request: MatrixRequest, room_id: str | None = None, session_id: str | None = None):
        requester = await hs.auth.get_requester(request)
        version = _version_arg(request)
        sessions = parse_put_body(request.json_object(), room_id, session_id)
        return await handler.put_keys(requester.user_id, version, sessions)

    async def get_keys(request: MatrixRequest, room_id: str | None = None, session_id: str | None = None):
        requester = await hs.auth.get_requester(request)
        return await handler.get_keys(requester.user_id, _version_arg(request), room_id, session_id)

    async def delete_keys(request: MatrixRequest, room_id: str | None = None, session_id: str | None = None):
        requester = await hs.auth.get_requester(request)
        return await handler.delete_keys(requester.user_id, _version_arg(request), room_id, session_id)

    client_route(router, "POST", "/room_keys/version", create_version)
    client_route(router, "GET", "/room_keys/version", current_version)
    client_route(router, "GET", "/room_keys/version/{version}", get_version)
    client_route(router, "PUT", "/room_keys/version/{version}", update_version)
    client_route(router, "DELETE", "/room_keys/version/{version}", delete_version)
    for path in ("/room_keys/keys", "/room_keys/keys/{room_id}", "/room_keys/keys/{room_id}/{session_id}"):
        client_route(router, "PUT", path, put_keys)
        client_route(router, "GET", path, get_keys)
        client_route(router, "DELETE", path, delete_keys)
