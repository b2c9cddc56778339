"""
Relationships and threads (handlers/relations.py):

- C{GET /v1/rooms/{roomId}/relations/{eventId}} and its C{/{relType}} and
  C{/{relType}/{eventType}} forms (relations.yaml; C{recurse}, v1.10);
- C{GET /v1/rooms/{roomId}/threads} (threads_list.yaml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

V1 = ("v1",)


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the relations and threads endpoints."""
    relations_handler = hs.relations

    async def relations(
        request: MatrixRequest,
        room_id: str,
        event_id: str,
        rel_type: str | None = None,
        event_type: str | None = None,
    ):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        recurse = request.bool_arg("recurse") if request.arg("recurse") is not None else None
        return await relations_handler.relations(
            requester, room_id, event_id,
            rel_type=rel_type,
            event_type=event_type,
            direction=request.arg("dir", "b") or "b",
            from_token=request.arg("from"),
            to_token=request.arg("to"),
            limit=request.int_arg("limit", None, minimum=0),
            recurse=recurse,
        )

    async def threads(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return await relations_handler.threads(
            requester, room_id,
            include=request.arg("include", "all") or "all",
            from_token=request.arg("from"),
            limit=request.int_arg("limit", None, minimum=0),
        )

    base = "/rooms/{room_id}/relations/{event_id}"
    client_route(router, "GET", base, relations, V1)
    client_route(router, "GET", base + "/{rel_type}", relations, V1)
    client_route(router, "GET", base + "/{rel_type}/{event_type}", relations, V1)
    client_route(router, "GET", "/rooms/{room_id}/threads", threads, V1)
