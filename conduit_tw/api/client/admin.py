"""
C{GET /_matrix/client/v3/admin/whois/{userId}} (client-server-api "Server
administration"): a user's devices and connections, for server admins
(and for users about themselves). The admin room is docs/admin.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount C{/admin/whois/{userId}}."""

    async def whois(request: MatrixRequest, user_id: str):
        requester = await hs.auth.get_requester(request)
        return await hs.admin_room.whois(requester, user_id)

    client_route(router, "GET", "/admin/whois/{user_id}", whois)
