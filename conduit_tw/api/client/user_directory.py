"""
Finding users: C{POST /_matrix/client/v3/user_directory/search} (users.yaml,
handlers/user_directory.py) and C{GET /_matrix/client/v1/mutual_rooms}
(mutual_rooms.yaml, handlers/mutual_rooms.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the user directory and mutual rooms endpoints."""
    directory = hs.user_directory
    mutual = hs.mutual_rooms

    async def search(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        if "search_term" not in body:
            raise missing_param("search_term is required")
        return await directory.search(requester.user_id, body["search_term"], body.get("limit"))

    async def mutual_rooms(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return await mutual.mutual_rooms(
            requester.user_id, request.arg("user_id"), request.arg("from") or None
        )

    client_route(router, "POST", "/user_directory/search", search)
    router.add("GET", "/_matrix/client/v1/mutual_rooms", mutual_rooms)
