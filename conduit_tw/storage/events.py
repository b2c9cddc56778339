"""
L{EventStore}: the rooms data layer as one object — events, timelines,
state and membership over the stores in C{storage/stores/} (short.py,
rooms.py, timeline.py, state.py, membership.py; each documents its trees)
— and L{EventStore.persist}, the one function that writes an event.

Everything others need to read rooms goes through here:

- events: L{get_event}, L{get_events}, L{get_event_by_short};
- timelines: L{timeline_range} (both directions from any order),
  L{latest_events}, L{events_since} (global stream);
- state: L{current_state_ids}, L{current_state_event}, L{state_ids},
  L{state_event}, L{state_at_event} (before or after any stored event);
- membership: L{membership}, L{rooms_for_user}, L{members},
  L{membership_changes_since}, L{rooms_changed_since};
- rooms: L{get_room}, L{head}.

Writing: L{persist} takes an already built (and, by the caller, already
authorised) L{Event} and the state before it, and writes in one atomic
batch the event, its short id, its timeline place and stream position, the
state after it (as a diff, state.py), the room head (current state,
extremities, depth, counts), the membership indexes, the client
transaction ID and, for redactions, the pruned target. Several events can
share one batch (room creation) by passing the same L{StoreTxn}. Once the
batch is applied it updates the caches (so the next event of the room can
be built on it at once); once it is durable it wakes the notifier.
L{persist_apply} returns at the first point (the caller releases the room
lock) with a Deferred for the second.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Mapping

from conduit_tw.events.auth_rules import CREATE_KEY, POWER_LEVELS_KEY, get_named_level, get_user_power_level
from conduit_tw.events.event import Event
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.errors import StorageUnavailable
from conduit_tw.events.signing import server_name_of, SignatureError
from conduit_tw.logging import get_logger
from conduit_tw.notifier import Notifier
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.membership import MembershipRecord, MembershipStore
from conduit_tw.storage.stores.rooms import RoomHead, RoomInfo, RoomStore
from conduit_tw.storage.stores.short import ShortIds
from conduit_tw.storage.stores.state import StateStore
from conduit_tw.storage.stores.timeline import (
    BACKFILLED,
    LIVE_BASE,
    OUTLIER,
    REJECTED,
    SOFT_FAILED,
    StoredEvent,
    TimelineStore,
)
from conduit_tw.storage.txn import Durability, StoreTxn
from conduit_tw.util.caches import scaled

StateKey = tuple[str, str]

log = get_logger("conduit_tw.storage.events")

#: L{EventStore.persist} kinds.
TIMELINE = "timeline"
OUTLIER_KIND = "outlier"
BACKFILL = "backfill"

_MEMBER = "m.room.member"


class EventStore:
    """See the module docstring."""

    def __init__(
        self,
        db: IKeyValueDatabase,
        globals_store: GlobalsStore,
        notifier: Notifier | None = None,
        cache_modifier: float = 1.0,
        event_cache_size: int = 150_000,
    ) -> None:
        self.db = db
        self.globals = globals_store
        self.notifier = notifier
        self.short = ShortIds(db, cache_modifier)
        self.rooms = RoomStore(db, self.short, cache_modifier)
        self.state = StateStore(db, self.short, cache_modifier)
        self.timeline = TimelineStore(
            db, self.rooms, event_cache_size or scaled(10_000, cache_modifier)
        )
        self.membership_store = MembershipStore(db, cache_modifier)
        #: C{async hook(txn, stored_event)} for each new live timeline event,
        #: before the batch is written: a hook adds its own writes to
        #: C{txn.batch} (one commit per event) and C{txn.after_commit}
        #: callbacks (push evaluation: handlers/notifications.py). Failures
        #: are logged and do not stop the event.
        self.persist_hooks: list[Callable[[StoreTxn, StoredEvent], Awaitable[None]]] = []
        #: C{hook(user_id)} after the commit of a live event for every user
        #: whose membership of the room it changed: its own target, and the
        #: other members whose membership the room's new current state
        #: changed (a join's state from send_join, a resolved fork), which
        #: the persist hooks, seeing only the event, cannot know about.
        self.membership_hooks: list[Callable[[str], None]] = []

    async def setup(self) -> None:
        """Load counters (call once before use)."""
        await self.short.load()

    def txn(self) -> StoreTxn:
        """A new transaction for L{persist} (commit it with C{await txn.commit()})."""
        return StoreTxn(self.db)

    # ------------------------------------------------------------------
    # Rooms

    async def get_room(self, room_id: str) -> RoomInfo | None:
        """The room's info (short id, version) or None if unknown here."""
        return await self.rooms.get_room(room_id)

    async def head(self, room: RoomInfo, txn: StoreTxn | None = None) -> RoomHead:
        """The room head, as changed by C{txn} so far if given."""
        if txn is not None:
            pending = txn.data.get("heads", {}).get(room.short)
            if pending is not None:
                return pending
        return await self.rooms.get_head(room.short)

    async def room_exists(self, room_id: str) -> bool:
        """Whether we have state for the room (we are or were in it)."""
        room = await self.get_room(room_id)
        return room is not None and (await self.head(room)).statehash != 0

    # ------------------------------------------------------------------
    # Events

    async def get_event_by_short(
        self, short: int, txn: StoreTxn | None = None
    ) -> StoredEvent | None:
        """A stored event by short id (events written by C{txn} included)."""
        if txn is not None:
            pending = txn.data.get("events", {}).get(short)
            if pending is not None:
                return pending
        return await self.timeline.get(short)

    async def get_event(self, event_id: str, txn: StoreTxn | None = None) -> StoredEvent | None:
        """A stored event by ID (timeline event or outlier), or None."""
        short = await self.short.get_shorteventid(event_id)
        if short is None:
            return None
        return await self.get_event_by_short(short, txn)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        """The stored events among C{event_ids}, by ID (unknown ones left out)."""
        ids = list(event_ids)
        shorts = await self.short.get_shorteventids(ids)
        known = [s for s in shorts if s is not None]
        events = await self.timeline.get_many(known)
        return {e.event_id: e for e in events if e is not None}

    # ------------------------------------------------------------------
    # Timelines

    async def timeline_range(
        self, room_id: str, start: int, forward: bool, limit: int, end: int | None = None
    ) -> list[StoredEvent]:
        """
        Timeline events of a room from order C{start} (inclusive) towards
        newer (C{forward}) or older ones, stopping before order C{end}
        (exclusive), at most C{limit}, in walking order. Orders are
        C{StoredEvent.order} (see timeline.py; live events have
        C{order = LIVE_BASE + stream position}).
        """
        room = await self.get_room(room_id)
        if room is None:
            return []
        return await self.timeline.range(room.short, start, forward, limit, end)

    async def latest_events(self, room_id: str, limit: int) -> list[StoredEvent]:
        """The newest C{limit} timeline events of the room, newest first."""
        room = await self.get_room(room_id)
        if room is None:
            return []
        return await self.timeline.latest(room.short, limit)

    async def events_since(
        self, room_id: str, position: int, limit: int = 100
    ) -> list[StoredEvent]:
        """Live events of the room after stream C{position}, oldest first."""
        return await self.timeline_range(room_id, LIVE_BASE + position + 1, True, limit)

    # ------------------------------------------------------------------
    # State

    async def state_ids(self, statehash: int) -> dict[StateKey, str]:
        """A whole state as C{(type, state_key) -> event_id}."""
        full = await self.state.full(statehash)
        if not full:
            return {}
        sks = list(full)
        pairs = await self.short.get_statekeys(sks)
        ids = await self.short.get_eventids(full[k] for k in sks)
        return {p: e for p, e in zip(pairs, ids) if p is not None and e is not None}

    async def state_events(
        self, statehash: int, keys: Iterable[StateKey] | None = None, txn: StoreTxn | None = None
    ) -> dict[StateKey, StoredEvent]:
        """
        The events of a state (only C{keys} if given) as
        C{(type, state_key) -> StoredEvent}.
        """
        if not statehash:
            return {}
        if keys is None:
            full = await self.state.full(statehash)
            sks = list(full)
            pairs = await self.short.get_statekeys(sks)
            shorts = [full[k] for k in sks]
        else:
            pairs, shorts = [], []
            for key in keys:
                sk = await self.short.get_shortstatekey(*key)
                if sk is None:
                    continue
                ev = await self.state.get(statehash, sk)
                if ev is not None:
                    pairs.append(key)
                    shorts.append(ev)
        out: dict[StateKey, StoredEvent] = {}
        pending = txn.data.get("events", {}) if txn is not None else {}
        missing = []
        for pair, s in zip(pairs, shorts):
            ev = pending.get(s) or self.timeline.cached(s)
            if ev is not None:
                if pair is not None:
                    out[pair] = ev
            else:
                missing.append((pair, s))
        if missing:
            events = await self.timeline.get_many(s for _, s in missing)
            for (pair, _), ev in zip(missing, events):
                if ev is not None and pair is not None:
                    out[pair] = ev
        return out

    async def state_event(
        self, statehash: int, event_type: str, state_key: str, txn: StoreTxn | None = None
    ) -> StoredEvent | None:
        """One event of a state, or None."""
        sk = await self.short.get_shortstatekey(event_type, state_key)
        if sk is None or not statehash:
            return None
        short = await self.state.get(statehash, sk)
        if short is None:
            return None
        return await self.get_event_by_short(short, txn)

    async def current_statehash(self, room_id: str) -> int:
        """The room's current shortstatehash (0 if we have no state)."""
        room = await self.get_room(room_id)
        if room is None:
            return 0
        return (await self.head(room)).statehash

    async def current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        """The room's current state as C{(type, state_key) -> event_id}."""
        return await self.state_ids(await self.current_statehash(room_id))

    async def current_state_events(
        self, room_id: str, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        """The room's current state events (only C{keys} if given)."""
        return await self.state_events(await self.current_statehash(room_id), keys)

    async def current_state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> StoredEvent | None:
        """One event of the room's current state, or None."""
        return await self.state_event(await self.current_statehash(room_id), event_type, state_key)

    async def state_at_event(self, event: StoredEvent, before: bool = True) -> dict[StateKey, str]:
        """The state before (or after) a stored event, as IDs."""
        return await self.state_ids(event.state_before if before else event.state_after)

    # ------------------------------------------------------------------
    # Membership

    async def membership(self, user_id: str, room_id: str) -> str | None:
        """The user's current membership in the room (None: never a member)."""
        return await self.membership_store.get_membership(user_id, room_id)

    async def membership_record(self, user_id: str, room_id: str) -> MembershipRecord | None:
        """The user's current membership record (position, event, last join)."""
        return await self.membership_store.get(user_id, room_id)

    async def rooms_for_user(
        self, user_id: str, memberships: tuple[str, ...] | None = ("join",)
    ) -> list[MembershipRecord]:
        """The user's rooms with one of C{memberships} (None: every remembered room)."""
        return await self.membership_store.rooms_for_user(user_id, memberships)

    async def joined_room_ids(self, user_id: str) -> list[str]:
        """IDs of the rooms the user is joined to."""
        return [r.room_id for r in await self.rooms_for_user(user_id, ("join",))]

    async def joined_at(self, statehash: int, txn: StoreTxn | None = None) -> list[str]:
        """
        The joined members of a state (read from its member events, so it
        works inside the batch that writes them, unlike L{members}).
        """
        keys = [k for k in await self.state_ids(statehash) if k[0] == _MEMBER]
        events = await self.state_events(statehash, keys, txn)
        return sorted(user for (_, user), ev in events.items() if ev.membership() == "join")

    async def members(self, room_id: str, membership: str = "join") -> list[str]:
        """User IDs with C{membership} in the room's current state."""
        room = await self.get_room(room_id)
        if room is None:
            return []
        return await self.membership_store.members(room.short, membership)

    async def membership_changes_since(
        self, user_id: str, position: int, limit: int | None = None
    ) -> list[tuple[int, str, str]]:
        """The user's membership changes after C{position}: C{(position, room_id, membership)}."""
        out = []
        for pos, short, membership in await self.membership_store.changes_since(
            user_id, position, limit
        ):
            room = await self.rooms.get_room_by_short(short)
            if room is not None:
                out.append((pos, room.room_id, membership))
        return out

    async def rooms_changed_since(self, room_ids: Iterable[str], position: int) -> list[str]:
        """Those of C{room_ids} with a live event after stream C{position} (from the heads)."""
        out = []
        for room_id in room_ids:
            room = await self.get_room(room_id)
            if room is not None and (await self.head(room)).last_position > position:
                out.append(room_id)
        return out

    # ------------------------------------------------------------------
    # Writing

    async def persist(
        self,
        event: Event,
        *,
        state_before: int | Mapping[StateKey, str] | None = None,
        kind: str = TIMELINE,
        soft_failed: bool = False,
        current_state: int | Mapping[StateKey, str] | None = None,
        txn_key: bytes | None = None,
        extras: dict[str, Any] | None = None,
        txn: StoreTxn | None = None,
        new_event: bool = False,
    ) -> StoredEvent:
        """
        Store one event, atomically with everything it changes.

        The caller has built and checked the event (auth against
        C{state_before}; signatures and hashes for remote events) and
        serialises writes per room (the event handler's linearizer).

        @param event: the event; C{event.rejected} stores it as a rejected
            outlier (kept for auth chains and state resolution only).
        @param state_before: the state before the event: a shortstatehash,
            or a C{(type, state_key) -> event_id} map (e.g. resolved from
            several prev_events by C{events.state_res.resolve_state}); by
            default the room's current state (local events).
        @param kind: L{TIMELINE} (a live event: gets the next stream
            position), L{BACKFILL} (history: sorts before all live events,
            no stream position, does not change the current state) or
            L{OUTLIER_KIND} (no timeline place).
        @param soft_failed: store it but keep it out of the timeline and
            the current state (server-server-api "Soft failure").
        @param current_state: the room's new current state after a live
            event when it is not simply the current state plus this event
            (federation forks: the resolution of all forward extremities).
        @param txn_key: the client transaction key to map to this event.
        @param extras: our notes on the event (C{"tx"}: C{[device_id,
            txn_id]}), see timeline.py.
        @param new_event: the caller just built the event (a local event),
            so its ID cannot be known yet: skips one lookup.
        @param txn: add the event to this transaction instead of committing
            at once (the caller commits; later events of the same
            transaction see this one's effects).
        @return: the stored event (the existing one if it was already
            stored, except that an accepted outlier stored again as
            L{BACKFILL} history moves into the timeline), once durable
            (with C{txn}: once added to it).
        """
        if txn is not None:
            try:
                return await self._persist(
                    txn, event, state_before, kind, soft_failed, current_state, txn_key,
                    extras, new_event,
                )
            except BaseException:
                txn.abort()
                raise
        stored, durable = await self.persist_apply(
            event, state_before=state_before, kind=kind, soft_failed=soft_failed,
            current_state=current_state, txn_key=txn_key, extras=extras, new_event=new_event,
        )
        await durable
        return stored

    async def persist_apply(
        self,
        event: Event,
        *,
        state_before: int | Mapping[StateKey, str] | None = None,
        kind: str = TIMELINE,
        soft_failed: bool = False,
        current_state: int | Mapping[StateKey, str] | None = None,
        txn_key: bytes | None = None,
        extras: dict[str, Any] | None = None,
        new_event: bool = False,
    ) -> tuple[StoredEvent, Durability]:
        """
        L{persist} in its own transaction, returning as soon as the batch
        is applied and the caches updated (the next event of the room may
        be built on it: release the room lock then), with a L{Durability}
        to await: it fires once the batch is durable and the notifier was
        told. Answer the client only after that.
        """
        txn = self.txn()
        try:
            stored = await self._persist(
                txn, event, state_before, kind, soft_failed, current_state, txn_key, extras,
                new_event,
            )
        except BaseException:
            txn.abort()
            raise
        return stored, await txn.apply()

    async def persist_out_of_room_membership(
        self, event: Event, stripped_state: list[dict[str, Any]] | None = None
    ) -> StoredEvent:
        """
        Store a membership event of a local user for a room this server is
        not in (server-server-api "Inviting to a room", "Leaving Rooms
        (Rejecting Invites)", "Knocking upon a room"): the event as an
        outlier, with the room's stripped state in its extras (C{"irs"},
        served as C{invite_state}/C{knock_state} by /sync), and the
        user's membership record moved to it at a new stream position, all
        in one batch. The membership and persist hooks run (sync's room
        list, invite notifications) and the notifier wakes the user.
        """
        target = event.state_key
        membership = event.membership()
        if target is None or membership not in ("invite", "leave", "knock"):
            raise ValueError("not a membership event of a user")
        extras = {"irs": stripped_state} if stripped_state is not None else None
        txn = self.txn()
        try:
            stored = await self._persist(
                txn, event, None, OUTLIER_KIND, False, None, None, extras, False
            )
            room = await self.rooms.add_room(stored.room_id_or_create(), event.room_version, txn)
            old = await self.membership_store.get(target, room.room_id)
            position = await self.globals.reserve_position(txn)
            new = MembershipRecord(
                room.room_id, membership, position, stored.short,
                old.last_join_order if old else 0,
            )
            self.membership_store.put(txn, target, room.room_id, room.short, old, new)
            txn.before_commit(lambda: self.globals.put_position_in_batch(txn.batch))
            self._membership_changed(txn, [target])
            await self._run_persist_hooks(txn, stored)
            if self.notifier is not None:
                notifier, room_id = self.notifier, room.room_id
                txn.after_commit(
                    lambda: notifier.notify(position, users=[target], rooms=[room_id])
                )
        except BaseException:
            txn.abort()
            raise
        await txn.commit()
        return stored

    async def _persist(
        self,
        txn: StoreTxn,
        event: Event,
        state_before: int | Mapping[StateKey, str] | None,
        kind: str,
        soft_failed: bool,
        current_state: int | Mapping[StateKey, str] | None,
        txn_key: bytes | None,
        extras: dict[str, Any] | None,
        new_event: bool = False,
    ) -> StoredEvent:
        room_id = event.room_id
        if room_id is None:  # v12 create event: the room ID is derived
            room_id = "!" + event.event_id[1:]
        room = await self.rooms.add_room(room_id, event.room_version, txn)
        if new_event:
            short, created = self.short.allocate_shorteventid(event.event_id, txn), True
        else:
            short, created = await self.short.get_or_create_shorteventid(event.event_id, txn)
        if not created:
            existing = await self.get_event_by_short(short, txn)
            if existing is not None:
                if not self._promotes(existing, event, kind, soft_failed):
                    return existing
                # An outlier met again in backfilled history takes its place
                # in the timeline, as stored (a redaction applied stays).
                extras = {**existing.extras, **(extras or {})}
                event = existing
        pending_events: dict[int, StoredEvent] = txn.data.setdefault("events", {})
        heads: dict[int, RoomHead] = txn.data.setdefault("heads", {})
        old_head = heads.get(room.short) or await self.rooms.get_head(room.short)
        head = old_head
        extras = dict(extras or {})
        rejected = event.rejected
        live = kind == TIMELINE and not rejected and not soft_failed

        # -- state before and after
        if state_before is None:
            before = head.statehash if kind == TIMELINE else 0
            state_known = kind == TIMELINE
        elif isinstance(state_before, int):
            before, state_known = state_before, True
        else:
            before = await self._save_state_map(state_before, txn, head.statehash)
            state_known = True
        after = before
        sk_short = None
        if event.is_state() and state_known and not rejected and not soft_failed:
            sk_short = await self.short.get_or_create_shortstatekey(
                event.type, event.state_key, txn  # type: ignore[arg-type]
            )
            replaced = await self.state.get(before, sk_short)
            after = await self.state.new_state(before, {sk_short: short}, txn)
            if replaced and replaced != short:
                replaced_id = await self.short.get_eventid(replaced)
                if replaced_id is not None:
                    extras["rs"] = replaced_id

        # -- place in the timeline
        flags = 0
        order = position = 0
        if rejected:
            flags |= REJECTED
        if soft_failed:
            flags |= SOFT_FAILED
        if kind == OUTLIER_KIND:
            flags |= OUTLIER
        if live:
            position = await self.globals.reserve_position(txn)
            order = LIVE_BASE + position
        elif kind == BACKFILL and not rejected and not soft_failed:
            flags |= BACKFILLED
            head = head.evolve(backfilled=head.backfilled + 1)
            order = LIVE_BASE - head.backfilled

        stored = self.timeline.put(
            txn, event, short, room.short, order, before, after, flags, extras
        )
        pending_events[short] = stored
        txn.on_applied(lambda: pending_events.pop(short, None))

        # -- redactions prune their target at once
        if event.type == "m.room.redaction" and not rejected and not soft_failed and order:
            await self._apply_redaction(txn, stored, room)

        # -- the room head, current state and membership
        notify_users: list[str] = []
        if live:
            extremities = (head.extremities - set(event.prev_event_ids())) | {event.event_id}
            if current_state is not None:
                if isinstance(current_state, int):
                    new_current = current_state
                else:
                    new_current = await self._save_state_map(current_state, txn, after)
                changed = await self._changed_keys(head.statehash, new_current)
            elif before == head.statehash:
                new_current = after
                changed = [sk_short] if sk_short is not None and after != before else []
            elif sk_short is not None:
                new_current = await self.state.new_state(head.statehash, {sk_short: short}, txn)
                changed = [sk_short] if new_current != head.statehash else []
            else:
                new_current, changed = head.statehash, []
            head = head.evolve(
                statehash=new_current,
                depth=max(head.depth, event.depth),
                last_position=position,
                extremities=frozenset(extremities),
            )
            for sk in changed:
                pair = await self.short.get_statekey(sk)
                if pair is None or pair[0] != _MEMBER:
                    continue
                head = await self._update_membership(
                    txn, room, pair[1], new_current, sk, position, order, head
                )
                notify_users.append(pair[1])
            txn.before_commit(lambda: self.globals.put_position_in_batch(txn.batch))
        if head is not old_head:
            heads[room.short] = head
            self.rooms.put_head(txn, room.short, old_head, head)
            final_head = head

            def cache_head() -> None:
                # Only the last write of this room in the batch is cached.
                if heads.get(room.short) is final_head:
                    self.rooms.cache_head(room.short, final_head)

            txn.on_applied(cache_head)

        if txn_key is not None:
            self.rooms.put_txn_event(txn, txn_key, event.event_id, event.origin_server_ts)

        if live:
            await self._run_persist_hooks(txn, stored)
        if live:
            self._membership_changed(txn, notify_users)
        if live and self.notifier is not None:
            notifier = self.notifier
            txn.after_commit(
                lambda: notifier.notify(position, users=notify_users, rooms=[room_id])
            )
        return stored

    @staticmethod
    def _promotes(existing: StoredEvent, event: Event, kind: str, soft_failed: bool) -> bool:
        """
        Whether storing C{event} again moves the C{existing} copy into the
        timeline: an accepted outlier (fetched for the state or auth chain
        of a join or a gap) that backfill now finds in the room's history,
        accepted there too.
        """
        return (
            kind == BACKFILL and bool(existing.flags & OUTLIER) and not existing.rejected
            and not event.rejected and not soft_failed
        )

    async def _run_persist_hooks(self, txn: StoreTxn, stored: StoredEvent) -> None:
        """Run every persist hook in C{txn}; a failing hook is logged, not fatal."""
        for hook in self.persist_hooks:
            try:
                await hook(txn, stored)
            except StorageUnavailable:
                raise  # the batch would go on without the hook's part
            except Exception:
                log.failure("A persist hook failed for {event_id}", event_id=stored.event_id)

    def _membership_changed(self, txn: StoreTxn, users: list[str]) -> None:
        """Run the L{membership_hooks} for C{users} once C{txn} commits."""
        if users and self.membership_hooks:
            hooks, users = list(self.membership_hooks), list(users)
            txn.after_commit(lambda: [hook(user) for hook in hooks for user in users])

    async def _save_state_map(
        self, state: Mapping[StateKey, str], txn: StoreTxn, base: int
    ) -> int:
        full: dict[int, int] = {}
        for (etype, skey), event_id in state.items():
            sk = await self.short.get_or_create_shortstatekey(etype, skey, txn)
            ev, _ = await self.short.get_or_create_shorteventid(event_id, txn)
            full[sk] = ev
        return await self.state.save_full(full, txn, base)

    async def _changed_keys(self, old: int, new: int) -> list[int]:
        if old == new:
            return []
        a = await self.state.full(old)
        b = await self.state.full(new)
        return [k for k in a.keys() | b.keys() if a.get(k) != b.get(k)]

    async def _update_membership(
        self,
        txn: StoreTxn,
        room: RoomInfo,
        user_id: str,
        statehash: int,
        sk: int,
        position: int,
        order: int,
        head: RoomHead,
    ) -> RoomHead:
        pending: dict[tuple[str, str], MembershipRecord] = txn.data.setdefault("members", {})
        key = (user_id, room.room_id)
        old = pending.get(key) or await self.membership_store.get(user_id, room.room_id)
        ev_short = await self.state.get(statehash, sk)
        event = await self.get_event_by_short(ev_short, txn) if ev_short else None
        membership = (event.membership() if event is not None else None) or "leave"
        if membership not in ("join", "invite", "knock", "leave", "ban"):
            membership = "leave"
        last_join = old.last_join_order if old else 0
        if membership == "join":
            last_join = order
        new = MembershipRecord(room.room_id, membership, position, ev_short or 0, last_join)
        self.membership_store.put(txn, user_id, room.room_id, room.short, old, new)
        pending[key] = new
        was = old.membership if old else None
        joined = head.joined + (membership == "join") - (was == "join")
        invited = head.invited + (membership == "invite") - (was == "invite")
        return head.evolve(joined=max(0, joined), invited=max(0, invited))

    async def _apply_redaction(self, txn: StoreTxn, redaction: StoredEvent, room: RoomInfo) -> None:
        target_id = redaction.redacts
        if not target_id:
            return
        target = await self.get_event(target_id, txn)
        if target is None or target.shortroomid != room.short or target.redacted_because:
            # Unknown targets are not remembered yet: federation will need a
            # pending-redactions index (see docs/architecture.md).
            return
        if not await self._redaction_applies(redaction, target, txn):
            return
        pruned = redact_pdu(target.pdu, target.room_version)
        extras = {k: v for k, v in target.extras.items() if k != "tx"}
        extras["rb"] = redaction.event_id
        new = self.timeline.replace_pdu(txn, target, pruned, extras)
        txn.data.setdefault("events", {})[target.short] = new

    async def _redaction_applies(
        self, redaction: StoredEvent, target: StoredEvent, txn: StoreTxn
    ) -> bool:
        """
        Rooms v3+ leave this to the receiving server (rooms/v3 "Handling
        redactions"): apply when the redaction comes from the target's
        server, or from a user with the C{redact} power level.
        """
        try:
            if server_name_of(redaction.sender) == server_name_of(target.sender):
                return True
        except SignatureError:
            return False
        auth = await self.state_events(
            redaction.state_before, [CREATE_KEY, POWER_LEVELS_KEY], txn
        )
        return get_user_power_level(redaction.sender, auth) >= get_named_level(auth, "redact")

    # ------------------------------------------------------------------
    # Forgetting

    async def forget(self, user_id: str, room_id: str) -> None:
        """Drop a room the user left from their list."""
        txn = self.txn()
        self.membership_store.forget(txn, user_id, room_id)
        await txn.commit()
