"""
The inbound PDU pipeline: every event another server sends us in a room
we are in (server-server-api "Checks performed on receipt of a PDU",
"Rejection", "Soft failure").

    stored = await hs.federation_pdus.receive_pdu(origin, room_id, pdu_json)

Serialised per room with the local event pipeline (the same per-room
L{Linearizer} as C{handlers/events.py}), each PDU goes through:

0. the room must be known here, its incoming federation not disabled by
   the operator (disabled_rooms.py) and C{origin} allowed by its server ACL;
1-3. format, event ID, signatures, content hash (pdu_checks.py: dropped,
   dropped, redacted copy kept);
   then, if not already stored:
- its missing auth events are fetched (C{/event_auth}) and stored as
  outliers; its missing prev events with C{/get_missing_events} (bounded by
  C{max_fetch_prev_events}) and processed through this same pipeline,
  oldest first; a prev event still missing after that has its state
  fetched (C{/state_ids} + C{/event}, missing_events.py). A
  L{FetchBudget} bounds all of it;
- the state before the event: the resolution (C{state_res.resolve_state})
  of the states after its prev events;
4. auth against its auth events, 5. against the state before it: rejected
   otherwise (stored as rejected, kept out of the timeline and the state;
   L{PduRejected} is raised after storing it);
6. auth against the current state: soft failed otherwise (stored, but not
   in the timeline, the current state or the forward extremities);
- persisted as a live event: forward extremities become the old ones minus
  its prev events plus itself, and the new current state is the resolution
  of the states after every forward extremity.

Not yet: promoting an event we hold as an outlier to the timeline when it
arrives later as a live event (it stays an outlier), and the policy server
(step 7).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from conduit_tw.events.auth_rules import CREATE_KEY, AuthError, auth_types_for, check_auth
from conduit_tw.events.event import Event
from conduit_tw.events.state_res import resolve_state
from conduit_tw.federation.auth_chain import load_closure
from conduit_tw.federation.disabled_rooms import DISABLED, RoomDisabled, never_disabled
from conduit_tw.federation.missing_events import (
    FetchBudget,
    RemoteEvents,
    StateMap,
    create_event_id,
    state_after,
)
from conduit_tw.federation.pdu_checks import PduDropped, PduError, PduRejected, check_pdu
from conduit_tw.federation.acl import SERVER_ACL, is_server_allowed
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.rooms import RoomInfo
from conduit_tw.storage.stores.timeline import StoredEvent
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.federation.pdu_pipeline")


async def resolve_states(
    store: "EventStore",
    room: RoomInfo,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    extra: Sequence[Event] = (),
) -> StateMap:
    """
    The resolution of C{state_sets} with the room version's algorithm, the
    events of the sets and their auth chains loaded from the store first
    (state_res does no I/O); C{extra}: events not stored yet.
    """
    distinct = []
    for s in state_sets:
        if s not in distinct:
            distinct.append(s)
    if not distinct:
        return {}
    if len(distinct) == 1:
        return dict(distinct[0])
    ids = {i for s in distinct for i in s.values()}
    create_id = create_event_id(room)
    if create_id is not None:
        ids.add(create_id)
    pending = {e.event_id: e for e in extra}
    ids -= pending.keys()
    ids |= {a for e in extra for a in e.auth_event_ids()}
    events: dict[str, Event] = dict(await load_closure(store, ids))
    events.update(pending)
    return resolve_state(room.version, distinct, events.get)


@dataclass
class Incoming:
    """A room with PDUs in the pipeline (see L{PduPipeline.incoming})."""

    room_id: str
    #: PDUs of the room being checked, waiting for its slot or processed.
    pdus: int = 0
    #: The PDU holding the room's slot, and since when (C{time.monotonic()}).
    event_id: str | None = None
    since: float = 0.0


class PduPipeline:
    """Receives PDUs from other servers; see the module docstring."""

    def __init__(self, store: "EventStore", linearizer: Linearizer, remote: RemoteEvents) -> None:
        self.store = store
        #: The per-room linearizer shared with the local event pipeline.
        self.linearizer = linearizer
        self.remote = remote
        #: Rooms whose incoming federation is disabled (disabled_rooms.py).
        self.room_disabled: RoomDisabled = never_disabled
        #: The rooms with PDUs in the pipeline now (L{incoming}).
        self._incoming: dict[str, Incoming] = {}

    def incoming(self) -> list["Incoming"]:
        """
        The rooms whose incoming PDUs are being processed or wait for the
        room's slot right now (the admin room's C{federation incoming}).
        """
        return sorted(self._incoming.values(), key=lambda i: i.room_id)

    async def transaction_pdu(
        self, origin: str, room_version: Any, event_id: str, pdu_json: Any
    ) -> str | None:
        """
        One PDU of an incoming transaction (C{PUT /send/{txnId}}): the
        per-PDU result's C{error} (None when the event was accepted or
        soft failed, which the sender must not learn either).
        """
        room_id = pdu_json.get("room_id") if isinstance(pdu_json, dict) else None
        if not isinstance(room_id, str):
            return "The PDU has no room_id"
        try:
            await self.receive_pdu(origin, room_id, pdu_json)
        except PduError as e:
            return e.reason
        return None

    async def receive_pdu(self, origin: str, room_id: str, pdu_json: Any) -> StoredEvent:
        """
        Check and store one PDU that C{origin} sent in C{room_id}.

        @return: the stored event (soft failed ones included; an event
            already stored is returned as it is).
        @raise PduDropped: not stored (unknown room, denied by the server
            ACL, invalid, badly signed, or its gap could not be filled).
        @raise PduRejected: stored as rejected (it fails the auth rules).
        """
        room = await self.store.get_room(room_id)
        if room is None or not (await self.store.head(room)).statehash:
            raise PduDropped("Room %s is unknown here" % room_id)
        if await self.room_disabled(room_id):
            raise PduDropped(DISABLED)
        acl = await self.store.current_state_event(room_id, SERVER_ACL, "")
        if not is_server_allowed(origin, acl.content if acl is not None else None):
            raise PduDropped("Server %s is denied by the room's server ACL" % origin)
        incoming = self._incoming.get(room_id)
        if incoming is None:
            incoming = self._incoming[room_id] = Incoming(room_id)
        incoming.pdus += 1
        try:
            # Signatures are checked outside the room's slot: key fetches may be slow.
            event = await check_pdu(self.remote.keyring, room_id, room.version, pdu_json)
            async with self.linearizer.queue(room_id):
                incoming.event_id, incoming.since = event.event_id, time.monotonic()
                try:
                    return await self._process(origin, room, event, FetchBudget(), fill_gaps=True)
                finally:
                    incoming.event_id = None
        finally:
            incoming.pdus -= 1
            if not incoming.pdus:
                self._incoming.pop(room_id, None)

    async def _process(
        self, origin: str, room: RoomInfo, event: Event, budget: FetchBudget, fill_gaps: bool
    ) -> StoredEvent:
        existing = await self.store.get_event(event.event_id)
        if existing is not None:
            if existing.rejected:
                raise PduRejected("Event was rejected before", event.event_id)
            return existing

        # Step 4 needs the auth events; fetch those we lack.
        auth_ids = event.auth_event_ids()
        if len(await self.store.get_events(auth_ids)) < len(set(auth_ids)):
            await self.remote.fetch_auth_chain(origin, room, event, budget)
        state_before = await self._state_before(origin, room, event, budget, fill_gaps)

        if event.rejected:  # pdu_checks.parse_pdu: over-long IDs in a lenient room version
            reason: str | None = "an ID is longer than 255 bytes"
        else:
            reason = await self.remote.check_against_auth_events(room, event)
        if reason is None:
            reason = await self._check_against_state(event, state_before)
        if reason is not None:
            log.info("Rejected {event_id} from {origin}: {reason}",
                     event_id=event.event_id, origin=origin, reason=reason)
            event.rejected = True
            await self.store.persist(event, state_before=state_before)
            raise PduRejected("Event rejected by the auth rules: " + reason, event.event_id)

        current = await self.store.current_state_ids(room.room_id)
        if await self._check_against_state(event, current) is not None:
            log.info("Soft-failed {event_id} from {origin}", event_id=event.event_id, origin=origin)
            return await self.store.persist(event, state_before=state_before, soft_failed=True)

        new_current = await self._new_current_state(room, event, state_before)
        return await self.store.persist(event, state_before=state_before, current_state=new_current)

    async def _check_against_state(self, event: Event, state: StateMap) -> str | None:
        """Auth against a state (steps 5 and 6): None if allowed, else why not."""
        keys = auth_types_for(event) | {CREATE_KEY}
        ids = {k: state[k] for k in keys if k in state}
        events = await self.store.get_events(ids.values())
        auth_state = {k: events[i] for k, i in ids.items() if i in events}
        try:
            check_auth(event, auth_state)
        except AuthError as e:
            return e.message
        return None

    async def _state_before(
        self, origin: str, room: RoomInfo, event: Event, budget: FetchBudget, fill_gaps: bool
    ) -> StateMap:
        """The resolved state after each prev event, fetching what we lack."""
        prev_ids = list(dict.fromkeys(event.prev_event_ids()))
        known = await self._prev_states(prev_ids)
        if len(known) < len(prev_ids) and fill_gaps:
            for missing in await self.remote.get_missing_events(origin, room, event, budget):
                try:
                    await self._process(origin, room, missing, budget, fill_gaps=False)
                except PduRejected:
                    pass  # stored as rejected: its state is known
                except PduDropped as e:
                    log.info("Missing event {event_id} dropped: {reason}",
                             event_id=missing.event_id, reason=e.reason)
            known = await self._prev_states(prev_ids)
        state_sets = []
        for prev_id in prev_ids:
            state = known.get(prev_id)
            if state is None:
                state = await self.remote.state_after_remote(origin, room, prev_id, budget)
            state_sets.append(state)
        return await resolve_states(self.store, room, state_sets)

    async def _prev_states(self, prev_ids: list[str]) -> dict[str, StateMap]:
        """The state after each prev event whose state we know."""
        out = {}
        for prev_id, prev in (await self.store.get_events(prev_ids)).items():
            state = await self.remote.stored_state_after(prev)
            if state is not None:
                out[prev_id] = state
        return out

    async def _new_current_state(
        self, room: RoomInfo, event: Event, state_before: StateMap
    ) -> StateMap:
        """
        The room's state once C{event} is a forward extremity: the
        resolution of the states after every forward extremity.
        """
        head = await self.store.head(room)
        others = head.extremities - set(event.prev_event_ids()) - {event.event_id}
        sets = [state_after(event, state_before)]
        for ext in (await self.store.get_events(others)).values():
            state = await self.remote.stored_state_after(ext)
            if state is not None:
                sets.append(state)
        return await resolve_states(self.store, room, sets, [event])


__all__ = ["PduPipeline", "PduDropped", "PduRejected", "resolve_states", "state_after"]
