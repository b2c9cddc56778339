"""
Spaces and room previews (handlers/spaces.py, handlers/room_summary.py):

- C{GET /_matrix/client/v1/rooms/{roomId}/hierarchy} (space_hierarchy.yaml)
- C{GET /_matrix/client/v1/room_summary/{roomIdOrAlias}} (room_summary.yaml),
  also at MSC3266's C{/_matrix/client/unstable/im.nheko.summary/rooms/
  {roomIdOrAlias}/summary}; no token needed (the spec allows it for rooms
  anyone may preview), a token that is sent is checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the hierarchy and summary endpoints."""
    spaces = hs.spaces
    summaries = hs.room_summaries

    async def hierarchy(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        suggested = None
        if request.arg("suggested_only") is not None:
            suggested = request.bool_arg("suggested_only")
        return await spaces.hierarchy(
            requester.user_id, room_id,
            suggested_only=suggested,
            max_depth=request.int_arg("max_depth"),
            limit=request.int_arg("limit"),
            from_token=request.arg("from") or None,
        )

    async def summary(request: MatrixRequest, room: str):
        user_id = None
        if hs.auth.token_of(request) is not None:
            user_id = (await hs.auth.get_requester(request, allow_guest=True)).user_id
        return await summaries.summary(user_id, room, request.arg_list("via"))

    router.add("GET", "/_matrix/client/v1/rooms/{room_id}/hierarchy", hierarchy)
    router.add("GET", "/_matrix/client/v1/room_summary/{room}", summary)
    router.add("GET", "/_matrix/client/unstable/im.nheko.summary/rooms/{room}/summary", summary)
