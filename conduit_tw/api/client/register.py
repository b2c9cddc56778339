"""
Registration endpoints (client-server-api "Account registration",
"Token-authenticated registration"):

- C{POST /_matrix/client/v3/register?kind=user|guest}
- C{GET /_matrix/client/v3/register/available?username=}
- C{GET /_matrix/client/v1/register/m.login.registration_token/validity?token=}

Registration is rate-limited per client IP: each request checks the
bucket, and a token is taken only when an account is actually created
(so the several UIA round trips of one registration count once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError, forbidden

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the registration endpoints."""
    limits = hs.ratelimit

    async def post_register(request: MatrixRequest):
        ip = request.client_ip
        body = request.json_object()
        # Bridges register many users: appservices with rate_limited false
        # are not limited by address.
        limited = not hs.appservices.unlimited_registration(request, body)
        if limited:
            limits.registration.check(ip, update=False)
        kind = request.arg("kind", "user")
        result = await hs.registration.register(body, kind, ip, request)
        if limited:
            limits.registration.take(ip)
        return result

    async def get_available(request: MatrixRequest):
        limits.registration_checks.check(request.client_ip)
        if not hs.registration.enabled:
            raise forbidden("Registration has been disabled")
        username = request.arg("username")
        if username is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'username'")
        await hs.registration.check_available(username)
        return {"available": True}

    async def get_token_validity(request: MatrixRequest):
        limits.registration_checks.check(request.client_ip)
        return await hs.registration.token_validity(request.arg("token"))

    client_route(router, "POST", "/register", post_register)
    client_route(router, "GET", "/register/available", get_available)
    router.add(
        "GET",
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        get_token_validity,
    )
