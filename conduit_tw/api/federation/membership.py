"""
The membership handshakes of the server-server API (joins-v1.yaml,
joins-v2.yaml, leaving-v2.yaml, knocks.yaml, invites-v2.yaml):

- C{GET /v1/make_join/{roomId}/{userId}?ver=...}, C{PUT /v1/send_join}
  (answered as C{[200, body]}) and C{PUT /v2/send_join};
- C{GET /v1/make_leave/{roomId}/{userId}}, C{PUT /v2/send_leave};
- C{GET /v1/make_knock/{roomId}/{userId}?ver=...}, C{PUT /v1/send_knock};
- C{PUT /v2/invite/{roomId}/{eventId}}.

All need X-Matrix authentication; the work is in
L{conduit_tw.federation.membership_server.MembershipServlet}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

_V1 = "/_matrix/federation/v1"
_V2 = "/_matrix/federation/v2"


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the membership handshake endpoints."""
    servlet = hs.federated_membership

    def make(membership: str):
        async def handler(request: MatrixRequest, origin: str, room_id: str, user_id: str):
            versions = request.arg_list("ver")
            if membership == "join" and not versions:
                versions = ["1"]  # joins-v1.yaml: "Defaults to [1]"
            return await servlet.make_membership(origin, room_id, user_id, membership, versions)

        handler.__doc__ = "C{GET /make_%s/{roomId}/{userId}}: an event template." % membership
        return handler

    async def send_join_v1(request: MatrixRequest, origin: str, room_id: str, event_id: str):
        """C{PUT /v1/send_join}: the v2 answer wrapped as C{[200, body]}."""
        answer = await servlet.send_join(origin, room_id, event_id, request.json_body())
        return [200, {k: v for k, v in answer.items() if k in ("origin", "state", "auth_chain", "event")}]

    async def send_join_v2(request: MatrixRequest, origin: str, room_id: str, event_id: str):
        """C{PUT /v2/send_join}: state and auth chain before the join."""
        return await servlet.send_join(origin, room_id, event_id, request.json_body())

    async def send_leave_v2(request: MatrixRequest, origin: str, room_id: str, event_id: str):
        """C{PUT /v2/send_leave}."""
        return await servlet.send_leave(origin, room_id, event_id, request.json_body())

    async def send_knock(request: MatrixRequest, origin: str, room_id: str, event_id: str):
        """C{PUT /v1/send_knock}: the room's stripped state."""
        return await servlet.send_knock(origin, room_id, event_id, request.json_body())

    async def invite_v2(request: MatrixRequest, origin: str, room_id: str, event_id: str):
        """C{PUT /v2/invite}: our signed copy of the invite."""
        return await servlet.receive_invite(origin, room_id, event_id, request.json_body())

    auth = hs.federation_auth
    for kind in ("join", "leave", "knock"):
        federation_route(router, auth, "GET", _V1 + "/make_%s/{room_id}/{user_id}" % kind, make(kind))
    federation_route(router, auth, "PUT", _V1 + "/send_join/{room_id}/{event_id}", send_join_v1)
    federation_route(router, auth, "PUT", _V2 + "/send_join/{room_id}/{event_id}", send_join_v2)
    federation_route(router, auth, "PUT", _V2 + "/send_leave/{room_id}/{event_id}", send_leave_v2)
    federation_route(router, auth, "PUT", _V1 + "/send_knock/{room_id}/{event_id}", send_knock)
    federation_route(router, auth, "PUT", _V2 + "/invite/{room_id}/{event_id}", invite_v2)
