"""
Filters (client-server-api "Filtering", filter.yaml):

- C{POST /_matrix/client/v3/user/{userId}/filter}
- C{GET /_matrix/client/v3/user/{userId}/filter/{filterId}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the filter endpoints."""
    handler = hs.filters

    async def create(request: MatrixRequest, user_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        definition = request.json_object()
        hs.ratelimit.check_size(definition, "Filter")
        await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        filter_id = await handler.create(requester.user_id, user_id, definition)
        return {"filter_id": filter_id}

    async def get(request: MatrixRequest, user_id: str, filter_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return await handler.get(requester.user_id, user_id, filter_id)

    client_route(router, "POST", "/user/{user_id}/filter", create)
    client_route(router, "GET", "/user/{user_id}/filter/{filter_id}", get)
