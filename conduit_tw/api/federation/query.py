"""
Federation queries (server-server-api "Querying for information",
query.yaml), answered for our aliases and users:

- C{GET /_matrix/federation/v1/query/directory?room_alias=}: the room ID
  and the servers of its joined members, ours first; 404 M_NOT_FOUND for
  aliases we do not have (those of other servers included).
- C{GET /_matrix/federation/v1/query/profile?user_id=[&field=]}: the
  public profile of one of our users; 403 M_FORBIDDEN when
  C{allow_profile_lookup_federation_requests} is off (the spec lets a
  server deny profile look-ups over federation).

Both need a signed request (C{security: signedRequest}). Other query
types answer 404 M_UNRECOGNIZED as unknown paths do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import forbidden, missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the query endpoints."""
    directory = hs.directory
    profile = hs.profile
    allow_profile = hs.config.allow_profile_lookup_federation_requests

    async def query_directory(request: MatrixRequest, origin: str):
        alias = request.arg("room_alias")
        if not alias:
            raise missing_param("room_alias is required")
        return await directory.resolve_local_alias(alias)

    async def query_profile(request: MatrixRequest, origin: str):
        if not allow_profile:
            raise forbidden("Profile look-ups over federation are disabled on this server")
        user_id = request.arg("user_id")
        if not user_id:
            raise missing_param("user_id is required")
        return await profile.query(user_id, request.arg("field") or None)

    auth = hs.federation_auth
    federation_route(router, auth, "GET", "/_matrix/federation/v1/query/directory", query_directory)
    federation_route(router, auth, "GET", "/_matrix/federation/v1/query/profile", query_profile)
