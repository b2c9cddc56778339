"""
Account endpoints (client-server-api "Current account information",
"Password management", "Account deactivation"):

- C{GET /_matrix/client/v3/account/whoami}
- C{POST /_matrix/client/v3/account/password} (UIA)
- C{POST /_matrix/client/v3/account/deactivate} (UIA)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the account endpoints."""

    async def get_whoami(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return hs.account.whoami(requester)

    async def post_password(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        await hs.account.change_password(requester, request.json_object())
        return {}

    async def post_deactivate(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return await hs.account.deactivate_request(requester, request.json_object())

    client_route(router, "GET", "/account/whoami", get_whoami)
    client_route(router, "POST", "/account/password", post_password)
    client_route(router, "POST", "/account/deactivate", post_deactivate)
