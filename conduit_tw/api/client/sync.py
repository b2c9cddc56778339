"""
Syncing (client-server-api "Syncing", sync.yaml):

- C{GET /_matrix/client/v3/sync} (handlers/sync.py)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.handlers.sync import SyncRequest

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: Longest long-poll we honour (clients ask for 30 s; proxies time out around 60 s).
MAX_TIMEOUT_MS = 5 * 60 * 1000


def register(router: Router, hs: "HomeServer") -> None:
    """Mount /sync."""

    async def sync(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        flt = await hs.sync.resolve_filter(requester.user_id, request.arg("filter"))
        req = SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            filter=flt,
            since=request.arg("since") or None,
            timeout_ms=request.int_arg("timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0,
            full_state=request.bool_arg("full_state"),
            set_presence=request.arg("set_presence"),
            use_state_after=request.bool_arg("use_state_after")
            or request.bool_arg("org.matrix.msc4222.use_state_after"),
            is_guest=requester.is_guest,
        )
        return await hs.sync.sync(req)

    client_route(router, "GET", "/sync", sync)
