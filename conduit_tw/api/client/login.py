"""
Session endpoints (client-server-api "Login", "Refreshing access tokens"):

- C{GET|POST /_matrix/client/v3/login}
- C{POST /_matrix/client/v1/login/get_token} (UIA, v1.7; every call
  re-prompts, and only requests that attempt a stage are rate-limited)
- C{POST /_matrix/client/v3/refresh}
- C{POST /_matrix/client/v3/logout}, C{POST /_matrix/client/v3/logout/all}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.body import check_body
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.handlers.uia import PASSWORD

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: C{POST /login} body key -> spec type (client-server-api "Login"; C{user},
#: C{medium} and C{address} are the deprecated identifier forms).
LOGIN_SCHEMA = {
    "type": "string", "identifier": "object", "password": "string", "token": "string",
    "device_id": "string", "initial_device_display_name": "string",
    "refresh_token": "boolean", "user": "string", "medium": "string", "address": "string",
}


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the login, refresh and logout endpoints."""
    limits = hs.ratelimit
    flows = {"flows": hs.login.flows()}

    async def get_login(request: MatrixRequest):
        return flows

    async def post_login(request: MatrixRequest):
        ip = request.client_ip
        limits.check_ip(limits.login, ip)
        body = request.json_object()
        check_body(body, LOGIN_SCHEMA)
        return await hs.login.login(body, request, ip)

    async def post_get_token(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        auth = body.get("auth")
        if isinstance(auth, dict) and auth.get("type") is not None:
            # Only stage attempts are rate-limited: a request without auth
            # (the UIA probe) always answers the 401 with flows, so a client
            # is never locked out of starting the flow it must redo per token.
            await limits.check_requester(limits.login, requester)
        await hs.uia.authenticate(
            body, "login/get_token", [[PASSWORD]], user_id=requester.user_id
        )
        return await hs.login.create_login_token(requester)

    async def post_refresh(request: MatrixRequest):
        return await hs.login.refresh(request.json_object())

    async def post_logout(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True, allow_expired=True)
        await hs.login.logout(requester)
        return {}

    async def post_logout_all(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True, allow_expired=True)
        await hs.login.logout_all(requester)
        return {}

    client_route(router, "GET", "/login", get_login)
    client_route(router, "POST", "/login", post_login)
    router.add("POST", "/_matrix/client/v1/login/get_token", post_get_token)
    client_route(router, "POST", "/refresh", post_refresh, versions=("v3",))
    client_route(router, "POST", "/logout", post_logout)
    client_route(router, "POST", "/logout/all", post_logout_all)
