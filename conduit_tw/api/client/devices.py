"""
Device management (client-server-api "Device Management"):

- C{GET /_matrix/client/v3/devices}, C{GET|PUT|DELETE /devices/{deviceId}}
- C{POST /_matrix/client/v3/delete_devices}

Deleting devices uses UIA (C{m.login.password}), except for appservices
(v1.17). A UIA session authorises only the deletion it was started for
(the device ID, or the list of IDs). C{DELETE /devices/{deviceId}} of a
device the caller does not have answers 404 M_NOT_FOUND ("The current
user has no device with the given ID", as C{GET}/C{PUT} do) before any UIA
round, so another user's device is never answered with a 401. C{PUT} only
updates existing devices here; creating devices is for appservices (v1.17)
and lands with them.

Device objects (C{client_device.yaml}) keep C{display_name} as C{null}
when the device has none: matrix-nio's schema requires the key (see
tests.integration.test_nio_accounts), so it is not left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.uia import PASSWORD

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the device endpoints."""
    devices = hs.devices

    async def get_devices(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return {"devices": [d.to_client() for d in await devices.list_devices(requester.user_id)]}

    async def get_device(request: MatrixRequest, device_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return (await devices.get_device(requester.user_id, device_id)).to_client()

    async def put_device(request: MatrixRequest, device_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.keys, requester)
        if "display_name" in body:
            await devices.set_display_name(requester.user_id, device_id, body["display_name"])
        else:
            await devices.get_device(requester.user_id, device_id)
        return {}

    async def _uia(
        requester: "Requester", body: dict[str, Any], endpoint: str, operation: Any
    ) -> None:
        if requester.appservice_id is None:
            await hs.uia.authenticate(
                body, endpoint, [[PASSWORD]], user_id=requester.user_id, operation=operation
            )

    async def delete_device(request: MatrixRequest, device_id: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        # Ownership first: a device the caller does not have is a 404, not a UIA round.
        await devices.get_device(requester.user_id, device_id)
        await _uia(requester, body, "devices/delete", ("DELETE", device_id))
        await devices.delete_devices(requester.user_id, [device_id])
        return {}

    async def post_delete_devices(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        ids = body.get("devices")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise MatrixError(400, Codes.BAD_JSON, "'devices' must be a list of device IDs")
        await _uia(requester, body, "delete_devices", ("POST", tuple(sorted(set(ids)))))
        await devices.delete_devices(requester.user_id, ids)
        return {}

    client_route(router, "GET", "/devices", get_devices)
    client_route(router, "GET", "/devices/{device_id}", get_device)
    client_route(router, "PUT", "/devices/{device_id}", put_device)
    client_route(router, "DELETE", "/devices/{device_id}", delete_device)
    client_route(router, "POST", "/delete_devices", post_delete_devices)
