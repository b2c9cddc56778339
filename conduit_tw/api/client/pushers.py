"""
Pushers (client-server-api "Push Notifications", pusher.yaml):

- C{GET /_matrix/client/v3/pushers}
- C{POST /_matrix/client/v3/pushers/set}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the pusher endpoints."""
    handler = hs.pushers

    async def get_pushers(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return {"pushers": await handler.list_pushers(requester.user_id)}

    async def set_pusher(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        hs.ratelimit.check_size(body, "Pusher")
        await hs.ratelimit.check_requester(hs.ratelimit.pushers, requester)
        await handler.set_pusher(requester, body)
        return {}

    client_route(router, "GET", "/pushers", get_pushers)
    client_route(router, "POST", "/pushers/set", set_pusher)
