"""C{GET /_matrix/client/v3/voip/turnServer} (voip.yaml); see L{conduit_tw.handlers.voip}."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount C{/voip/turnServer}."""
    turn = hs.turn

    async def turn_server(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return turn.credentials(requester.user_id, requester.is_guest)

    client_route(router, "GET", "/voip/turnServer", turn_server)
