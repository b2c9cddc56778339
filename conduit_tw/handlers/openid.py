"""
OpenID tokens (client-server-api "OpenID", openid.yaml; server-server-api
"OpenID", federation openid.yaml).

- L{OpenIdHandler.request_token}: C{POST /user/{userId}/openid/request_token}
  for the authenticated user only (403 M_FORBIDDEN for anyone else; guests
  are refused by the API layer, as Synapse does). The token is valid for
  C{openid_token_ttl} seconds and for nothing but C{/openid/userinfo}: it
  lives in its own store (L{OpenIdTokenStore}), never among access tokens.
- L{OpenIdHandler.userinfo}: C{GET /_matrix/federation/v1/openid/userinfo}
  answers C{{"sub": user_id}}; unknown or expired tokens are 401
  M_UNKNOWN_TOKEN. Callers are services rather than homeservers, so the
  request is not signed (the endpoint has no C{security} in the spec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.storage.stores.openid import OpenIdTokenStore
from conduit_tw.storage.stores.tokens import new_token

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester


class OpenIdHandler:
    """See the module docstring."""

    def __init__(
        self, server_name: str, store: OpenIdTokenStore, clock_ms: Callable[[], int], ttl_s: int
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.clock_ms = clock_ms
        #: C{openid_token_ttl}.
        self.ttl_s = ttl_s

    async def request_token(self, requester: "Requester", user_id: str) -> dict[str, Any]:
        """A new token for the requester (C{user_id} must be them)."""
        if user_id != requester.user_id:
            raise forbidden("Cannot request OpenID tokens for other users")
        token = new_token("oid")
        now = self.clock_ms()
        await self.store.add(token, user_id, now + self.ttl_s * 1000, now)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": self.ttl_s,
        }

    async def userinfo(self, token: str | None) -> dict[str, Any]:
        """C{{"sub": user_id}} for a valid token; 401 otherwise."""
        if not token:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access_token")
        user_id = await self.store.user_for(token, self.clock_ms())
        if user_id is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token unknown or expired")
        return {"sub": user_id}
