"""
Typing notifications (client-server-api "Typing Notifications", typing.yaml):

- C{PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the typing endpoint."""
    handler = hs.typing

    async def put_typing(request: MatrixRequest, room_id: str, user_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        await handler.client_set_typing(requester.user_id, room_id, user_id, request.json_object())
        return {}

    client_route(router, "PUT", "/rooms/{room_id}/typing/{user_id}", put_typing)
