"""
Jumping to a date over federation (server-server-api "Timestamp to event",
C{GET /_matrix/federation/v1/timestamp_to_event/{roomId}}; client-server-api
C{GET /v1/rooms/{roomId}/timestamp_to_event}) both ways.

Served: the closest event at or after (C{dir=f}) / at or before (C{dir=b})
C{ts} that the asking server may see (it must pass the room's server ACL
and have, or have had, users in the room; event_serving.py), from the same
C{roomid_ts} index the client endpoint uses.

Asked: when a client asks us about a time before the earliest event we
hold in a room we joined over federation (our history there is
incomplete), the room's other servers are asked in turn and the first
valid answer is returned, unless our own answer is closer to C{ts}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import quote

from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.federation.event_serving import server_of
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.rooms import RoomInfo
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.federation.event_serving import EventServing
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.federation.timestamp")

#: Servers asked per client request before giving up.
MAX_SERVERS = 5

Finder = Callable[..., Awaitable[StoredEvent | None]]


class TimestampToEvent:
    """See the module docstring."""

    def __init__(
        self, server_name: str, store: "EventStore", serving: "EventServing", find: Finder,
        client: Callable[[], Any],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.serving = serving
        #: C{RoomHistoryHandler.find_by_timestamp(room, ts, forward, visible)}.
        self.find = find
        #: Returns the federation client (looked up at each request).
        self.client = client

    async def serve(self, origin: str, room_id: str, ts: int, direction: str) -> dict[str, Any]:
        """C{GET /timestamp_to_event/{roomId}?ts=&dir=} for C{origin}."""
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be 'f' or 'b'")
        users = await self.serving.check_room_access(origin, room_id)
        room = await self.store.get_room(room_id)
        assert room is not None  # check_room_access: 404 otherwise

        async def visible(events: list[StoredEvent]) -> list[StoredEvent]:
            return [e for e in events if await self.serving.can_see(users, e)]

        event = await self.find(room, ts, direction == "f", visible)
        if event is None:
            raise not_found("Unable to find event from %d in direction %s" % (ts, direction))
        return {"event_id": event.event_id, "origin_server_ts": event.origin_server_ts}

    async def history_incomplete_before(self, room: RoomInfo, ts: int) -> bool:
        """Whether events before C{ts} may exist elsewhere: we joined after the room began, later than C{ts}."""
        first = await self.store.timeline_range(room.room_id, 1, True, 1)
        if not first or first[0].type == "m.room.create":
            return False
        return ts < first[0].origin_server_ts

    async def ask_remote(
        self, room: RoomInfo, ts: int, direction: str, local: StoredEvent | None
    ) -> dict[str, Any] | None:
        """
        C{RoomHistoryHandler.remote_timestamp}: the other servers' answer
        when our history may lack it and theirs is closer, else None.
        """
        if direction not in ("f", "b") or not await self.history_incomplete_before(room, ts):
            return None
        servers = list(dict.fromkeys(
            server_of(u) for u in await self.store.members(room.room_id, "join")
        ))
        servers = [s for s in servers if s != self.server_name][:MAX_SERVERS]
        path = "/_matrix/federation/v1/timestamp_to_event/%s" % quote(room.room_id, safe="")
        for server in servers:
            try:
                answer = await self.client().get_json(server, path, {"ts": [str(ts)], "dir": [direction]})
            except Exception as e:
                log.info("timestamp_to_event from {server} failed: {e}", server=server, e=e)
                continue
            if not isinstance(answer, dict):
                continue
            event_id, event_ts = answer.get("event_id"), answer.get("origin_server_ts")
            if not isinstance(event_id, str) or type(event_ts) is not int:
                continue
            if (direction == "f" and event_ts < ts) or (direction == "b" and event_ts > ts):
                continue  # not an answer to the question
            if local is not None and abs(local.origin_server_ts - ts) <= abs(event_ts - ts):
                return None
            return {"event_id": event_id, "origin_server_ts": event_ts}
        return None
