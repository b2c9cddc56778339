"""
Backfilling history from other servers (server-server-api "Backfilling
and retrieving missing events"): when a client paginates C{/messages}
backwards past the earliest event we hold in a room we joined over
federation, L{Backfiller.backfill} asks the room's other servers with
C{GET /_matrix/federation/v1/backfill/{roomId}?v=<earliest>&limit=}.

Each returned PDU passes steps 1-3 (pdu_checks.py); the events we lack,
and those we hold only as outliers (the state and auth chain of our join:
they become timeline events), are ordered oldest first and their state
computed forwards: the state before the oldest comes from the states after
its prev events (stored, or C{/state_ids} from the answering server,
missing_events.py), each later one from those of the batch. Each event is checked against its auth
events (missing ones fetched with C{/event_auth}) and the state before it
(step 4 and 5; failures are stored rejected), and the batch is stored in
one transaction, newest first, as backfilled history: each backfilled
event sorts before the ones stored earlier (storage/events.py
C{BACKFILL}), so the timeline keeps the DAG's order, no stream position
is taken and the current state is untouched. A L{FetchBudget} bounds the
work one backfill may cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from conduit_tw.events.auth_rules import CREATE_KEY, AuthError, auth_types_for, check_auth
from conduit_tw.events.event import Event
from conduit_tw.federation.missing_events import FetchBudget, RemoteEvents, StateMap, state_after
from conduit_tw.federation.pdu_checks import PduError, check_pdu
from conduit_tw.federation.pdu_pipeline import resolve_states
from conduit_tw.federation.event_serving import server_of
from conduit_tw.logging import get_logger
from conduit_tw.storage.events import BACKFILL
from conduit_tw.storage.stores.rooms import RoomInfo
from conduit_tw.storage.stores.timeline import OUTLIER, StoredEvent
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.federation.backfill")

#: Most events one backfill asks for (the serving side caps at 100 too).
MAX_BACKFILL = 100
#: Servers tried per backfill before giving up.
MAX_SERVERS = 5


def _outlier(event: StoredEvent) -> bool:
    return bool(event.flags & OUTLIER) and not event.rejected


class Backfiller:
    """Fetches a room's older history from the servers in it; see the module docstring."""

    def __init__(
        self, server_name: str, store: "EventStore", linearizer: Linearizer, remote: RemoteEvents
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.linearizer = linearizer
        self.remote = remote
        #: room ID -> the earliest event ID no server had anything before.
        self._exhausted: dict[str, str] = {}

    async def earliest_event(self, room: RoomInfo) -> Any:
        """The room's first timeline event (None for an empty timeline)."""
        rows = await self.store.timeline_range(room.room_id, 1, True, 1)
        return rows[0] if rows else None

    async def servers(self, room_id: str) -> list[str]:
        """The other servers with joined members, then the room ID's server (rooms < v12)."""
        servers = list(dict.fromkeys(server_of(u) for u in await self.store.members(room_id, "join")))
        domain = room_id.partition(":")[2]
        if domain and domain not in servers:
            servers.append(domain)
        return [s for s in servers if s and s != self.server_name][:MAX_SERVERS]

    async def backfill(self, room_id: str, limit: int) -> int:
        """
        Fetch up to C{limit} events before the room's earliest timeline
        event from the servers in the room and store them as history.

        @return: how many events were added to the timeline (0 when the
            room starts here, no server had more, or all failed).
        """
        room = await self.store.get_room(room_id)
        if room is None:
            return 0
        earliest = await self.earliest_event(room)
        if earliest is None or earliest.type == "m.room.create" or not earliest.prev_event_ids():
            return 0
        if self._exhausted.get(room_id) == earliest.event_id:
            return 0
        limit = max(1, min(limit, MAX_BACKFILL))
        for server in await self.servers(room_id):
            try:
                added = await self._backfill_from(server, room, earliest.event_id, limit)
            except Exception as e:
                log.info("Backfill of {room} from {server} failed: {e}", room=room_id, server=server, e=e)
                continue
            if added:
                return added
        self._exhausted[room_id] = earliest.event_id
        return 0

    async def _backfill_from(self, origin: str, room: RoomInfo, from_id: str, limit: int) -> int:
        answer = await self.remote.client.get_json(
            origin, "/_matrix/federation/v1/backfill/%s" % quote(room.room_id, safe=""),
            {"v": [from_id], "limit": [str(limit)]},
        )
        pdus = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(pdus, list):
            return 0
        budget = FetchBudget()
        budget.spend(requests=1, events=len(pdus))
        events: dict[str, Event] = {}
        for pdu in pdus[:limit]:
            try:
                event = await check_pdu(self.remote.keyring, room.room_id, room.version, pdu)
            except PduError as e:
                log.info("Ignoring a backfilled PDU: {reason}", reason=e.reason)
                continue
            events[event.event_id] = event
        async with self.linearizer.queue(room.room_id):
            known = await self.store.get_events(events)
            # Events held as outliers (the state and auth chain of our join,
            # filled gaps) are history too: stored again, they move into
            # the timeline (EventStore.persist).
            new = sorted(
                (e for i, e in events.items() if i not in known or _outlier(known[i])),
                key=lambda e: (e.depth, e.event_id),
            )
            if not new:
                return 0
            return await self._store_history(origin, room, new, budget)

    async def _store_history(
        self, origin: str, room: RoomInfo, new: list[Event], budget: FetchBudget
    ) -> int:
        """Check C{new} (oldest first) and store it in one transaction, newest first."""
        batch = {e.event_id: e for e in new}
        after: dict[str, StateMap] = {}
        before: dict[str, StateMap] = {}
        for event in new:
            missing_auth = [
                a for a in event.auth_event_ids()
                if a not in batch and a not in await self.store.get_events([a])
            ]
            if missing_auth:
                await self.remote.fetch_auth_chain(origin, room, event, budget)
            sets: list[StateMap] | None = []
            for prev_id in dict.fromkeys(event.prev_event_ids()):
                state = after.get(prev_id)
                if state is None:
                    stored = (await self.store.get_events([prev_id])).get(prev_id)
                    if stored is not None:
                        state = await self.remote.stored_state_after(stored)
                if state is None:
                    sets = None  # the older history is not here (yet)
                    break
                sets.append(state)
            if sets is None:
                # The prev events stay unknown (a later backfill stores them
                # in the timeline): the state before this event comes from
                # the server, without fetching them as outliers.
                state_before = await self.remote.state_before_remote(origin, room, event.event_id, budget)
            else:
                state_before = await resolve_states(self.store, room, sets, list(batch.values()))
            reason = await self.remote.check_against_auth_events(room, event, batch)
            if reason is None:
                reason = await self._check_against_state(event, state_before, batch)
            if reason is not None:
                log.info("Rejected backfilled {event_id}: {reason}", event_id=event.event_id, reason=reason)
                event.rejected = True
            before[event.event_id] = state_before
            after[event.event_id] = state_after(event, state_before)
        txn = self.store.txn()
        added = 0
        for event in reversed(new):
            stored = await self.store.persist(
                event, state_before=before[event.event_id], kind=BACKFILL, txn=txn
            )
            added += bool(stored.order)
        await txn.commit()
        return added

    async def _check_against_state(
        self, event: Event, state: StateMap, batch: dict[str, Event]
    ) -> str | None:
        """Step 5: None when the event passes auth against the state before it."""
        keys = auth_types_for(event) | {CREATE_KEY}
        ids = {k: state[k] for k in keys if k in state}
        found: dict[str, Any] = {i: batch[i] for i in ids.values() if i in batch}
        found.update(await self.store.get_events(i for i in ids.values() if i not in found))
        try:
            check_auth(event, {k: found[i] for k, i in ids.items() if i in found})
        except AuthError as e:
            return e.message
        return None
