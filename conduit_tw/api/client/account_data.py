"""
Client config (client-server-api "Client Config", account-data.yaml):

- C{GET|PUT /_matrix/client/v3/user/{userId}/account_data/{type}}
- C{GET|PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the account data endpoints."""
    handler = hs.account_data

    async def put_global(request: MatrixRequest, user_id: str, type: str):
        requester = await hs.auth.get_requester(request)
        content = request.json_object()
        hs.ratelimit.check_size(content, "Account data")
        await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        await handler.client_put(requester.user_id, user_id, None, type, content)
        return {}

    async def get_global(request: MatrixRequest, user_id: str, type: str):
        requester = await hs.auth.get_requester(request)
        return await handler.client_get(requester.user_id, user_id, None, type)

    async def put_room(request: MatrixRequest, user_id: str, room_id: str, type: str):
        requester = await hs.auth.get_requester(request)
        content = request.json_object()
        hs.ratelimit.check_size(content, "Account data")
        await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        await handler.client_put(requester.user_id, user_id, room_id, type, content)
        return {}

    async def get_room(request: MatrixRequest, user_id: str, room_id: str, type: str):
        requester = await hs.auth.get_requester(request)
        return await handler.client_get(requester.user_id, user_id, room_id, type)

    client_route(router, "PUT", "/user/{user_id}/account_data/{type}", put_global)
    client_route(router, "GET", "/user/{user_id}/account_data/{type}", get_global)
    client_route(router, "PUT", "/user/{user_id}/rooms/{room_id}/account_data/{type}", put_room)
    client_route(router, "GET", "/user/{user_id}/rooms/{room_id}/account_data/{type}", get_room)
