"""
Notifications (push.md "Listing Notifications", notifications.yaml):

- C{GET /_matrix/client/v3/notifications} (C{from}, C{limit}, C{only=highlight})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount /notifications."""

    async def get_notifications(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return await hs.notifications.list_notifications(
            requester.user_id,
            request.arg("from"),
            request.int_arg("limit", None, minimum=1),
            request.arg("only"),
        )

    client_route(router, "GET", "/notifications", get_notifications)
