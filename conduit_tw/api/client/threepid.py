"""
Third-party identifiers (client-server-api "Adding Account Administrative
Contact Information", administrative_contact.yaml; the C{requestToken}
endpoints of registration and password reset).

Like Conduit, this server keeps no email addresses or phone numbers and
sends no mail or SMS: a user's list is always empty, validation is never
started (each C{requestToken} answers the error the spec gives for a
medium the server does not take), and removing or unbinding an address
this server does not hold succeeds with C{no-support}. Clients (Element's
settings) then show an empty list instead of an error page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.body import body_field
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

_NOT_KEPT = "This server does not keep email addresses or phone numbers"


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the third-party identifier endpoints."""

    async def list_threepids(request: MatrixRequest):
        await hs.auth.get_requester(request)
        return {"threepids": []}

    async def add_threepid(request: MatrixRequest):
        await hs.auth.get_requester(request)
        request.json_object()
        raise MatrixError(403, Codes.THREEPID_DENIED, _NOT_KEPT)

    async def remove_threepid(request: MatrixRequest):
        await hs.auth.get_requester(request)
        body = request.json_object()
        body_field(body, "medium", "string", required=True)
        body_field(body, "address", "string", required=True)
        body_field(body, "id_server", "string")
        return {"id_server_unbind_result": "no-support"}

    async def account_request_token(request: MatrixRequest):
        await hs.auth.get_requester(request)
        request.json_object()
        raise MatrixError(400, Codes.THREEPID_MEDIUM_NOT_SUPPORTED, _NOT_KEPT)

    async def register_request_token(request: MatrixRequest):
        request.json_object()
        raise MatrixError(403, Codes.THREEPID_DENIED, _NOT_KEPT + "; register without one")

    async def password_request_token(request: MatrixRequest):
        # No account has this address: the spec's answer for an unknown one.
        request.json_object()
        raise MatrixError(400, Codes.THREEPID_NOT_FOUND, _NOT_KEPT + "; ask an admin to reset it")

    client_route(router, "GET", "/account/3pid", list_threepids)
    for path in ("/account/3pid", "/account/3pid/add", "/account/3pid/bind"):
        client_route(router, "POST", path, add_threepid)
    for path in ("/account/3pid/delete", "/account/3pid/unbind"):
        client_route(router, "POST", path, remove_threepid)
    for medium in ("email", "msisdn"):
        client_route(router, "POST", f"/account/3pid/{medium}/requestToken", account_request_token)
        client_route(router, "POST", f"/register/{medium}/requestToken", register_request_token)
        client_route(router, "POST", f"/account/password/{medium}/requestToken", password_request_token)
