"""
Synapse's shared-secret registration endpoint, for Synapse's
C{register_new_matrix_user} and existing tooling
(handlers/shared_secret.py):

- C{GET /_synapse/admin/v1/register}: C{{"nonce": ...}}
- C{POST /_synapse/admin/v1/register}: create a user (and admin)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.body import body_field
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

PATH = "/_synapse/admin/v1/register"


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the shared-secret registration endpoint."""
    handler = hs.shared_secret_registration
    limits = hs.ratelimit

    async def get_nonce(request: MatrixRequest):
        limits.registration_checks.check(request.client_ip)
        return {"nonce": handler.new_nonce()}

    async def post_register(request: MatrixRequest):
        ip = request.client_ip
        limits.registration.check(ip, update=False)
        body = request.json_object()
        result = await handler.register(
            body_field(body, "nonce", "string", required=True),
            body_field(body, "username", "string", required=True),
            body_field(body, "password", "string", required=True),
            body_field(body, "mac", "string", required=True),
            admin=body_field(body, "admin", "boolean", default=False),
            displayname=body_field(body, "displayname", "string"),
            user_type=body_field(body, "user_type", "string"),
            ip=ip,
        )
        limits.registration.take(ip)
        return result

    router.add("GET", PATH, get_nonce)
    router.add("POST", PATH, post_register)
