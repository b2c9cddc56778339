"""
The event retrieval endpoints of server-server-api ("Retrieving events",
"Backfilling and retrieving missing events", "Retrieving event
authorisation information"; data/api/server-server/{events,backfill,
event_auth}.yaml). The requesting server is authenticated by
C{hs.federation_auth} (X-Matrix); the answers come from
L{conduit_tw.federation.event_serving.EventServing}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError, missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

V1 = "/_matrix/federation/v1"


def register(router: Router, hs: "HomeServer") -> None:
    """Mount /event, /state, /state_ids, /event_auth, /backfill, /get_missing_events."""
    serving = hs.federation_serving

    async def origin_of(request: MatrixRequest) -> str:
        auth = getattr(hs, "federation_auth", None)
        if auth is None:
            raise MatrixError(401, Codes.UNAUTHORIZED, "Federation requests cannot be authenticated")
        return await auth.authenticate(request)

    def event_id_arg(request: MatrixRequest) -> str:
        event_id = request.arg("event_id")
        if not event_id:
            raise missing_param("Missing query parameter 'event_id'")
        return event_id

    async def get_event(request: MatrixRequest, eventId: str):
        """GET /event/{eventId}."""
        return await serving.get_event(await origin_of(request), eventId)

    async def get_state(request: MatrixRequest, roomId: str):
        """GET /state/{roomId}?event_id=."""
        origin = await origin_of(request)
        return await serving.get_state(origin, roomId, event_id_arg(request))

    async def get_state_ids(request: MatrixRequest, roomId: str):
        """GET /state_ids/{roomId}?event_id=."""
        origin = await origin_of(request)
        return await serving.get_state_ids(origin, roomId, event_id_arg(request))

    async def get_event_auth(request: MatrixRequest, roomId: str, eventId: str):
        """GET /event_auth/{roomId}/{eventId}."""
        return await serving.get_event_auth(await origin_of(request), roomId, eventId)

    async def backfill(request: MatrixRequest, roomId: str):
        """GET /backfill/{roomId}?v=&limit=."""
        origin = await origin_of(request)
        from_ids = request.arg_list("v")
        if not from_ids:
            raise missing_param("Missing query parameter 'v'")
        limit = request.int_arg("limit", minimum=0)
        if limit is None:
            raise missing_param("Missing query parameter 'limit'")
        return await serving.backfill(origin, roomId, from_ids, limit)

    async def get_missing_events(request: MatrixRequest, roomId: str):
        """POST /get_missing_events/{roomId}."""
        origin = await origin_of(request)
        return await serving.get_missing_events(origin, roomId, request.json_object())

    router.add("GET", V1 + "/event/{eventId}", get_event)
    router.add("GET", V1 + "/state/{roomId}", get_state)
    router.add("GET", V1 + "/state_ids/{roomId}", get_state_ids)
    router.add("GET", V1 + "/event_auth/{roomId}/{eventId}", get_event_auth)
    router.add("GET", V1 + "/backfill/{roomId}", backfill)
    router.add("POST", V1 + "/get_missing_events/{roomId}", get_missing_events)
