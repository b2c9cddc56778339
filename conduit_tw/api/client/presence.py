"""
Presence (client-server-api "Presence", presence.yaml):

- C{GET|PUT /_matrix/client/v3/presence/{userId}/status}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the presence endpoints."""
    handler = hs.presence

    async def put_status(request: MatrixRequest, user_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        await handler.client_set(requester.user_id, user_id, request.json_object())
        return {}

    async def get_status(request: MatrixRequest, user_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return await handler.client_get(requester.user_id, user_id)

    client_route(router, "PUT", "/presence/{user_id}/status", put_status)
    client_route(router, "GET", "/presence/{user_id}/status", get_status)
