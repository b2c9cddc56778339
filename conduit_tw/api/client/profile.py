"""
Profiles (client-server-api "Profiles"):

- C{GET /_matrix/client/v3/profile/{userId}}
- C{GET|PUT|DELETE /_matrix/client/v3/profile/{userId}/{keyName}}

Reading needs no access token (as in the spec's API description).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the profile endpoints."""
    profile = hs.profile

    async def get_profile(request: MatrixRequest, user_id: str):
        return await profile.get_profile(user_id)

    async def get_field(request: MatrixRequest, user_id: str, key: str):
        return await profile.get_field(user_id, key)

    async def put_field(request: MatrixRequest, user_id: str, key: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        await hs.ratelimit.check_requester(hs.ratelimit.profile, requester)
        await profile.set_field(requester, user_id, key, request.json_object())
        return {}

    async def delete_field(request: MatrixRequest, user_id: str, key: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        await hs.ratelimit.check_requester(hs.ratelimit.profile, requester)
        await profile.delete_field(requester, user_id, key)
        return {}

    client_route(router, "GET", "/profile/{user_id}", get_profile)
    client_route(router, "GET", "/profile/{user_id}/{key}", get_field)
    client_route(router, "PUT", "/profile/{user_id}/{key}", put_field)
    client_route(router, "DELETE", "/profile/{user_id}/{key}", delete_field)
