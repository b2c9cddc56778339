"""C{/_matrix/key/v2/server}: our published signing keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the key endpoints."""

    async def get_server_keys(request: MatrixRequest, key_id: str | None = None):
        """
        C{GET /_matrix/key/v2/server}: server-server-api "Publishing Keys".
        The deprecated C{/server/{keyId}} form answers the same document.
        """
        request.setHeader(b"Content-Type", b"application/json")
        return 200, hs.server_keys.response_bytes()

    router.add("GET", "/_matrix/key/v2/server", get_server_keys)
    router.add("GET", "/_matrix/key/v2/server/{key_id}", get_server_keys)
