"""
C{POST /_matrix/client/v3/user/{userId}/openid/request_token} and the
federation C{GET /_matrix/federation/v1/openid/userinfo} (unsigned); see
L{conduit_tw.handlers.openid}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the OpenID endpoints."""
    openid = hs.openid

    async def request_token(request: MatrixRequest, user_id: str):
        requester = await hs.auth.get_requester(request)
        request.json_object()  # reserved: an empty object
        return await openid.request_token(requester, user_id)

    async def userinfo(request: MatrixRequest):
        return await openid.userinfo(request.arg("access_token"))

    client_route(router, "POST", "/user/{user_id}/openid/request_token", request_token)
    router.add("GET", "/_matrix/federation/v1/openid/userinfo", userinfo)
