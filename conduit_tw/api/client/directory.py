"""
Room aliases and the published room directory (client-server-api "Room
aliases", "Published room directory"); the rules are in
L{conduit_tw.handlers.directory}.

- C{PUT/GET/DELETE /directory/room/{roomAlias}} (C{GET} needs no token,
  as the spec says)
- C{GET /rooms/{roomId}/aliases}
- C{GET/PUT /directory/list/room/{roomId}} (C{GET} needs no token)
- C{GET/POST /publicRooms}: both need a token unless
  C{allow_public_room_directory_without_auth} is set (a token that is
  sent is checked either way); C{server} other than ours lists that
  server's directory over federation
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError, missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def parse_public_rooms_body(body: dict[str, Any]) -> dict[str, Any]:
    """
    The arguments of L{DirectoryHandler.public_rooms} from a C{POST
    /publicRooms} body (the client's and the federation's are the same:
    C{limit}, C{since}, C{filter}, C{include_all_networks},
    C{third_party_instance_id}); 400 M_BAD_JSON for wrong types.
    """
    limit = body.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise _bad("limit must be a non-negative integer")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise _bad("since must be a string")
    filt = body.get("filter")
    if filt is None:
        filt = {}
    if not isinstance(filt, dict):
        raise _bad("filter must be an object")
    term = filt.get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise _bad("filter.generic_search_term must be a string")
    room_types: Any = filt.get("room_types")
    if room_types is not None and (
        not isinstance(room_types, list)
        or not all(t is None or isinstance(t, str) for t in room_types)
    ):
        raise _bad("filter.room_types must be a list of strings and nulls")
    all_networks = body.get("include_all_networks", False)
    if not isinstance(all_networks, bool):
        raise _bad("include_all_networks must be a boolean")
    instance = body.get("third_party_instance_id")
    if instance is not None and not isinstance(instance, str):
        raise _bad("third_party_instance_id must be a string")
    return {
        "limit": limit,
        "since": since or None,
        "search_term": term or None,
        "room_types": room_types,
        "include_all_networks": all_networks,
        "third_party_instance_id": instance,
    }


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the directory endpoints."""
    directory = hs.directory

    async def put_alias(request: MatrixRequest, room_alias: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        if "room_id" not in body:
            raise missing_param("room_id is required")
        await hs.ratelimit.check_requester(hs.ratelimit.room_aliases, requester)
        await directory.create_alias(requester, room_alias, body["room_id"])
        return {}

    async def get_alias(request: MatrixRequest, room_alias: str):
        return await directory.resolve_alias(room_alias)

    async def delete_alias(request: MatrixRequest, room_alias: str):
        requester = await hs.auth.get_requester(request)
        await hs.ratelimit.check_requester(hs.ratelimit.room_aliases, requester)
        await directory.delete_alias(requester, room_alias)
        return {}

    async def room_aliases(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        return {"aliases": await directory.local_aliases(requester, room_id)}

    async def get_visibility(request: MatrixRequest, room_id: str):
        return {"visibility": await directory.get_visibility(room_id)}

    async def put_visibility(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.directory, requester)
        await directory.set_visibility(requester, room_id, body.get("visibility", "public"))
        return {}

    async def authenticate_listing(request: MatrixRequest) -> None:
        if hs.config.allow_public_room_directory_without_auth and hs.auth.token_of(request) is None:
            return
        await hs.auth.get_requester(request, allow_guest=True)

    async def get_public_rooms(request: MatrixRequest):
        await authenticate_listing(request)
        return await directory.public_rooms(
            limit=request.int_arg("limit", minimum=0),
            since=request.arg("since") or None,
            server=request.arg("server") or None,
        )

    async def post_public_rooms(request: MatrixRequest):
        await authenticate_listing(request)
        return await directory.public_rooms(
            server=request.arg("server") or None, **parse_public_rooms_body(request.json_object())
        )

    client_route(router, "PUT", "/directory/room/{room_alias}", put_alias)
    client_route(router, "GET", "/directory/room/{room_alias}", get_alias)
    client_route(router, "DELETE", "/directory/room/{room_alias}", delete_alias)
    client_route(router, "GET", "/rooms/{room_id}/aliases", room_aliases)
    client_route(router, "GET", "/directory/list/room/{room_id}", get_visibility)
    client_route(router, "PUT", "/directory/list/room/{room_id}", put_visibility)
    client_route(router, "GET", "/publicRooms", get_public_rooms)
    client_route(router, "POST", "/publicRooms", post_public_rooms)
