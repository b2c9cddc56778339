"""
Mount federation servlets that need an authenticated origin.

Every endpoint of the server-server API whose OpenAPI definition has
C{security: signedRequest} requires X-Matrix authentication (the version,
key and .well-known endpoints do not); register those with
L{federation_route}, and the handler receives the verified C{origin}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.router import Handler, Router

if TYPE_CHECKING:
    from conduit_tw.federation.auth import FederationAuth


def federation_route(
    router: Router, auth: "FederationAuth", method: str, path: str, handler: Handler
) -> None:
    """
    Add C{handler} at C{path} (the full C{/_matrix/federation/...}
    pattern) behind X-Matrix authentication: it is called as
    C{handler(request, origin=..., **path_vars)} only once the signature
    is verified; 401/403 answers otherwise come from
    L{FederationAuth.authenticate}.
    """

    async def authenticated(request: Any, **args: str) -> Any:
        origin = await auth.authenticate(request)
        return await handler(request, origin=origin, **args)

    authenticated.__doc__ = handler.__doc__
    authenticated.__name__ = getattr(handler, "__name__", "authenticated")
    router.add(method, path, authenticated)
