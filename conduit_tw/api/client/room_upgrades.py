"""C{POST /rooms/{roomId}/upgrade} (client-server-api "Room Upgrades"; handlers/room_upgrade.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the upgrade endpoint."""

    async def upgrade(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.message, requester)
        new_room_id = await hs.room_upgrades.upgrade(requester, room_id, body)
        return {"replacement_room": new_room_id}

    client_route(router, "POST", "/rooms/{room_id}/upgrade", upgrade)
