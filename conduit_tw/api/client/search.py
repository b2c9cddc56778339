"""
C{POST /v3/search} (search.yaml; handlers/search.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the search endpoint."""
    search_handler = hs.search

    async def search(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return await search_handler.search(
            requester, request.json_object(), request.arg("next_batch")
        )

    client_route(router, "POST", "/search", search)
