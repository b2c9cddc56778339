"""
C{GET /_matrix/client/versions} (client-server-api "Getting the versions").

A version is listed when every module the spec's feature profiles mark
Required for the Web and Desktop profiles ("Feature Profiles": content
repository, direct messaging, ignoring users, instant messaging, presence,
receipts, room history visibility, room upgrades, typing, mentions, VoIP)
works here, with the endpoints each version added. Third-party invites,
required only by the Mobile profile, are not supported (docs/clients.md);
tests/api/test_versions.py checks that the required modules' endpoints are
mounted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.resource import MatrixRequest, encode_json
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: Spec versions whose mandatory modules we implement: v1.1 up to v1.20,
#: the newest in the spec copy this server follows.
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(f"v1.{minor}" for minor in range(1, 21))

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
