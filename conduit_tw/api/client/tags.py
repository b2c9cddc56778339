"""
Room tagging (client-server-api "Room Tagging", tags.yaml):

- C{GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags}
- C{PUT|DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the tag endpoints."""
    handler = hs.account_data

    async def get_tags(request: MatrixRequest, user_id: str, room_id: str):
        requester = await hs.auth.get_requester(request)
        return await handler.get_tags(requester.user_id, user_id, room_id)

    async def put_tag(request: MatrixRequest, user_id: str, room_id: str, tag: str):
        requester = await hs.auth.get_requester(request)
        await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        await handler.add_tag(
            requester.user_id, user_id, room_id, tag, request.json_object(),
            check_size=hs.ratelimit.check_size,
        )
        return {}

    async def delete_tag(request: MatrixRequest, user_id: str, room_id: str, tag: str):
        requester = await hs.auth.get_requester(request)
        await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        await handler.remove_tag(requester.user_id, user_id, room_id, tag)
        return {}

    client_route(router, "GET", "/user/{user_id}/rooms/{room_id}/tags", get_tags)
    client_route(router, "PUT", "/user/{user_id}/rooms/{room_id}/tags/{tag}", put_tag)
    client_route(router, "DELETE", "/user/{user_id}/rooms/{room_id}/tags/{tag}", delete_tag)
