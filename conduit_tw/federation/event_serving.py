"""
Serving room events to other servers (server-server-api "Retrieving
events", "Backfilling and retrieving missing events", "Retrieving event
authorisation information"): C{/event}, C{/state}, C{/state_ids},
C{/event_auth}, C{/backfill} and C{/get_missing_events}.

Who may ask: a server denied by the room's server ACL gets 403
M_FORBIDDEN (server-server-api "Server Access Control Lists (ACLs)"), and
so does a server none of whose users has (or had) a membership in the
room. Which events: a server may see an event when any of its users could
(client-server-api "History visibility", applied per user with the state
at the event by C{handlers/visibility.py}): so a server that left sees
what happened while it was in, and nothing after (unless the room is
world readable). Rejected events are never served; events go out in the
federation format, without our local C{unsigned} data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.federation.auth_chain import auth_chain
from conduit_tw.federation.acl import SERVER_ACL, is_server_allowed
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore

#: Memberships whose users count as the server having (had) users in the room.
_MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")
#: Most events one C{/backfill} or C{/get_missing_events} answer carries.
MAX_EVENTS_PER_REQUEST = 100
#: Default C{limit} of C{/get_missing_events} (its OpenAPI definition).
DEFAULT_MISSING_LIMIT = 10


def federation_pdu(event: StoredEvent) -> dict[str, Any]:
    """The event as PDUs travel: as stored, without C{unsigned}."""
    return {k: v for k, v in event.pdu.items() if k != "unsigned"}


def server_of(user_id: str) -> str:
    """The server name of a user ID."""
    return user_id.partition(":")[2]


class EventServing:
    """Answers the event retrieval endpoints; methods take the requesting C{origin}."""

    def __init__(
        self, server_name: str, store: "EventStore", visibility: "Visibility",
        clock_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.visibility = visibility
        self.clock_ms = clock_ms

    # ------------------------------------------------------------------
    # Access

    async def check_acl(self, origin: str, room_id: str) -> None:
        """403 M_FORBIDDEN when the room's server ACL denies C{origin}."""
        acl = await self.store.current_state_event(room_id, SERVER_ACL, "")
        if not is_server_allowed(origin, acl.content if acl is not None else None):
            raise forbidden("Server %s is denied by the room's server ACL" % origin)

    async def server_users(self, origin: str, room_id: str) -> list[str]:
        """C{origin}'s users with a membership in the room's current state."""
        users = []
        for membership in _MEMBERSHIPS:
            users.extend(
                u for u in await self.store.members(room_id, membership) if server_of(u) == origin
            )
        return users

    async def check_room_access(self, origin: str, room_id: str) -> list[str]:
        """
        The room must be known, C{origin} allowed by its ACL and have (had)
        users in it.

        @return: those users (for L{can_see}).
        @raise MatrixError: 404 unknown room, 403 otherwise.
        """
        if not await self.store.room_exists(room_id):
            raise not_found("Unknown room")
        await self.check_acl(origin, room_id)
        users = await self.server_users(origin, room_id)
        if not users:
            raise forbidden("Server %s is not in room %s" % (origin, room_id))
        return users

    async def can_see(self, users: list[str], event: StoredEvent) -> bool:
        """Whether any of the server's C{users} could see the event (never a rejected one)."""
        if event.rejected:
            return False
        for user_id in users:
            if await self.visibility.can_see_event(user_id, event):
                return True
        return False

    async def _visible_event(self, origin: str, room_id: str | None, event_id: str) -> tuple[StoredEvent, list[str]]:
        event = await self.store.get_event(event_id)
        if event is None or event.rejected or (
            room_id is not None and event.room_id_or_create() != room_id
        ):
            raise not_found("Unknown event")
        users = await self.check_room_access(origin, event.room_id_or_create())
        if not await self.can_see(users, event):
            raise forbidden("Server %s may not see event %s" % (origin, event_id))
        return event, users

    async def _filter(self, users: list[str], events: Iterable[StoredEvent]) -> list[StoredEvent]:
        return [e for e in events if await self.can_see(users, e)]

    def _envelope(self, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        return {"origin": self.server_name, "origin_server_ts": self.clock_ms(), "pdus": pdus}

    # ------------------------------------------------------------------
    # Endpoints

    async def get_event(self, origin: str, event_id: str) -> dict[str, Any]:
        """C{GET /event/{eventId}}: a transaction with the one PDU."""
        event, _ = await self._visible_event(origin, None, event_id)
        return self._envelope([federation_pdu(event)])

    async def _state_at(self, origin: str, room_id: str, event_id: str) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The state before the event and the auth chain of that state."""
        event, _ = await self._visible_event(origin, room_id, event_id)
        if not event.in_timeline and not event.state_before:
            raise not_found("The state at %s is not known here" % event_id)
        state = await self.store.state_events(event.state_before)
        chain = await auth_chain(self.store, (e.event_id for e in state.values()))
        return list(state.values()), [e for e in chain.values() if not e.rejected]

    async def get_state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """C{GET /state/{roomId}?event_id=}: the state before the event, with its auth chain."""
        state, chain = await self._state_at(origin, room_id, event_id)
        return {
            "pdus": [federation_pdu(e) for e in state],
            "auth_chain": [federation_pdu(e) for e in chain],
        }

    async def get_state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """C{GET /state_ids/{roomId}?event_id=}: the same as IDs."""
        state, chain = await self._state_at(origin, room_id, event_id)
        return {
            "pdu_ids": [e.event_id for e in state],
            "auth_chain_ids": [e.event_id for e in chain],
        }

    async def get_event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """C{GET /event_auth/{roomId}/{eventId}}: the event's full auth chain."""
        event, _ = await self._visible_event(origin, room_id, event_id)
        chain = await auth_chain(self.store, [event.event_id])
        return {"auth_chain": [federation_pdu(e) for e in chain.values() if not e.rejected]}

    async def _walk_back(
        self, room_id: str, starts: Iterable[str], stop: set[str], limit: int, min_depth: int = 0,
        include_starts: bool = True,
    ) -> list[StoredEvent]:
        """
        Events of the room reached from C{starts} through C{prev_events}
        (breadth first, highest depth first), skipping C{stop}, at most
        C{limit}.
        """
        found: dict[str, StoredEvent] = {}
        seen = set(stop)
        frontier: list[str] = []
        first = await self.store.get_events(set(starts) - seen)
        for ev in first.values():
            if ev.room_id_or_create() != room_id:
                continue
            seen.add(ev.event_id)
            if include_starts and len(found) < limit:
                found[ev.event_id] = ev
            frontier.extend(ev.prev_event_ids())
        while frontier and len(found) < limit:
            batch = [i for i in dict.fromkeys(frontier) if i not in seen]
            frontier = []
            events = await self.store.get_events(batch)
            for ev in sorted(events.values(), key=lambda e: (-e.depth, e.event_id)):
                seen.add(ev.event_id)
                if ev.room_id_or_create() != room_id or ev.depth < min_depth:
                    continue
                if len(found) >= limit:
                    break
                found[ev.event_id] = ev
                frontier.extend(ev.prev_event_ids())
        return list(found.values())

    async def backfill(self, origin: str, room_id: str, from_ids: list[str], limit: int) -> dict[str, Any]:
        """C{GET /backfill/{roomId}?v=&limit=}: the given events and those before them."""
        users = await self.check_room_access(origin, room_id)
        limit = max(0, min(limit, MAX_EVENTS_PER_REQUEST))
        events = await self._walk_back(room_id, from_ids, set(), limit)
        visible = await self._filter(users, events)
        visible.sort(key=lambda e: (-e.depth, e.event_id))
        return self._envelope([federation_pdu(e) for e in visible])

    async def get_missing_events(self, origin: str, room_id: str, body: Any) -> dict[str, Any]:
        """
        C{POST /get_missing_events/{roomId}}: the events before
        C{latest_events}, not going past C{earliest_events}, oldest first.
        """
        if not isinstance(body, dict):
            raise MatrixError(400, Codes.BAD_JSON, "Body must be a JSON object")
        earliest, latest = body.get("earliest_events"), body.get("latest_events")
        for name, value in (("earliest_events", earliest), ("latest_events", latest)):
            if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
                raise MatrixError(400, Codes.BAD_JSON, "%r must be a list of event IDs" % name)
        limit, min_depth = body.get("limit", DEFAULT_MISSING_LIMIT), body.get("min_depth", 0)
        for name, value in (("limit", limit), ("min_depth", min_depth)):
            if type(value) is not int:
                raise MatrixError(400, Codes.BAD_JSON, "%r must be an integer" % name)
        users = await self.check_room_access(origin, room_id)
        limit = max(0, min(limit, MAX_EVENTS_PER_REQUEST))
        events = await self._walk_back(
            room_id, latest, set(earliest), limit, min_depth, include_starts=False
        )
        visible = await self._filter(users, events)
        visible.sort(key=lambda e: (e.depth, e.event_id))
        return {"events": [federation_pdu(e) for e in visible]}
