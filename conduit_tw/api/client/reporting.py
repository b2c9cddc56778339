"""
Reporting content (client-server-api "Reporting content"; handlers/reports.py):

- C{POST /rooms/{roomId}/report/{eventId}}
- C{POST /rooms/{roomId}/report} (v1.13)
- C{POST /users/{userId}/report} (v1.14)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the report endpoints."""
    reports = hs.reports

    async def reporter(request: MatrixRequest) -> tuple["Requester", dict[str, Any]]:
        """The requester and the report body, rate-limited like a message."""
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.message, requester)
        return requester, body

    async def report_event(request: MatrixRequest, room_id: str, event_id: str):
        requester, body = await reporter(request)
        await reports.report_event(requester, room_id, event_id, body)
        return {}

    async def report_room(request: MatrixRequest, room_id: str):
        requester, body = await reporter(request)
        await reports.report_room(requester, room_id, body)
        return {}

    async def report_user(request: MatrixRequest, user_id: str):
        requester, body = await reporter(request)
        await reports.report_user(requester, user_id, body)
        return {}

    client_route(router, "POST", "/rooms/{room_id}/report/{event_id}", report_event)
    client_route(router, "POST", "/rooms/{room_id}/report", report_room)
    client_route(router, "POST", "/users/{user_id}/report", report_user)
