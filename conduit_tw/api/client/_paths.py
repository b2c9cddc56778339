"""Mount one handler under several client API versions (v3 and legacy r0)."""

from __future__ import annotations

from typing import Iterable

from conduit_tw.api.router import Handler, Router

V3_AND_R0 = ("v3", "r0")


def client_route(
    router: Router, method: str, path: str, handler: Handler, versions: Iterable[str] = V3_AND_R0
) -> None:
    """Add C{handler} at C{/_matrix/client/<version><path>} for each version."""
    for version in versions:
        router.add(method, f"/_matrix/client/{version}{path}", handler)
