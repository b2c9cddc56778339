"""
Room membership (client-server-api "Room membership", joining.yaml,
inviting.yaml, leaving.yaml, kicking.yaml, banning.yaml, knocking.yaml):

- C{POST /join/{roomIdOrAlias}}, C{POST /rooms/{roomId}/join}
- C{POST /rooms/{roomId}/invite}
- C{POST /rooms/{roomId}/leave}, C{POST /rooms/{roomId}/forget}
- C{POST /rooms/{roomId}/kick}, C{/ban}, C{/unban}
- C{POST /knock/{roomIdOrAlias}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.body import body_field
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def _via(request: MatrixRequest) -> list[str]:
    """The C{via} servers (and the deprecated C{server_name}) of a join or knock."""
    return [s for s in request.arg_list("via") + request.arg_list("server_name") if s]


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the membership endpoints."""
    membership = hs.membership

    async def join(request: MatrixRequest, room_id_or_alias: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        if "third_party_signed" in body:
            raise MatrixError(
                400, Codes.UNRECOGNIZED, "Third-party invites are not supported by this server"
            )
        await hs.ratelimit.check_requester(hs.ratelimit.joins, requester)
        room_id = await membership.join(
            requester, room_id_or_alias, body_field(body, "reason", "string"), extra=body,
            via=_via(request),
        )
        return {"room_id": room_id}

    async def join_room(request: MatrixRequest, room_id: str):
        return await join(request, room_id)

    async def invite(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        if "user_id" not in body and ("medium" in body or "address" in body):
            raise MatrixError(
                400, Codes.UNRECOGNIZED,
                "Third-party invites are not supported by this server; invite by user ID",
            )
        if "user_id" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing user_id")
        await hs.ratelimit.check_requester(hs.ratelimit.invites, requester)
        await hs.ratelimit.check_requester(hs.ratelimit.message, requester)
        await membership.invite(requester, room_id, body["user_id"], body_field(body, "reason", "string"))
        return {}

    async def leave(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        await membership.leave(requester, room_id, body_field(body, "reason", "string"))
        return {}

    async def forget(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        await membership.forget(requester, room_id)
        return {}

    def moderation(action):
        async def handler(request: MatrixRequest, room_id: str):
            requester = await hs.auth.get_requester(request)
            body = request.json_object()
            if "user_id" not in body:
                raise MatrixError(400, Codes.MISSING_PARAM, "Missing user_id")
            await action(requester, room_id, body["user_id"], body_field(body, "reason", "string"))
            return {}

        return handler

    async def knock(request: MatrixRequest, room_id_or_alias: str):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.joins, requester)
        room_id = await membership.knock(
            requester, room_id_or_alias, body_field(body, "reason", "string"), via=_via(request)
        )
        return {"room_id": room_id}

    client_route(router, "POST", "/join/{room_id_or_alias}", join)
    client_route(router, "POST", "/rooms/{room_id}/join", join_room)
    client_route(router, "POST", "/rooms/{room_id}/invite", invite)
    client_route(router, "POST", "/rooms/{room_id}/leave", leave)
    client_route(router, "POST", "/rooms/{room_id}/forget", forget)
    client_route(router, "POST", "/rooms/{room_id}/kick", moderation(membership.kick))
    client_route(router, "POST", "/rooms/{room_id}/ban", moderation(membership.ban))
    client_route(router, "POST", "/rooms/{room_id}/unban", moderation(membership.unban))
    client_route(router, "POST", "/knock/{room_id_or_alias}", knock)
