"""
C{GET /_matrix/client/v3/capabilities} (client-server-api "Capabilities
negotiation").

Answers what this server lets the calling user do: the room versions
(every version this server implements, all stable, and the configured
default), password changes, display name and avatar changes, 3PID changes
(not supported here) and C{/login/get_token}. Guests may ask; the answer
reflects their restrictions (no password change, avatar or login tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def room_versions_capability(default_version: str) -> dict[str, Any]:
    """The C{m.room_versions} capability: every known version is stable."""
    return {
        "default": default_version,
        "available": {identifier: "stable" for identifier in KNOWN_ROOM_VERSIONS},
    }


def register(router: Router, hs: "HomeServer") -> None:
    """Mount C{/capabilities}."""
    room_versions = room_versions_capability(hs.config.default_room_version)

    async def get_capabilities(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        full_user = not requester.is_guest
        return {
            "capabilities": {
                "m.room_versions": room_versions,
                "m.change_password": {"enabled": full_user},
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": full_user},
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": full_user},
            }
        }

    client_route(router, "GET", "/capabilities", get_capabilities)
