"""
Fetching what a received PDU refers to and we lack (server-server-api
"Backfilling and retrieving missing events", "Retrieving events",
"Retrieving event authorisation information"):

- missing C{prev_events}: C{POST /get_missing_events/{roomId}} with our
  forward extremities as C{earliest_events}, at most
  C{max_fetch_prev_events} of them;
- the state after a prev event we still lack: C{GET /state_ids/{roomId}
  ?event_id=} (the state before it) plus the event itself, with
  C{GET /event/{eventId}} for every event we do not have;
- missing C{auth_events}: C{GET /event_auth/{roomId}/{eventId}}.

Everything fetched passes steps 1-3 (pdu_checks.py) and is stored as an
outlier after an auth check against its own auth events, in auth order
(rejected when that fails or an auth event is missing). A L{FetchBudget}
bounds the requests and events one received PDU may cost, so a hostile
server cannot make us fetch forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import quote

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

from conduit_tw.events.auth_rules import CREATE_KEY, AuthError, check_auth, check_auth_events_selection
from conduit_tw.events.event import Event
from conduit_tw.federation.pdu_checks import FederationClient, Keyring, PduDropped, PduError, check_pdu
from conduit_tw.logging import get_logger
from conduit_tw.storage.events import OUTLIER_KIND
from conduit_tw.storage.stores.rooms import RoomInfo
from conduit_tw.storage.stores.timeline import SOFT_FAILED, StoredEvent

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.federation.missing_events")

FEDERATION_V1 = "/_matrix/federation/v1"
#: Most events one C{/state_ids} answer may name (state plus auth chain).
MAX_STATE_EVENTS = 50_000
#: Requests one received PDU may cause (get_missing_events, state_ids,
#: event_auth and one per fetched event).
MAX_REQUESTS_PER_PDU = 2_000
#: Events one received PDU may make us fetch.
MAX_EVENTS_PER_PDU = 2_000
#: Parallel C{/event} requests.
FETCH_CONCURRENCY = 10

StateMap = dict[tuple[str, str], str]


def q(segment: str) -> str:
    """Percent-encode one path segment."""
    return quote(segment, safe="")


class FetchBudget:
    """What fetching for one received PDU may still cost; L{spend} raises past it."""

    def __init__(self, requests: int = MAX_REQUESTS_PER_PDU, events: int = MAX_EVENTS_PER_PDU) -> None:
        self.requests = requests
        self.events = events

    def spend(self, requests: int = 0, events: int = 0) -> None:
        """Count C{requests} and C{events}; L{PduDropped} once either is exhausted."""
        self.requests -= requests
        self.events -= events
        if self.requests < 0 or self.events < 0:
            raise PduDropped("Too many events missing: giving up on this gap")


def create_event_id(room: RoomInfo) -> str | None:
    """The create event's ID when the room ID names it (rooms v12), else None."""
    if room.version.room_id_from_create_event:
        return "$" + room.room_id[1:]
    return None


def auth_order(events: Iterable[Event]) -> list[Event]:
    """
    C{events} ordered so that each comes after those of its auth events
    that are among them (ties and cycles by depth then ID, deterministic).
    """
    by_id = {e.event_id: e for e in events}
    out: list[Event] = []
    done: set[str] = set()
    for root in sorted(by_id.values(), key=lambda e: (e.depth, e.event_id)):
        if root.event_id in done:
            continue
        stack: list[tuple[Event, bool]] = [(root, False)]
        while stack:
            event, expanded = stack.pop()
            if event.event_id in done:
                continue
            if expanded:
                done.add(event.event_id)
                out.append(event)
                continue
            stack.append((event, True))
            for auth_id in sorted(event.auth_event_ids(), reverse=True):
                child = by_id.get(auth_id)
                if child is not None and auth_id not in done:
                    stack.append((child, False))
    return out


def state_after(event: Event, before: StateMap) -> StateMap:
    """
    The state after an event given the state before it: rejected
    events change nothing; soft-failed ones count as normal when another
    event refers to them (server-server-api "Soft failure"; the store keeps
    them out of its own state after).
    """
    after = dict(before)
    if event.is_state() and not event.rejected:
        after[event.state_pair()] = event.event_id  # type: ignore[arg-type]
    return after


