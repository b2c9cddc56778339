"""
Client-server endpoints for application services and third-party networks:

- C{POST /_matrix/client/v1/appservice/{appserviceId}/ping} (client-server-api
  "Pinging", v1.7): only with that appservice's C{as_token}
- C{GET /thirdparty/protocols}, C{/thirdparty/protocol/{protocol}},
  C{/thirdparty/location[/{protocol}]}, C{/thirdparty/user[/{protocol}]}
  (client-server-api "Third-party Networks"): forwarded to the appservices
  that registered the protocol
- C{PUT /directory/list/appservice/{networkId}/{roomId}}
  (application-service-api "Published room directories"): only with an
  C{as_token}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def _query(request: MatrixRequest) -> dict[str, Any]:
    """The request's query parameters, the access token left out."""
    out: dict[str, Any] = {}
    for raw_key, values in (request.args or {}).items():
        key = raw_key.decode("utf-8", "replace")
        if key != "access_token" and values:
            out[key] = values[0].decode("utf-8", "replace")
    return out


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the endpoints."""
    appservices = hs.appservices

    async def ping(request: MatrixRequest, appserviceId: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        return await appservices.ping(requester, appserviceId, body.get("transaction_id"))

    async def protocols(request: MatrixRequest):
        await hs.auth.get_requester(request)
        return await appservices.protocols()

    async def protocol(request: MatrixRequest, protocol: str):
        await hs.auth.get_requester(request)
        return await appservices.protocol(protocol)

    def lookup(kind: str):
        async def handler(request: MatrixRequest, protocol: str | None = None):
            await hs.auth.get_requester(request)
            return (200, await appservices.lookup(kind, protocol, _query(request)))

        return handler

    async def network_visibility(request: MatrixRequest, networkId: str, roomId: str):
        requester = await hs.auth.get_requester(request)
        await appservices.set_network_visibility(requester, networkId, roomId, request.json_object())
        return {}

    router.add("POST", "/_matrix/client/v1/appservice/{appserviceId}/ping", ping)
    client_route(router, "PUT", "/directory/list/appservice/{networkId}/{roomId}", network_visibility)
    client_route(router, "GET", "/thirdparty/protocols", protocols)
    client_route(router, "GET", "/thirdparty/protocol/{protocol}", protocol)
    for kind in ("location", "user"):
        client_route(router, "GET", f"/thirdparty/{kind}/{{protocol}}", lookup(kind))
        client_route(router, "GET", f"/thirdparty/{kind}", lookup(kind))
