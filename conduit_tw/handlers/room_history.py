"""
Reading a room's history (client-server-api "Getting events for a room",
"Pagination", "Lazy-loading room members"; message_pagination.yaml,
event_context.yaml, rooms.yaml members/joined_members,
room_event_by_timestamp.yaml).

Pagination tokens
=================

A token names a *boundary* in a room's timeline (timeline.py: events sort
by C{order}): the events with C{order <= B} are before it, the others
after it. So a token has no direction: C{dir=b} from B returns the events
with C{order <= B} newest first, C{dir=f} from B those with C{order > B}
oldest first, and the C{end} of a page in one direction is a valid C{from}
in the other (it round-trips).

Encoding (opaque to clients, stable on disk-independent terms):

- C{B >= 2**63} (live events, C{order = 2**63 + stream position}):
  C{"s<position>"}, i.e. "after stream position P". So a /sync
  C{next_batch}/C{since} position is a pagination token as it is, and a
  sync C{prev_batch} is L{token_before} of the first timeline event. Only
  the leading C{s<digits>} (or bare digits) are read, so sync tokens that
  carry more parts after a C{_} or C{~} work too.
- C{B < 2**63} (backfilled history): C{"h<2**63 - B>"}.

Access (L{RoomHistoryHandler.check_access}), as Synapse does for
/messages: joined and invited users, users who left or were banned after
having joined (their view stops at their leave event), and anyone when the
room's current history visibility is C{world_readable}; everyone else gets
403. Every returned event then passes the spec's history visibility
algorithm (handlers/visibility.py), events of ignored users (except state
events) are left out, and the C{filter} applies.

Scanning: filtered-out events do not count toward C{limit}; a request
reads at most L{MAX_SCAN} timeline rows, and the C{end} token is the
boundary after the last row read (not the last returned), so nothing is
skipped or repeated. C{end} is omitted only when the timeline (or the
C{to} token, or a departed user's leave event) was reached.

Lazy loading: with C{lazy_load_members}, C{/messages} answers in C{state}
the membership event of each sender as of the sender's (first) event in
the chunk, and C{/context} limits its state to non-member state plus the
senders' memberships. Redundant members are always included (the spec
allows it), so C{include_redundant_members} changes nothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.handlers.filtering import EventFilter
from conduit_tw.storage.stores.membership import MembershipRecord
from conduit_tw.storage.stores.rooms import RoomHead, RoomInfo
from conduit_tw.storage.stores.timeline import LIVE_BASE, StoredEvent

if TYPE_CHECKING:
    from conduit_tw.handlers.account_data import AccountDataHandler
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.filtering import FilterHandler
    from conduit_tw.handlers.serialize import EventSerializer
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore

JsonDict = dict[str, Any]

#: Largest C{limit} of /messages and /context.
MAX_LIMIT = 1000
#: Default C{limit} of /messages and /context.
DEFAULT_LIMIT = 10
#: Most timeline rows one /messages request reads (filters may drop many).
MAX_SCAN = 2000
#: Most candidate rows /timestamp_to_event looks at.
MAX_TS_SCAN = 1000
#: Backfill requests one /messages page may make, and the least it asks for.
MAX_BACKFILL_ROUNDS = 3
BACKFILL_MIN = 20

_MAX_BOUNDARY = (1 << 64) - 2
_TOKEN = re.compile(r"(s?)(\d+)(?:[_~.].*)?|h(\d+)", re.DOTALL)
_MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")
_MEMBER = "m.room.member"


# ---------------------------------------------------------------------------
# Tokens


def encode_token(boundary: int) -> str:
    """The token of a timeline boundary (see the module docstring)."""
    boundary = max(0, min(boundary, _MAX_BOUNDARY))
    if boundary >= LIVE_BASE:
        return "s%d" % (boundary - LIVE_BASE)
    return "h%d" % (LIVE_BASE - boundary)


def parse_token(token: str) -> int:
    """
    The boundary a token names.

    @raise MatrixError: 400 M_INVALID_PARAM for anything else.
    """
    m = _TOKEN.fullmatch(token)
    if m is None or len(token) > 200:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid pagination token")
    if m.group(3) is not None:
        return max(0, LIVE_BASE - int(m.group(3)))
    return min(LIVE_BASE + int(m.group(2)), _MAX_BOUNDARY)


def pagination_bounds(
    direction: str, from_token: str | None, to_token: str | None
) -> tuple[bool, int | None, int | None]:
    """
    C{(forward, from boundary, to boundary)} of a C{dir}/C{from}/C{to}
    query (/messages, /relations).

    @raise MatrixError: 400 M_INVALID_PARAM.
    """
    if direction not in ("b", "f"):
        raise MatrixError(400, Codes.INVALID_PARAM, "dir must be 'b' or 'f'")
    return (
        direction == "f",
        parse_token(from_token) if from_token else None,
        parse_token(to_token) if to_token else None,
    )


def token_for_position(position: int) -> str:
    """The token "after every live event up to stream C{position}" (sync's next_batch)."""
    return encode_token(LIVE_BASE + position)


def token_before(event: StoredEvent) -> str:
    """The boundary just before a timeline event (sync's C{prev_batch})."""
    return encode_token(event.order - 1)


def token_after(event: StoredEvent) -> str:
    """The boundary just after a timeline event."""
    return encode_token(event.order)


# ---------------------------------------------------------------------------


class RoomHistoryHandler:
    """/messages, /context, /members, /joined_members, /timestamp_to_event."""

    def __init__(
        self,
        store: "EventStore",
        visibility: "Visibility",
        filters: "FilterHandler",
        account_data: "AccountDataHandler",
        serializer: "EventSerializer",
    ) -> None:
        self.store = store
        self.visibility = visibility
        self.filters = filters
        self.account_data = account_data
        self.serializer = serializer
        #: C{(room_id, limit) -> Awaitable[int]}: fetch history before the
        #: room's earliest event from other servers (federation/backfill.py),
        #: answering how many events it added; None without federation.
        self.backfill: Callable[[str, int], Awaitable[int]] | None = None
        #: C{(room, ts, dir, local event or None) -> Awaitable[answer or
        #: None]}: ask other servers when our history may lack the answer
        #: (federation/timestamp.py); None without federation.
        self.remote_timestamp: Callable[..., Awaitable[JsonDict | None]] | None = None

    # -- access

    async def check_access(
        self, user_id: str, room_id: str
    ) -> tuple[RoomInfo, RoomHead, MembershipRecord | None, int | None]:
        """
        May the user read the room's history at all (see the module
        docstring)? Returns the room, its head, the user's membership
        record and, for a departed user, the order of their leave event
        (their view stops there).

        @raise MatrixError: 403 M_FORBIDDEN.
        """
        room = await self.store.get_room(room_id)
        head = await self.store.head(room) if room is not None else None
        if room is None or head is None or not head.statehash:
            raise forbidden("You aren't a member of the room and weren't previously a member")
        rec = await self.store.membership_record(user_id, room_id)
        m = rec.membership if rec is not None else None
        if m in ("join", "invite"):
            return room, head, rec, None
        if rec is not None and m in ("leave", "ban") and rec.last_join_order:
            leave = await self.store.get_event_by_short(rec.shorteventid)
            return room, head, rec, (leave.order if leave is not None and leave.order else None)
        if await self.visibility.history_visibility(head.statehash) == "world_readable":
            return room, head, rec, None
        raise forbidden("You aren't a member of the room and weren't previously a member")

    # -- scanning

    async def _scan(
        self,
        user_id: str,
        room: RoomInfo,
        boundary: int,
        forward: bool,
        limit: int,
        stop: int | None,
        event_filter: EventFilter,
        ignored: frozenset[str],
        max_scan: int = MAX_SCAN,
    ) -> tuple[list[StoredEvent], int, bool]:
        """
        Walk the timeline from C{boundary} and collect up to C{limit}
        events the user may see and the filter lets through.

        @param stop: a boundary not to cross (C{to}), or None.
        @return: the events in walking order, the boundary after the last
            row read, and whether the walk reached the end (the timeline's
            or C{stop}).
        """
        timeline = self.store.timeline
        chunk: list[StoredEvent] = []
        scanned = 0
        b = boundary
        if limit <= 0:
            return chunk, b, False
        while True:
            n = min(max(limit - len(chunk), 16) + 4, max_scan - scanned)
            if n <= 0:
                return chunk, b, False
            if forward:
                if stop is not None and b >= stop:
                    return chunk, b, True
                rows = await timeline.range(
                    room.short, b + 1, True, n, stop + 1 if stop is not None else None
                )
            else:
                if b <= 0 or (stop is not None and b <= stop):
                    return chunk, b, True
                rows = await timeline.range(room.short, b, False, n, stop)
            if not rows:
                return chunk, b, True
            scanned += len(rows)
            visible = {e.event_id for e in await self.visibility.filter_events_for_user(user_id, rows)}
            everything = _passes_all(event_filter)
            for i, ev in enumerate(rows):
                b = ev.order if forward else ev.order - 1
                if (
                    ev.event_id in visible
                    and (not ignored or ev.sender not in ignored or ev.is_state())
                    and (everything or event_filter.matches(ev.pdu))
                ):
                    chunk.append(ev)
                    if len(chunk) >= limit:
                        return chunk, b, i == len(rows) - 1 and len(rows) < n
            if len(rows) < n:
                return chunk, b, True

    async def _lazy_members(
        self, events: Iterable[StoredEvent], already: set[str] | None = None
    ) -> list[StoredEvent]:
        """The membership event of each sender as of their first event here."""
        seen = set(already or ())
        out = []
        for ev in events:
            sender = ev.sender
            if sender in seen:
                continue
            seen.add(sender)
            member = await self.store.state_event(ev.state_after, _MEMBER, sender)
            if member is not None:
                out.append(member)
        return out

    # -- /messages

    async def messages(
        self,
        requester: "Requester",
        room_id: str,
        *,
        from_token: str | None,
        to_token: str | None,
        direction: str,
        limit: int | None,
        filter_param: str | None,
    ) -> JsonDict:
        """C{GET /rooms/{roomId}/messages}."""
        user_id = requester.user_id
        forward, boundary, stop = pagination_bounds(direction, from_token, to_token)
        event_filter = await self.filters.resolve_room_event_filter(user_id, filter_param)
        room, head, _, leave_order = await self.check_access(user_id, room_id)
        if limit is None:
            limit = event_filter.limit if event_filter.limit is not None else DEFAULT_LIMIT
        limit = max(0, min(limit, MAX_LIMIT))
        if boundary is None:
            boundary = LIVE_BASE + head.last_position if not forward else 0
            start = encode_token(boundary)
        else:
            start = from_token  # type: ignore[assignment]
        if leave_order is not None:
            # A departed user's view ends at their leave event.
            if not forward and boundary > leave_order:
                boundary = leave_order
            if forward and (stop is None or stop > leave_order):
                stop = leave_order
        ignored = await self.account_data.ignored_users(user_id)
        events, end, exhausted = await self._scan(
            user_id, room, boundary, forward, limit, stop, event_filter, ignored
        )
        # Past the earliest event we hold: ask the room's other servers
        # (server-server-api "Backfilling and retrieving missing events").
        rounds = 0
        while (
            not forward and exhausted and stop is None and len(events) < limit
            and self.backfill is not None and rounds < MAX_BACKFILL_ROUNDS
        ):
            rounds += 1
            if not await self.backfill(room_id, max(limit - len(events), BACKFILL_MIN)):
                break
            more, end, exhausted = await self._scan(
                user_id, room, end, forward, limit - len(events), stop, event_filter, ignored
            )
            events.extend(more)
        out: JsonDict = {
            "chunk": await self.serializer.serialize_events(
                events, user_id, requester.device_id
            ),
            "start": start,
        }
        # message_pagination.yaml: C{end} is omitted only when no further
        # events are available; a non-empty chunk always carries it (the
        # next request from it then answers an empty chunk without C{end}).
        if events or not exhausted or limit == 0:
            out["end"] = encode_token(end)
        if event_filter.lazy_load_members and events:
            members = await self._lazy_members(events)
            out["state"] = await self.serializer.serialize_events(
                members, user_id, requester.device_id
            )
        return out

    # -- /context

    async def context(
        self,
        requester: "Requester",
        room_id: str,
        event_id: str,
        *,
        limit: int | None,
        filter_param: str | None,
    ) -> JsonDict:
        """C{GET /rooms/{roomId}/context/{eventId}}."""
        user_id = requester.user_id
        event_filter = await self.filters.resolve_room_event_filter(user_id, filter_param)
        # The same access as /messages (check_access): a user who may not
        # page the room, or an event past a departed user's leave, is
        # answered 404 as event_context.yaml says.
        try:
            room, _, _, leave_order = await self.check_access(user_id, room_id)
        except MatrixError:
            raise not_found("Event not found.")
        ev = await self.store.get_event(event_id)
        if (
            ev is None
            or ev.room_id_or_create() != room_id
            or not ev.in_timeline
            or (leave_order is not None and ev.order > leave_order)
            or not await self.visibility.can_see_event(user_id, ev)
        ):
            raise not_found("Event not found.")
        if limit is None:
            limit = DEFAULT_LIMIT
        limit = max(0, min(limit, MAX_LIMIT))
        before_limit = limit // 2
        after_limit = limit - before_limit
        ignored = await self.account_data.ignored_users(user_id)
        stop = leave_order
        before, start_b, _ = await self._scan(
            user_id, room, ev.order - 1, False, before_limit, None, event_filter, ignored
        )
        after, end_b, _ = await self._scan(
            user_id, room, ev.order, True, after_limit, stop, event_filter, ignored
        )
        last = after[-1] if after else ev
        keys = None
        if event_filter.lazy_load_members:
            senders = {e.sender for e in before} | {ev.sender} | {e.sender for e in after}
            full = await self.store.state_ids(last.state_after)
            keys = [k for k in full if k[0] != _MEMBER or k[1] in senders]
        state = await self.store.state_events(last.state_after, keys)
        state_list = sorted(
            (s for s in state.values() if event_filter.matches(s.pdu)),
            key=lambda e: (e.order, e.event_id),
        )
        ser = self.serializer
        device = requester.device_id
        return {
            "event": (await ser.serialize_events([ev], user_id, device))[0],
            "events_before": await ser.serialize_events(before, user_id, device),
            "events_after": await ser.serialize_events(after, user_id, device),
            "state": await ser.serialize_events(state_list, user_id, device),
            "start": encode_token(start_b if before else ev.order - 1),
            "end": encode_token(end_b if after else ev.order),
        }

    # -- /members, /joined_members

    async def _state_at_boundary(self, room: RoomInfo, boundary: int) -> int:
        """The state after the last timeline event at or before C{boundary}."""
        rows = await self.store.timeline.range(room.short, boundary, False, 1)
        return rows[0].state_after if rows else 0

    async def members(
        self,
        requester: "Requester",
        room_id: str,
        *,
        at: str | None,
        membership: str | None,
        not_membership: str | None,
    ) -> JsonDict:
        """C{GET /rooms/{roomId}/members}."""
        for name, value in (("membership", membership), ("not_membership", not_membership)):
            if value is not None and value not in _MEMBERSHIPS:
                raise MatrixError(400, Codes.INVALID_PARAM, "Unknown %s %r" % (name, value))
        boundary = parse_token(at) if at else None
        room, head, rec, leave_order = await self.check_access(requester.user_id, room_id)
        if leave_order is not None and (boundary is None or boundary > leave_order):
            boundary = leave_order
        statehash = head.statehash if boundary is None else await self._state_at_boundary(room, boundary)
        state = await self.store.state_events(statehash) if statehash else {}
        chunk = []
        for (etype, _), ev in state.items():
            if etype != _MEMBER:
                continue
            m = ev.membership()
            if membership is None and not_membership is None:
                keep = True
            else:
                keep = (membership is not None and m == membership) or (
                    not_membership is not None and m != not_membership
                )
            if keep:
                chunk.append(ev)
        chunk.sort(key=lambda e: (e.order, e.event_id))
        return {
            "chunk": await self.serializer.serialize_events(
                chunk, requester.user_id, requester.device_id
            )
        }

    async def joined_members(self, requester: "Requester", room_id: str) -> JsonDict:
        """C{GET /rooms/{roomId}/joined_members}: only for joined users."""
        if await self.store.membership(requester.user_id, room_id) != "join":
            raise forbidden("You aren't a member of the room")
        users = await self.store.members(room_id, "join")
        state = await self.store.current_state_events(room_id, [(_MEMBER, u) for u in users])
        joined: JsonDict = {}
        for (_, user), ev in state.items():
            content = ev.content
            # Both keys are always present (null when unset), as clients
            # read them without checking (rooms.yaml RoomMember).
            info: JsonDict = {}
            for src, dst in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                value = content.get(src)
                info[dst] = value if isinstance(value, str) else None
            joined[user] = info
        return {"joined": joined}

    # -- room state and single events (rooms.yaml)

    async def visible_state_hash(self, user_id: str, room_id: str) -> int:
        """
        The state C{user_id} may read (C{GET /rooms/{roomId}/state}): the
        current state if joined or the room is C{world_readable}, the
        state at their leave if they left after joining; 403 otherwise.
        """
        store = self.store
        room = await store.get_room(room_id)
        if room is None or not (await store.head(room)).statehash:
            raise forbidden("You aren't a member of the room and weren't previously a member")
        rec = await store.membership_record(user_id, room_id)
        head = await store.head(room)
        if rec is not None and rec.membership == "join":
            return head.statehash
        if await self.visibility.history_visibility(head.statehash) == "world_readable":
            return head.statehash
        if rec is not None and rec.membership in ("leave", "ban") and rec.last_join_order:
            ev = await store.get_event_by_short(rec.shorteventid)
            if ev is not None:
                return ev.state_after
        raise forbidden("You aren't a member of the room and weren't previously a member")

    async def state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent:
        """One state event of the state the user may read (404 if absent)."""
        statehash = await self.visible_state_hash(user_id, room_id)
        ev = await self.store.state_event(statehash, event_type, state_key)
        if ev is None:
            raise not_found("Event not found.")
        return ev

    async def state(self, user_id: str, room_id: str) -> list[StoredEvent]:
        """The state the user may read, in timeline order."""
        statehash = await self.visible_state_hash(user_id, room_id)
        state = await self.store.state_events(statehash)
        return sorted(state.values(), key=lambda e: (e.order, e.event_id))

    async def event(self, user_id: str, room_id: str, event_id: str) -> StoredEvent:
        """C{GET /rooms/{roomId}/event/{eventId}}: 404 unless the user may see it."""
        ev = await self.store.get_event(event_id)
        if (
            ev is None
            or ev.room_id_or_create() != room_id
            or not ev.in_timeline
            or not await self.visibility.can_see_event(user_id, ev)
        ):
            raise not_found("Event not found.")
        return ev

    # -- /timestamp_to_event

    async def timestamp_to_event(
        self, requester: "Requester", room_id: str, ts: int, direction: str
    ) -> JsonDict:
        """
        C{GET /v1/rooms/{roomId}/timestamp_to_event}: the first event the
        user may see at or after (C{f}) / at or before (C{b}) C{ts}, by
        C{origin_server_ts}, from the C{roomid_ts} index (timeline.py).
        """
        if direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be 'b' or 'f'")
        user_id = requester.user_id
        room, _, _, _ = await self.check_access(user_id, room_id)

        async def visible(events: list[StoredEvent]) -> list[StoredEvent]:
            return await self.visibility.filter_events_for_user(user_id, events)

        ev = await self.find_by_timestamp(room, ts, direction == "f", visible)
        if self.remote_timestamp is not None:
            answer = await self.remote_timestamp(room, ts, direction, ev)
            if answer is not None:
                return answer
        if ev is None:
            raise not_found("Unable to find event from %d in direction %s" % (ts, direction))
        return {"event_id": ev.event_id, "origin_server_ts": ev.origin_server_ts}

    async def find_by_timestamp(
        self, room: RoomInfo, ts: int, forward: bool,
        visible: Callable[[list[StoredEvent]], Awaitable[list[StoredEvent]]],
    ) -> StoredEvent | None:
        """
        The first timeline event at or after (C{forward}) / at or before
        C{ts} that C{visible} keeps, from the C{roomid_ts} index.
        """
        timeline = self.store.timeline
        after: tuple[int, int] | None = None
        scanned = 0
        while scanned < MAX_TS_SCAN:
            rows = await timeline.by_timestamp(room.short, ts, forward, 50, after)
            if not rows:
                break
            scanned += len(rows)
            events = await timeline.get_many(short for _, _, short in rows)
            kept = await visible([e for e in events if e is not None])
            if kept:
                return kept[0]
            after = (rows[-1][0], rows[-1][1])
            if len(rows) < 50:
                break
        return None


def _passes_all(event_filter: EventFilter) -> bool:
    """Whether the filter lets every event through (no criteria)."""
    d = event_filter.definition
    return not any(
        k in d
        for k in ("types", "not_types", "senders", "not_senders", "rooms", "not_rooms", "contains_url")
    )
