"""
The room directory over federation (server-server-api "Public Room
Directory", public_rooms.yaml): C{GET} and C{POST
/_matrix/federation/v1/publicRooms}, the same listing, filters and
pagination tokens as the client's C{/publicRooms}
(L{conduit_tw.handlers.directory.DirectoryHandler.public_rooms}).

Off unless C{allow_public_room_directory_over_federation} (403
M_FORBIDDEN, after the signature is checked). A C{limit} of 0 or none
means "no limit" in this API; one page then holds the most the client API
allows (500) and C{next_batch} continues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client.directory import parse_public_rooms_body
from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import forbidden
from conduit_tw.handlers.directory import MAX_LIMIT

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

PATH = "/_matrix/federation/v1/publicRooms"


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the federation room directory."""
    directory = hs.directory
    enabled = hs.config.allow_public_room_directory_over_federation

    def check_enabled() -> None:
        if not enabled:
            raise forbidden("This server does not share its room directory over federation")

    async def get_public_rooms(request: MatrixRequest, origin: str):
        check_enabled()
        return await directory.public_rooms(
            limit=request.int_arg("limit", minimum=0) or MAX_LIMIT,
            since=request.arg("since") or None,
            include_all_networks=request.bool_arg("include_all_networks"),
            third_party_instance_id=request.arg("third_party_instance_id"),
        )

    async def post_public_rooms(request: MatrixRequest, origin: str):
        check_enabled()
        args = parse_public_rooms_body(request.json_object())
        args["limit"] = args["limit"] or MAX_LIMIT
        return await directory.public_rooms(**args)

    federation_route(router, hs.federation_auth, "GET", PATH, get_public_rooms)
    federation_route(router, hs.federation_auth, "POST", PATH, post_public_rooms)
