"""
C{GET /_matrix/federation/v1/hierarchy/{roomId}} (server-server-api
"Spaces"), answered by L{conduit_tw.federation.hierarchy}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the endpoint."""
    spaces = hs.federation_hierarchy

    async def hierarchy(request: MatrixRequest, origin: str, roomId: str) -> Any:
        """GET /hierarchy/{roomId}?suggested_only=."""
        suggested = request.arg("suggested_only") or "false"
        if suggested not in ("true", "false"):
            raise MatrixError(400, Codes.INVALID_PARAM, "suggested_only must be true or false")
        return await spaces.serve(origin, roomId, suggested == "true")

    federation_route(router, hs.federation_auth, "GET", "/_matrix/federation/v1/hierarchy/{roomId}", hierarchy)
