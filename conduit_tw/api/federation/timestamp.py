"""
C{GET /_matrix/federation/v1/timestamp_to_event/{roomId}} (server-server-api
"Timestamp to event"), answered by L{conduit_tw.federation.timestamp}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the endpoint."""
    lookup = hs.federation_timestamps

    async def timestamp_to_event(request: MatrixRequest, origin: str, roomId: str) -> Any:
        """GET /timestamp_to_event/{roomId}?ts=&dir=."""
        ts = request.int_arg("ts")
        if ts is None:
            raise missing_param("Missing query parameter 'ts'")
        direction = request.arg("dir")
        if direction is None:
            raise missing_param("Missing query parameter 'dir'")
        return await lookup.serve(origin, roomId, ts, direction)

    federation_route(
        router, hs.federation_auth, "GET",
        "/_matrix/federation/v1/timestamp_to_event/{roomId}", timestamp_to_event,
    )
