"""
Our users' devices and keys for other servers (server-server-api "Device
Management", "End-to-End Encryption"; user_keys.yaml, user_devices.yaml):

- C{POST /_matrix/federation/v1/user/keys/query}: device keys, master and
  self-signing keys of our users (others are left out);
- C{POST /_matrix/federation/v1/user/keys/claim}: one-time (else
  fallback) keys of our users' devices, claimed as C{/keys/claim} does;
- C{GET /_matrix/federation/v1/user/devices/{userId}}: one of our users'
  devices with keys, the C{stream_id} of the last C{m.device_list_update}
  we sent for them, and their master and self-signing keys.

Device display names are shared only with C{allow_device_name_federation}.
All need a signed request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import bad_json, invalid_param, not_found

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def _object_field(request: MatrixRequest, field: str) -> dict[str, Any]:
    body = request.json_body()
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, dict):
        raise bad_json(f"{field} must be an object")
    return value


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the user keys and devices endpoints."""
    keys = hs.e2e_keys
    federation = hs.federation_e2ee

    async def keys_query(request: MatrixRequest, origin: str):
        return await keys.query_for_server(_object_field(request, "device_keys"))

    async def keys_claim(request: MatrixRequest, origin: str):
        return await keys.claim_for_server(_object_field(request, "one_time_keys"))

    async def user_devices(request: MatrixRequest, origin: str, userId: str):
        if not userId.startswith("@") or ":" not in userId:
            raise invalid_param("Invalid user ID")
        if not federation.is_local(userId):
            raise not_found("Not one of this server's users")
        answer: dict[str, Any] = {
            "user_id": userId,
            "stream_id": await federation.local_stream_id(userId),
            "devices": await keys.devices_for_server(userId),
        }
        for field, key in (await keys.cross_signing_for_server(userId)).items():
            answer[field[:-1]] = key  # master_keys -> master_key
        return answer

    auth = hs.federation_auth
    federation_route(router, auth, "POST", "/_matrix/federation/v1/user/keys/query", keys_query)
    federation_route(router, auth, "POST", "/_matrix/federation/v1/user/keys/claim", keys_claim)
    federation_route(router, auth, "GET", "/_matrix/federation/v1/user/devices/{userId}", user_devices)
