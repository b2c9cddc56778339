"""
One room of a /sync response (see handlers/sync.py for the whole).

Joined rooms:

- B{timeline}: the newest events in C{(since, now]} (C{(0, now]} for an
  initial sync or a room joined since the token), read backwards from the
  room's timeline index and filtered (history visibility, ignored
  senders, the timeline filter) until C{limit} are kept; C{limited} when
  more remained, C{prev_batch} the room token (handlers/room_history.py)
  just before the oldest returned event (a /messages C{from}).
- B{state}: for an initial sync, a newly joined room or C{full_state},
  the whole state at the start of the timeline; otherwise the delta
  between the state at C{since} (after the last event at or before it)
  and the state at the start of the timeline: the keys whose event
  differs. States are compared as short-id maps (cached), so an unchanged
  room costs one integer comparison. With C{use_state_after}, the same
  against the state at the end of the timeline, as C{state_after}.
- B{lazy-loading}: member events only for the timeline's senders, the
  heroes and (when joined or with full state) the user, minus those this
  device was already sent in a response the client has acknowledged
  (remembered per device in memory; after a restart or a retried request
  they are sent again, which the spec allows) unless
  C{include_redundant_members}. Member changes inside a gap are always
  sent.
- B{ephemeral}: C{m.typing} if it changed, C{m.receipt} with the receipts
  since the token (others' private receipts left out).
- B{summary}: heroes and member counts, when the membership changed (and
  always in an initial or newly-joined room); cached per room state.
- B{unread_notifications} / B{unread_thread_notifications}: from
  handlers/notifications.py.

Invited/knocked rooms carry stripped state (client-server-api "Stripped
state") from the state after the invite/knock event, including that
event. Left rooms carry the timeline up to the leave and the state delta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from conduit_tw.handlers.room_history import encode_token
from conduit_tw.handlers.sync_token import boundary_after_position
from conduit_tw.storage.stores.timeline import LIVE_BASE, StoredEvent
from conduit_tw.util.caches import LruCache, scaled
from conduit_tw.util.encoded_json import Encoded, events_template

if TYPE_CHECKING:
    from conduit_tw.handlers.notifications import NotificationsHandler
    from conduit_tw.handlers.receipts import ReceiptsHandler
    from conduit_tw.handlers.serialize import EventSerializer
    from conduit_tw.handlers.sync import SyncContext
    from conduit_tw.handlers.typing import TypingHandler
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.membership import MembershipRecord
    from conduit_tw.storage.stores.rooms import RoomInfo

_MEMBER = "m.room.member"
_STRIPPED_TYPES = (
    "m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules",
    "m.room.canonical_alias", "m.room.encryption",
)
_MAX_TIMELINE_PAGES = 8
#: The C{unsigned} keys of a client event that are the same for every viewer
#: and carry no age of their own (handlers/serialize.py): an event with
#: others (C{transaction_id}, C{redacted_because}, C{m.relations}) is not shared.
_SHARED_UNSIGNED = frozenset({"age", "prev_content", "prev_sender", "replaces_state"})
#: Longer sections are not shared: a fan-out's sections are short, and the
#: cache of shared ones stays small (at most this many events per entry).
_MAX_SHARED_EVENTS = 20


class _SharedSection:
    """
    A timeline or state section encoded once for every member it is the
    same for: everyone but the senders of the events that carry a
    transaction ID (their own device gets it in C{unsigned}).
    """

    __slots__ = ("value", "tx_senders")

    def __init__(self, value: Encoded | None, tx_senders: frozenset[str]) -> None:
        #: None: the section differs per viewer (never shared).
        self.value = value
        self.tx_senders = tx_senders


def stripped(event: StoredEvent) -> dict[str, Any]:
    """A stripped state event (type, state_key, sender, content)."""
    pdu = event.pdu
    return {
        "type": pdu["type"],
        "state_key": pdu.get("state_key", ""),
        "sender": pdu["sender"],
        "content": pdu.get("content", {}),
    }


class RoomSync:
    """Builds the per-room parts of a /sync response."""

    def __init__(
        self,
        store: "EventStore",
        visibility: "Visibility",
        typing: "TypingHandler",
        receipts: "ReceiptsHandler",
        notifications: "NotificationsHandler",
        serializer: "EventSerializer",
        cache_modifier: float = 1.0,
    ) -> None:
        self.store = store
        self.visibility = visibility
        self.typing = typing
        self.receipts = receipts
        self.notifications = notifications
        self.serializer = serializer
        modifier = cache_modifier
        #: (shortroomid, statehash) -> (first 6 heroes, joined, invited)
        self._summaries: LruCache[tuple[int, int], tuple[tuple[str, ...], int, int]] = LruCache(
            scaled(20_000, modifier)
        )
        #: statehash -> whether the room has a name or canonical alias there
        self._named: LruCache[int, bool] = LruCache(scaled(20_000, modifier))
        #: Reads that every member woken by the same event repeats, of
        #: history that cannot change any more (live orders up to the
        #: announced position are all applied; backfill sorts below them):
        #: (shortroomid, start, page, lo) -> short ids of a timeline page,
        #: (shortroomid, position) -> statehash after the last live event
        #: at or before it.
        self._pages: LruCache[tuple[int, int, int, int], list[int]] = LruCache(
            scaled(2_000, modifier)
        )
        self._hashes: LruCache[tuple[int, int], int] = LruCache(scaled(10_000, modifier))
        #: (now position, event short ids, what follows the events) -> the
        #: section encoded once for every member woken by the same events
        #: (see L{_section}); counted for tests and metrics.
        self._shared: LruCache[tuple[Any, ...], _SharedSection] = LruCache(scaled(128, modifier))
        self.shared_built = 0
        self.shared_used = 0

    # ------------------------------------------------------------------
    # Timelines

    async def _timeline(
        self, ctx: "SyncContext", room: "RoomInfo", lo: int, hi: int
    ) -> tuple[list[StoredEvent], bool]:
        """
        The newest visible, filter-passing events with orders in
        C{[lo, hi)}, oldest first, and whether older ones were left out.
        """
        limit = ctx.limit
        flt = ctx.filter.room_timeline
        ignored = ctx.ignored
        timeline = self.store.timeline
        kept: list[StoredEvent] = []
        start = hi - 1
        limited = False
        page = limit + 1
        for _ in range(_MAX_TIMELINE_PAGES):
            if start < lo:
                break
            raw = await self._page(room.short, start, page, lo)
            if not raw:
                break
            if limit == 0:
                limited = True
                break
            candidates = [
                e for e in raw
                if (not ignored or e.sender not in ignored or e.is_state())
                and flt.matches(e.pdu)
            ]
            visible = await self.visibility.filter_events_for_user(ctx.user_id, candidates)
            for ev in visible:
                if len(kept) == limit:
                    limited = True
                    break
                kept.append(ev)
            if limited or len(raw) < page:
                break
            start = raw[-1].order - 1
            page = min(page * 2, 200)
        else:
            limited = True
        kept.reverse()
        return kept, limited

    # ------------------------------------------------------------------
    # State

    async def _page(self, short: int, start: int, page: int, lo: int) -> list[StoredEvent]:
        """C{timeline.range(short, start, False, page, lo - 1)}, memoised for live ranges."""
        timeline = self.store.timeline
        if lo <= LIVE_BASE:
            return await timeline.range(short, start, False, page, lo - 1)
        key = (short, start, page, lo)
        shorts = self._pages.get(key)
        if shorts is not None:
            return [e for e in await timeline.get_many(shorts) if e is not None]
        raw = await timeline.range(short, start, False, page, lo - 1)
        self._pages.set(key, [e.short for e in raw])
        return raw

    async def _hash_at_position(self, room: "RoomInfo", position: int) -> int:
        head = await self.store.head(room)
        if head.last_position <= position:
            return head.statehash
        key = (room.short, position)
        cached = self._hashes.get(key)
        if cached is not None:
            return cached
        events = await self.store.timeline.range(
            room.short, boundary_after_position(position) - 1, False, 1
        )
        if not events:
            return 0
        if events[0].order > LIVE_BASE:
            self._hashes.set(key, events[0].state_after)
        return events[0].state_after

    async def _state_events(
        self,
        ctx: "SyncContext",
        room: "RoomInfo",
        base_hash: int | None,
        target_hash: int,
        timeline: list[StoredEvent],
        include_self: bool,
        extra_members: Iterable[str] = (),
    ) -> list[StoredEvent]:
        """
        The state to send: the whole of C{target_hash} (C{base_hash} None)
        or its difference from C{base_hash}; filtered and lazy-loaded.
        """
        store = self.store
        if base_hash == target_hash and not ctx.lazy:
            # No state change and no members to add: nothing to send.
            return []
        target = await store.state.full(target_hash)
        if base_hash is None:
            shorts = list(target.items())
        elif base_hash == target_hash:
            shorts = []
        else:
            base = await store.state.full(base_hash)
            shorts = [(sk, ev) for sk, ev in target.items() if base.get(sk) != ev]
        flt = ctx.filter.room_state
        pairs = await store.short.get_statekeys(sk for sk, _ in shorts)
        wanted_shorts: list[int] = []
        lazy = ctx.lazy
        full = base_hash is None
        # Only members sent in a response the client has acknowledged (by
        # syncing from its token or a later one) count as sent: a retried
        # request with the same C{since} gets them again.
        since_pos = ctx.since_position
        sent = {
            user: event_id
            for user, (event_id, pos) in ctx.ll_sent.get(room.room_id, {}).items()
            if pos <= since_pos
        } if lazy and not ctx.include_redundant else {}
        members_needed: set[str] = set()
        if lazy:
            members_needed.update(e.sender for e in timeline)
            members_needed.update(extra_members)
            if include_self:
                members_needed.add(ctx.user_id)
        covered: set[str] = set()
        for (sk, ev), pair in zip(shorts, pairs):
            if pair is None:
                continue
            etype, skey = pair
            if etype == _MEMBER and lazy and full:
                # Full state with lazy-loading: only the members wanted.
                if skey not in members_needed:
                    continue
            if etype == _MEMBER:
                covered.add(skey)
            if not flt.allows_type(etype):
                continue
            wanted_shorts.append(ev)
        if lazy and not full:
            # A delta carries every member change of the gap; add the
            # wanted members the client does not have yet.
            for user in members_needed - covered:
                sk = await store.short.get_shortstatekey(_MEMBER, user)
                if sk is None:
                    continue
                ev = target.get(sk)
                if ev is not None:
                    wanted_shorts.append(ev)
        events = [
            e for e in await store.timeline.get_many(wanted_shorts)
            if e is not None and flt.matches(e.pdu)
        ]
        if lazy and sent and full:
            events = [
                e for e in events
                if not (e.type == _MEMBER and sent.get(e.state_key or "") == e.event_id
                        and e.state_key != ctx.user_id)
            ]
        elif lazy and sent:
            events = [
                e for e in events
                if not (e.type == _MEMBER and e.state_key in members_needed
                        and e.state_key not in covered
                        and sent.get(e.state_key or "") == e.event_id)
            ]
        return events

    def _remember_members(self, ctx: "SyncContext", room_id: str, events: Iterable[StoredEvent]) -> None:
        if not ctx.lazy:
            return
        sent = ctx.ll_sent.setdefault(room_id, {})
        for e in events:
            if e.type == _MEMBER and e.state_key is not None:
                if sent.get(e.state_key, ("", 0))[0] != e.event_id:
                    sent[e.state_key] = (e.event_id, ctx.now.position)

    # ------------------------------------------------------------------
    # Serialised sections

    async def _timeline_and_state(
        self,
        ctx: "SyncContext",
        timeline: list[StoredEvent],
        limited: bool,
        hi: int,
        state: list[StoredEvent],
        share: bool,
    ) -> dict[str, Any]:
        """
        The C{timeline} and C{state} (C{state_after}) sections of a room entry;
        C{hi} is the timeline's upper bound, which C{prev_batch} falls back on
        when the timeline is empty.
        """
        prev_batch = encode_token((timeline[0].order if timeline else hi) - 1)
        return {
            "timeline": await self._section(
                ctx, timeline, {"limited": limited, "prev_batch": prev_batch}, share
            ),
            "state_after" if ctx.use_state_after else "state": await self._section(
                ctx, state, {}, share
            ),
        }

    async def _section(
        self, ctx: "SyncContext", events: list[StoredEvent], after: dict[str, Any], share: bool
    ) -> dict[str, Any]:
        """
        C{{"events": <events in client format>, **after}} for this viewer.

        Every member woken by the same event asks for the same events here
        (each list already passed the member's own visibility, ignore list
        and filter), and their client format is the same for all of them
        except where L{_build_shared} says it is not: so with C{share}
        (incremental syncs without C{event_fields}, sections of at most
        L{_MAX_SHARED_EVENTS} events), the section is built
        and encoded once per (now position, events, C{after}) and spliced
        into each response (util/encoded_json.py), each with its own ages.
        The now position in the key keeps a later response (after a
        redaction or a new relation) from reusing an older section.
        """
        if share and 0 < len(events) <= _MAX_SHARED_EVENTS and ctx.filter.event_fields is None:
            key = (ctx.now.position, tuple(e.short for e in events), tuple(after.items()))
            shared = self._shared.get(key)
            if shared is None:
                shared = await self._build_shared(events, after)
                self._shared.set(key, shared)
            if shared.value is not None and ctx.user_id not in shared.tx_senders:
                self.shared_used += 1
                return shared.value
        serialized = await self.serializer.serialize_events(
            events, ctx.user_id, ctx.device_id, include_room_id=False
        )
        if ctx.filter.event_fields is not None:
            serialized = [ctx.filter.project(e) for e in serialized]
        return {"events": serialized, **after}

    async def _build_shared(
        self, events: list[StoredEvent], after: dict[str, Any]
    ) -> _SharedSection:
        """
        The section as anyone but the events' own senders sees it, or an
        unshared marker when it depends on the viewer: a redacted event
        (C{redacted_because} carries the redaction's own transaction ID
        and age) or bundled aggregations (C{m.relations} depend on what
        the viewer may see and did, client-server-api "Aggregations of
        child events"). Serialised without a viewer, the aggregations are
        those of a viewer who may see everything, so none here means none
        for every member.
        """
        tx_senders = frozenset(e.sender for e in events if e.extras.get("tx"))
        if any(e.extras.get("rb") for e in events):
            return _SharedSection(None, tx_senders)
        serializer = self.serializer
        serialized = await serializer.serialize_events(events, None, None, include_room_id=False)
        if any(not _SHARED_UNSIGNED.issuperset(e.get("unsigned", ())) for e in serialized):
            return _SharedSection(None, tx_senders)
        template = events_template(serialized, after)
        if template is None:
            return _SharedSection(None, tx_senders)
        self.shared_built += 1
        value = Encoded({"events": serialized, **after}, template, serializer.clock_ms)
        return _SharedSection(value, tx_senders)

    # ------------------------------------------------------------------
    # Summary

    async def _summary(
        self, ctx: "SyncContext", room: "RoomInfo", statehash: int
    ) -> dict[str, Any]:
        key = (room.short, statehash)
        cached = self._summaries.get(key)
        if cached is None:
            head = await self.store.head(room)
            heroes: tuple[str, ...] = ()
            if not await self._has_name(statehash):
                heroes = await self._heroes(room)
            cached = (heroes, head.joined, head.invited)
            self._summaries.set(key, cached)
        heroes, joined, invited = cached
        out: dict[str, Any] = {
            "m.joined_member_count": joined,
            "m.invited_member_count": invited,
        }
        mine = [h for h in heroes if h != ctx.user_id][:5]
        if mine:
            out["m.heroes"] = mine
        return out

    async def _has_name(self, statehash: int) -> bool:
        named = self._named.get(statehash)
        if named is None:
            named = False
            for etype, field in (("m.room.name", "name"), ("m.room.canonical_alias", "alias")):
                ev = await self.store.state_event(statehash, etype, "")
                if ev is not None and ev.content.get(field):
                    named = True
                    break
            self._named.set(statehash, named)
        return named

    async def _heroes(self, room: "RoomInfo") -> tuple[str, ...]:
        store = self.store
        members = await store.members(room.room_id, "join") + await store.members(room.room_id, "invite")
        if not members:
            members = await store.members(room.room_id, "leave") + await store.members(room.room_id, "ban")
        if len(members) > 6:
            positions = []
            for user in members:
                rec = await store.membership_record(user, room.room_id)
                positions.append((rec.position if rec else 0, user))
            positions.sort()
            members = [u for _, u in positions]
        # One more than five, so that dropping the viewer leaves five.
        return tuple(members[:6])

    # ------------------------------------------------------------------
    # Sections

    async def joined(
        self,
        ctx: "SyncContext",
        room: "RoomInfo",
        rec: "MembershipRecord",
        account_data: list[dict[str, Any]] | None,
    ) -> dict[str, Any] | None:
        """A C{rooms.join} entry, or None when nothing is to be said."""
        p = ctx.since_position
        n = ctx.now.position
        initial = ctx.since is None
        since_hash: int | None = None
        newly_joined = False
        if not initial:
            since_hash = await self._hash_at_position(room, p)
            if rec.position > p:
                newly_joined = await self.visibility.membership_at(since_hash, ctx.user_id) != "join"
        full = initial or ctx.full_state or newly_joined
        lo = 0 if initial or newly_joined else boundary_after_position(p)
        hi = boundary_after_position(n)
        timeline, limited = await self._timeline(ctx, room, lo, hi)
        if timeline:
            start_hash = timeline[0].state_before
            end_hash = timeline[-1].state_after
        else:
            start_hash = end_hash = await self._hash_at_position(room, n)
        target_hash = end_hash if ctx.use_state_after else start_hash

        summary = None
        heroes: tuple[str, ...] = ()
        if full:
            summary = await self._summary(ctx, room, end_hash)
            heroes = tuple(summary.get("m.heroes", ()))
        state = await self._state_events(
            ctx, room, None if full else since_hash, target_hash,
            timeline, include_self=full, extra_members=heroes if ctx.lazy else (),
        )
        if summary is None and (
            any(e.type == _MEMBER for e in timeline) or any(e.type == _MEMBER for e in state)
        ):
            summary = await self._summary(ctx, room, end_hash)

        ephemeral: list[dict[str, Any]] = []
        eph_filter = ctx.filter.room_ephemeral
        if eph_filter.allows_type("m.typing"):
            if full:
                if self.typing.typing_users(room.room_id):
                    ephemeral.append(self.typing.event(room.room_id))
            else:
                ev = self.typing.event_if_changed(room.room_id, ctx.since.typing)  # type: ignore[union-attr]
                if ev is not None:
                    ephemeral.append(ev)
        if eph_filter.allows_type("m.receipt"):
            receipt = await self.receipts.receipt_event(
                ctx.user_id, room.short, 0 if full else p, n, ctx.ignored
            )
            if receipt is not None:
                ephemeral.append(receipt)

        room_data = [e for e in (account_data or ()) if ctx.filter.room_account_data.matches(e)]
        if (
            not full and not timeline and not state and not ephemeral and not room_data
            and summary is None
        ):
            return None

        entry = await self._timeline_and_state(ctx, timeline, limited, hi, state, share=not full)
        entry["ephemeral"] = {"events": ephemeral}
        entry["account_data"] = {"events": room_data}
        counts = await self.notifications.room_counts(ctx.user_id, room.short)
        entry["unread_notifications"] = counts.unread_notifications(ctx.threaded)
        if ctx.threaded:
            threads = counts.unread_thread_notifications()
            if threads:
                entry["unread_thread_notifications"] = threads
        if summary is not None:
            entry["summary"] = summary
        self._remember_members(ctx, room.room_id, state)
        self._remember_members(ctx, room.room_id, timeline)
        return entry

    async def left(
        self,
        ctx: "SyncContext",
        room: "RoomInfo",
        rec: "MembershipRecord",
        account_data: list[dict[str, Any]] | None,
    ) -> dict[str, Any] | None:
        """A C{rooms.leave} entry: the timeline up to the leave, the state delta."""
        p = ctx.since_position
        initial = ctx.since is None or ctx.full_state
        hi = boundary_after_position(rec.position)
        since_hash = None if initial else await self._hash_at_position(room, p)
        was_joined = rec.last_join_order > 0
        if since_hash is not None:
            joined_at_since = await self.visibility.membership_at(since_hash, ctx.user_id) == "join"
        else:
            joined_at_since = False
        lo = boundary_after_position(p) if (since_hash is not None and joined_at_since) else 0
        timeline, limited = await self._timeline(ctx, room, lo, hi)
        if not timeline:
            # The leave event itself is always visible to its target.
            leave_event = await self.store.get_event_by_short(rec.shorteventid)
            if leave_event is not None:
                timeline = [leave_event]
        start_hash = timeline[0].state_before if timeline else 0
        end_hash = timeline[-1].state_after if timeline else 0
        target_hash = end_hash if ctx.use_state_after else start_hash
        state: list[StoredEvent] = []
        if was_joined and target_hash:
            base = since_hash if joined_at_since else None
            state = await self._state_events(
                ctx, room, base, target_hash, timeline, include_self=base is None
            )
        entry = await self._timeline_and_state(ctx, timeline, limited, hi, state, share=False)
        entry["account_data"] = {
            "events": [e for e in (account_data or ()) if ctx.filter.room_account_data.matches(e)],
        }
        return entry

    async def _stripped_state(self, rec: "MembershipRecord") -> list[dict[str, Any]] | None:
        event = await self.store.get_event_by_short(rec.shorteventid)
        if event is None:
            return None
        remote = event.extras.get("irs")
        if isinstance(remote, list):
            # A room this server is not in: the stripped state the inviting
            # (or knocked-on) server sent (server-server-api invite v2).
            return [e for e in remote if isinstance(e, dict)] + [stripped(event)]
        keys = [(t, "") for t in _STRIPPED_TYPES] + [(_MEMBER, event.sender)]
        state = await self.store.state_events(event.state_after, keys)
        out = [stripped(e) for k, e in state.items() if e.event_id != event.event_id]
        out.append(stripped(event))
        return out

    async def invited(self, ctx: "SyncContext", rec: "MembershipRecord") -> dict[str, Any] | None:
        """A C{rooms.invite} entry (None for invites from ignored users)."""
        event = await self.store.get_event_by_short(rec.shorteventid)
        if event is None or event.sender in ctx.ignored:
            return None
        events = await self._stripped_state(rec)
        if events is None:
            return None
        return {"invite_state": {"events": events}}

    async def knocked(self, ctx: "SyncContext", rec: "MembershipRecord") -> dict[str, Any] | None:
        """A C{rooms.knock} entry."""
        events = await self._stripped_state(rec)
        if events is None:
            return None
        return {"knock_state": {"events": events}}