class RemoteEvents:
    """
    Fetches and stores events another server refers to; see the module
    docstring.

    @ivar keyring: verifies signatures (assigned by HomeServer).
    @ivar client: the federation client (assigned by HomeServer).
    """

    def __init__(
        self,
        store: "EventStore",
        keyring: Keyring,
        client: FederationClient,
        max_fetch_prev_events: int = 100,
        max_state_events: int = MAX_STATE_EVENTS,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.client = client
        self.max_fetch_prev_events = max_fetch_prev_events
        self.max_state_events = max_state_events

    # ------------------------------------------------------------------
    # Stored state

    async def stored_state_after(self, event: StoredEvent) -> StateMap | None:
        """The state after a stored event, or None when we do not know its state (outliers)."""
        if not event.state_before and not event.state_after:
            return None
        before = await self.store.state_ids(event.state_before)
        if event.flags & SOFT_FAILED or event.rejected:
            return state_after(event, before)
        return await self.store.state_ids(event.state_after)

    # ------------------------------------------------------------------
    # Fetching

    async def get_missing_events(
        self, origin: str, room: RoomInfo, latest: Event, budget: FetchBudget
    ) -> list[Event]:
        """
        Ask C{origin} for the events between our forward extremities and
        C{latest}: at most C{max_fetch_prev_events}, each checked (steps
        1-3), oldest first. Invalid ones are left out.
        """
        limit = self.max_fetch_prev_events
        if limit <= 0:
            return []
        head = await self.store.head(room)
        budget.spend(requests=1)
        body = {
            "earliest_events": sorted(head.extremities),
            "latest_events": [latest.event_id],
            "limit": limit,
            "min_depth": 0,
        }
        try:
            answer = await self.client.post_json(
                origin, "%s/get_missing_events/%s" % (FEDERATION_V1, q(room.room_id)), body
            )
        except Exception as e:
            log.info("get_missing_events to {origin} failed: {e}", origin=origin, e=e)
            return []
        pdus = answer.get("events") if isinstance(answer, dict) else None
        if not isinstance(pdus, list):
            return []
        pdus = pdus[:limit]  # a server answering more does not get more work done
        budget.spend(events=len(pdus))
        checked = await self._check_all(room, pdus)
        checked = [e for e in checked if e.event_id != latest.event_id]
        return sorted(checked, key=lambda e: (e.depth, e.event_id))

    async def _check_all(self, room: RoomInfo, pdus: list[Any]) -> list[Event]:
        out = []
        for pdu in pdus:
            try:
                out.append(await check_pdu(self.keyring, room.room_id, room.version, pdu))
            except PduError as e:
                log.info("Ignoring a fetched PDU: {reason}", reason=e.reason)
        return out

    async def fetch_event(self, origin: str, room: RoomInfo, event_id: str) -> Event:
        """C{GET /event/{eventId}} from C{origin}, checked (steps 1-3); the ID must match."""
        answer = await self.client.get_json(origin, "%s/event/%s" % (FEDERATION_V1, q(event_id)))
        pdus = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(pdus, list) or len(pdus) != 1:
            raise PduDropped("Bad /event answer for %s" % event_id, event_id)
        event = await check_pdu(self.keyring, room.room_id, room.version, pdus[0])
        if event.event_id != event_id:
            raise PduDropped("Asked for %s, got %s" % (event_id, event.event_id), event_id)
        return event

    async def fetch_events(
        self, origin: str, room: RoomInfo, event_ids: Iterable[str], budget: FetchBudget
    ) -> list[Event]:
        """L{fetch_event} for each (in parallel, bounded); those that fail are left out."""
        ids = sorted(set(event_ids))
        if not ids:
            return []
        budget.spend(requests=len(ids), events=len(ids))
        semaphore = DeferredSemaphore(FETCH_CONCURRENCY)

        async def one(event_id: str) -> Event | None:
            try:
                return await self.fetch_event(origin, room, event_id)
            except Exception as e:
                log.info("Fetching {event_id} from {origin} failed: {e}",
                         event_id=event_id, origin=origin, e=e)
                return None

        results = await gatherResults(
            [semaphore.run(lambda i=i: Deferred.fromCoroutine(one(i))) for i in ids]
        )
        return [e for e in results if e is not None]

    async def fetch_auth_chain(
        self, origin: str, room: RoomInfo, event: Event, budget: FetchBudget
    ) -> None:
        """
        Fetch C{event}'s auth chain with C{GET /event_auth} and store the
        events we lack as outliers.
        """
        budget.spend(requests=1)
        try:
            answer = await self.client.get_json(
                origin, "%s/event_auth/%s/%s" % (FEDERATION_V1, q(room.room_id), q(event.event_id))
            )
        except Exception as e:
            log.info("event_auth from {origin} failed: {e}", origin=origin, e=e)
            return
        pdus = answer.get("auth_chain") if isinstance(answer, dict) else None
        if not isinstance(pdus, list):
            return
        budget.spend(events=len(pdus))
        checked = await self._check_all(room, pdus)
        known = await self.store.get_events(e.event_id for e in checked)
        await self.persist_outliers(room, [e for e in checked if e.event_id not in known])

    async def state_after_remote(
        self, origin: str, room: RoomInfo, event_id: str, budget: FetchBudget
    ) -> StateMap:
        """
        The state after an event we lack the state of: C{/state_ids} at it
        from C{origin} (the state before it), every unknown event of that
        state and its auth chain fetched and stored as outliers, then the
        event itself applied.

        @raise PduDropped: the answer is malformed, too large, or the
            event itself cannot be had.
        """
        state = await self.state_before_remote(origin, room, event_id, budget, fetch_event=True)
        event = (await self.store.get_events([event_id])).get(event_id)
        if event is None:
            raise PduDropped("Cannot get %s" % event_id)
        return state_after(event, state)

    async def state_before_remote(
        self, origin: str, room: RoomInfo, event_id: str, budget: FetchBudget,
        fetch_event: bool = False,
    ) -> StateMap:
        """
        The state before an event, from C{/state_ids} at it: every unknown
        event of that state and its auth chain fetched and stored as
        outliers (the event itself too with C{fetch_event}; backfill stores
        it in the timeline instead).

        @raise PduDropped: the answer is malformed or too large.
        """
        budget.spend(requests=1)
        try:
            answer = await self.client.get_json(
                origin, "%s/state_ids/%s" % (FEDERATION_V1, q(room.room_id)),
                {"event_id": event_id},
            )
        except Exception as e:
            raise PduDropped("Cannot get the state at %s: %s" % (event_id, e)) from None
        if not isinstance(answer, dict):
            raise PduDropped("Bad /state_ids answer")
        pdu_ids, chain_ids = answer.get("pdu_ids"), answer.get("auth_chain_ids")
        if not isinstance(pdu_ids, list) or not isinstance(chain_ids, list) or not all(
            isinstance(i, str) for i in pdu_ids + chain_ids
        ):
            raise PduDropped("Bad /state_ids answer")
        if len(pdu_ids) + len(chain_ids) > self.max_state_events:
            raise PduDropped("State at %s is too large" % event_id)
        wanted = set(pdu_ids) | set(chain_ids)
        if fetch_event:
            wanted.add(event_id)
        known = await self.store.get_events(wanted)
        fetched = await self.fetch_events(origin, room, wanted - known.keys(), budget)
        await self.persist_outliers(room, fetched)
        events = await self.store.get_events(set(pdu_ids))
        state: StateMap = {}
        for state_id in pdu_ids:
            ev = events.get(state_id)
            if ev is not None and ev.is_state() and not ev.rejected:
                state[ev.state_pair()] = state_id  # type: ignore[index]
        return state

    # ------------------------------------------------------------------
    # Storing outliers

    async def auth_state_from_auth_events(
        self, room: RoomInfo, event: Event, extra: dict[str, Event] | None = None
    ) -> tuple[list[Event], dict[tuple[str, str | None], Event]]:
        """
        The event's auth events (from C{extra} or the store) and the auth
        state they make, with the create event added for rooms v12.
        """
        ids = list(event.auth_event_ids())
        create_id = create_event_id(room)
        extra = extra or {}
        lookup = [i for i in ids + ([create_id] if create_id else []) if i not in extra]
        stored = await self.store.get_events(lookup) if lookup else {}
        found = {**stored, **extra}
        auth_events = [found[i] for i in ids if i in found]
        auth_state: dict[tuple[str, str | None], Event] = {
            (e.type, e.state_key): e for e in auth_events
        }
        if create_id is not None and create_id in found:
            auth_state[CREATE_KEY] = found[create_id]
        return auth_events, auth_state

    async def check_against_auth_events(
        self, room: RoomInfo, event: Event, extra: dict[str, Event] | None = None
    ) -> str | None:
        """Step 4: None when the event passes auth against its own auth events, else why not."""
        auth_events, auth_state = await self.auth_state_from_auth_events(room, event, extra)
        try:
            check_auth_events_selection(event, auth_events)
            check_auth(event, auth_state)  # type: ignore[arg-type]
        except AuthError as e:
            return e.message
        return None

    async def persist_outliers(self, room: RoomInfo, events: list[Event]) -> None:
        """
        Store events as outliers in one transaction, in auth order, each
        rejected unless it passes auth against its own auth events.
        """
        if not events:
            return
        new: dict[str, Event] = {}
        txn = self.store.txn()
        for event in auth_order(events):
            reason = await self.check_against_auth_events(room, event, new)
            if reason is not None:
                log.info("Outlier {event_id} rejected: {reason}",
                         event_id=event.event_id, reason=reason)
                event.rejected = True
            new[event.event_id] = event
            await self.store.persist(event, kind=OUTLIER_KIND, txn=txn)
        await txn.commit()
