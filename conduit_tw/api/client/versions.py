"""C{GET /_matrix/client/versions} (client-server-api "Getting the versions")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.resource import MatrixRequest, encode_json
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: Spec versions whose mandatory modules we implement. Kept honest: a
#: version is listed only once everything it requires of a server works
#: (accounts, rooms, sync, ...). Extend it as those land.
SUPPORTED_VERSIONS: tuple[str, ...] = ()

#: Unstable features we advertise (MSC name -> enabled).
UNSTABLE_FEATURES: dict[str, bool] = {}


def register(router: Router, hs: "HomeServer") -> None:
    """Mount /versions; the body is constant, so it is encoded once."""
    body = encode_json(
        {"versions": list(SUPPORTED_VERSIONS), "unstable_features": UNSTABLE_FEATURES}
    )

    async def get_versions(request: MatrixRequest):
        """Answer the supported spec versions; no authentication needed."""
        request.setHeader(b"Content-Type", b"application/json")
        return 200, body

    router.add("GET", "/_matrix/client/versions", get_versions)
