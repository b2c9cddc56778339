"""
Reading room history (client-server-api "Getting events for a room",
handlers/room_history.py):

- C{GET /rooms/{roomId}/messages}
- C{GET /rooms/{roomId}/context/{eventId}}
- C{GET /rooms/{roomId}/members}, C{GET /rooms/{roomId}/joined_members}
- C{GET /v1/rooms/{roomId}/timestamp_to_event} (v1.6; also the MSC3030
  unstable path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the room history endpoints."""
    history = hs.room_history

    async def messages(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return await history.messages(
            requester, room_id,
            from_token=request.arg("from"),
            to_token=request.arg("to"),
            direction=request.arg("dir", "b") or "b",
            limit=request.int_arg("limit", None, minimum=0),
            filter_param=request.arg("filter"),
        )

    async def context(request: MatrixRequest, room_id: str, event_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return await history.context(
            requester, room_id, event_id,
            limit=request.int_arg("limit", None, minimum=0),
            filter_param=request.arg("filter"),
        )

    async def members(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return await history.members(
            requester, room_id,
            at=request.arg("at"),
            membership=request.arg("membership"),
            not_membership=request.arg("not_membership"),
        )

    async def joined_members(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request)
        return await history.joined_members(requester, room_id)

    async def timestamp_to_event(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request)
        ts = request.int_arg("ts")
        if ts is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing ts")
        direction = request.arg("dir")
        if direction is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing dir")
        return await history.timestamp_to_event(requester, room_id, ts, direction)

    client_route(router, "GET", "/rooms/{room_id}/messages", messages)
    client_route(router, "GET", "/rooms/{room_id}/context/{event_id}", context)
    client_route(router, "GET", "/rooms/{room_id}/members", members)
    client_route(router, "GET", "/rooms/{room_id}/joined_members", joined_members)
    client_route(
        router, "GET", "/rooms/{room_id}/timestamp_to_event", timestamp_to_event,
        versions=("v1", "unstable/org.matrix.msc3030"),
    )
