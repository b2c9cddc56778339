"""C{GET /_matrix/federation/v1/version} and C{/_conduit/server_version}."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw import __version__
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

SERVER_SOFTWARE = "conduit-tw"


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the version endpoints."""

    async def federation_version(request: MatrixRequest):
        """server-server-api "Querying server version"."""
        return {"server": {"name": SERVER_SOFTWARE, "version": __version__}}

    async def conduit_server_version(request: MatrixRequest):
        """Conduit's own C{/_conduit/server_version} (name and version)."""
        return {"name": SERVER_SOFTWARE, "version": __version__}

    router.add("GET", "/_matrix/federation/v1/version", federation_version)
    router.add("GET", "/_conduit/server_version", conduit_server_version)
