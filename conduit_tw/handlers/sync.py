"""
C{GET /sync} (client-server-api "Syncing", "Filtering", "Lazy-loading room
members"; sync.yaml): what the response holds is built in
handlers/sync_rooms.py per room; this module decides which rooms and
sections to look at, keeps the tokens, and long-polls.

Tokens (handlers/sync_token.py): C{next_batch} is C{s<position>_<typing
serial>}. C{position} is the stream position everything in the response
is bounded by ("now"): every query is a range C{(since, now]} over an
index (room timelines by order, receipts per room, account data and
membership changes per user, presence by position), so successive syncs
neither lose nor repeat anything. "Now" is C{Notifier.position}, the
highest position announced after its commit, and never past a position
whose write is still running (a backend that answers later commits
positions out of order: the notifier holds announcements back to
C{GlobalsStore.committed_upto}).
C{HomeServer.setup} seeds the notifier with the stored counter, so tokens
survive restarts.

Which rooms an incremental sync looks at, without scanning timelines:
the user's membership records (cached per user, dropped when a member
event about them is committed), and for each joined room the
cached room head (C{last_position}), the receipts' last position, the
typing serial and the room's account data changes. An idle incremental
sync (nothing announced since the token) answers at once without reading
anything.

Long-polling: when the answer would be empty and C{timeout} > 0, wait on
the notifier for the user and their joined rooms (never polling
storage), then compute again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.filtering import Filter
from conduit_tw.handlers.sync_token import SyncToken, parse_sync_token
from conduit_tw.handlers.sync_rooms import RoomSync
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.membership import MembershipRecord
from conduit_tw.util.caches import LruCache, scaled

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from conduit_tw.handlers.account_data import AccountDataHandler
    from conduit_tw.handlers.filtering import FilterHandler
    from conduit_tw.handlers.presence import PresenceHandler
    from conduit_tw.handlers.receipts import ReceiptsHandler
    from conduit_tw.handlers.typing import TypingHandler
    from conduit_tw.notifier import Notifier
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.sync")

#: Default and largest timeline limit per room.
DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 500
PRESENCE_STATES = ("online", "offline", "unavailable")


@dataclass
class SyncRequest:
    """What a client asked for."""

    user_id: str
    device_id: str | None
    filter: Filter = field(default_factory=Filter)
    since: str | None = None
    timeout_ms: int = 0
    full_state: bool = False
    set_presence: str | None = None
    use_state_after: bool = False
    is_guest: bool = False


@dataclass
class SyncContext:
    """One computation of a response (shared by the room builders)."""

    user_id: str
    device_id: str | None
    filter: Filter
    since: SyncToken | None
    now: SyncToken
    full_state: bool
    ignored: frozenset[str]
    limit: int
    lazy: bool
    include_redundant: bool
    threaded: bool
    use_state_after: bool
    #: room ID -> member user ID -> (member event ID, the C{next_batch}
    #: position of the response that carried it) for this device.
    ll_sent: dict[str, dict[str, tuple[str, int]]]

    @property
    def since_position(self) -> int:
        return self.since.position if self.since is not None else 0


class _UserRooms:
    """A user's membership records, valid up to C{checked} (a stream position)."""

    __slots__ = ("checked", "records", "joined")

    def __init__(self, checked: int, records: dict[str, MembershipRecord]) -> None:
        self.checked = checked
        self.records = records
        self.joined = frozenset(r for r, rec in records.items() if rec.membership == "join")


class SyncHandler:
    """See the module docstring."""

    #: The end-to-end encryption sections (handlers/sync_e2ee.py), set by the HomeServer.
    e2ee: Any = None

    def __init__(
        self,
        store: "EventStore",
        notifier: "Notifier",
        reactor: "IReactorTime",
        rooms: RoomSync,
        filters: "FilterHandler",
        account_data: "AccountDataHandler",
        presence: "PresenceHandler",
        typing: "TypingHandler",
        receipts: "ReceiptsHandler",
        cache_modifier: float = 1.0,
    ) -> None:
        """
        HomeServer registers L{forget_user_rooms} on C{EventStore.membership_hooks}
        and hands L{is_joined}, L{shares_room} and L{rooms_of} to typing and
        presence (which this handler itself depends on: the cycle is broken
        with those callables).
        """
        self.store = store
        self.notifier = notifier
        self.reactor = reactor
        self.rooms = rooms
        self.filters = filters
        self.account_data = account_data
        self.presence = presence
        self.typing = typing
        self.receipts = receipts
        modifier = cache_modifier
        #: user -> membership records, dropped when a change of their membership commits.
        self._user_rooms: LruCache[str, _UserRooms] = LruCache(scaled(50_000, modifier))
        self._filters: LruCache[tuple[str, str], Filter] = LruCache(scaled(10_000, modifier))
        self._no_filter = Filter()
        #: (user, device) -> the lazy-loading memory of that device.
        self._ll: LruCache[tuple[str, str | None], dict[str, dict[str, tuple[str, int]]]] = LruCache(
            scaled(10_000, modifier)
        )

    # ------------------------------------------------------------------
    # Hooks for other handlers (registered by the HomeServer)

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        """C{TypingHandler.is_joined}."""
        rec = await self.store.membership_record(user_id, room_id)
        return rec is not None and rec.membership == "join"

    async def joined_rooms(self, user_id: str) -> frozenset[str]:
        """The user's joined rooms (cached, revalidated cheaply)."""
        return (await self._rooms_of_user(user_id)).joined

    async def shares_room(self, viewer: str, user_id: str) -> bool:
        """C{PresenceHandler.shares_room}: do they share a joined room?"""
        if viewer == user_id:
            return True
        mine = await self.joined_rooms(viewer)
        if not mine:
            return False
        theirs = await self.joined_rooms(user_id)
        return not mine.isdisjoint(theirs)

    async def rooms_of(self, user_id: str) -> frozenset[str]:
        """C{PresenceHandler.rooms_of}: the rooms whose members see the user's presence."""
        return await self.joined_rooms(user_id)

    async def _rooms_of_user(self, user_id: str, fresh: bool = False) -> _UserRooms:
        cached = None if fresh else self._user_rooms.get(user_id)
        if cached is not None:
            return cached
        records = {r.room_id: r for r in await self.store.rooms_for_user(user_id, None)}
        entry = _UserRooms(self.notifier.position, records)
        self._user_rooms.set(user_id, entry)
        return entry

    async def resolve_filter(self, user_id: str, param: str | None) -> Filter:
        """
        C{FilterHandler.resolve}, memoised: stored filters never change (their
        IDs are content-addressed) and inline ones are keyed by their text.
        """
        if not param:
            return self._no_filter
        key = (user_id, param)
        flt = self._filters.get(key)
        if flt is None:
            flt = await self.filters.resolve(user_id, param)
            self._filters.set(key, flt)
        return flt

    def forget_user_rooms(self, user_id: str) -> None:
        """Drop the cached membership list (a membership changed, a room was forgotten)."""
        self._user_rooms.pop(user_id)

    # ------------------------------------------------------------------
    # The endpoint

    def now_token(self) -> SyncToken:
        """The token of "now" (see the module docstring)."""
        return SyncToken(self.notifier.position, self.typing.current_serial())

    async def sync(self, req: SyncRequest) -> dict[str, Any]:
        """Answer one C{/sync} request (long-polling as asked)."""
        since = parse_sync_token(req.since) if req.since else None
        if req.set_presence is not None and req.set_presence not in PRESENCE_STATES:
            raise MatrixError(
                400, Codes.INVALID_PARAM, "set_presence must be one of online, offline, unavailable"
            )
        await self._presence(req)
        if since is None or req.full_state:
            body, _ = await self._compute(req, since, self.now_token())
            return body
        if req.timeout_ms <= 0:
            now = self.now_token()
            if since.position >= now.position and since.typing >= now.typing:
                # Nothing was announced since the token: nothing to read.
                return await self._empty(req, since)
            body, _ = await self._compute(req, since, now)
            return body
        clock = self.reactor
        deadline = clock.seconds() + req.timeout_ms / 1000
        while True:
            now = self.now_token()
            if since.position >= now.position and since.typing >= now.typing:
                body, empty = await self._empty(req, since), True
            else:
                body, empty = await self._compute(req, since, now)
            if not empty:
                return body
            remaining = deadline - clock.seconds()
            if remaining <= 0:
                return body
            rooms = await self.joined_rooms(req.user_id)
            waiter = self.notifier.wait(req.user_id, rooms, remaining)
            if self.notifier.position != now.position or self.typing.current_serial() != now.typing:
                waiter.cancel()
                waiter.addErrback(lambda f: f.trap(CancelledError))
                since = now if empty else since
                continue
            woken = await waiter
            # Everything up to `now` was empty: move the lower bound on.
            since = now
            if not woken:
                body, _ = await self._compute(req, since, self.now_token())
                return body

    async def _presence(self, req: SyncRequest) -> None:
        presence = self.presence
        if req.is_guest:
            return
        if req.set_presence in (None, "online"):
            await presence.bump_activity(req.user_id)
        elif req.set_presence == "unavailable":
            await presence.mark_unavailable(req.user_id)

    async def _empty(self, req: SyncRequest, token: SyncToken) -> dict[str, Any]:
        body: dict[str, Any] = {"next_batch": token.encode()}
        await self._e2ee_sections(req, token, token, body)
        return body

    async def _e2ee_sections(
        self, req: SyncRequest, since: SyncToken | None, now: SyncToken, body: dict[str, Any]
    ) -> bool:
        """Add to-device, device lists and key counts (handlers/sync_e2ee.py); True if news."""
        if self.e2ee is None:
            return False
        since_position = since.position if since is not None else None
        return await self.e2ee.add_sections(
            body, req.user_id, req.device_id, since_position, now.position
        )

    # ------------------------------------------------------------------
    # One computation

    async def _compute(
        self, req: SyncRequest, since: SyncToken | None, now: SyncToken
    ) -> tuple[dict[str, Any], bool]:
        """The response for C{(since, now]} and whether it is empty."""
        user_id = req.user_id
        flt = req.filter
        ll_key = (user_id, req.device_id)
        ll_sent = self._ll.get(ll_key)
        if ll_sent is None or since is None or req.full_state:
            ll_sent = {}
            self._ll.set(ll_key, ll_sent)
        ctx = SyncContext(
            user_id=user_id,
            device_id=req.device_id,
            filter=flt,
            since=since,
            now=now,
            full_state=req.full_state,
            ignored=await self.account_data.ignored_users(user_id),
            limit=flt.room_timeline.get_limit(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT),
            lazy=flt.room_state.lazy_load_members,
            include_redundant=flt.room_state.include_redundant_members,
            threaded=flt.room_timeline.unread_thread_notifications,
            use_state_after=req.use_state_after,
            ll_sent=ll_sent,
        )
        p = ctx.since_position
        body: dict[str, Any] = {"next_batch": now.encode()}
        empty = True

        # -- account data (global and per room): one index scan
        changes = await self.account_data.changes_since(user_id, p, now.position)
        if changes.global_events:
            events = [e for e in changes.global_events if flt.account_data.matches(e)]
            if events:
                body["account_data"] = {"events": events}
                empty = False

        # -- rooms
        rooms = await self._rooms(ctx, changes.rooms)
        if rooms:
            body["rooms"] = rooms
            empty = False

        # -- presence: the changes since the token, plus the current
        # presence of users the viewer newly shares a room with (their
        # last change may be older than the token).
        if not flt.presence.definition.get("types") == [] and not req.is_guest:
            presence, _ = await self.presence.changes_since(user_id, p, now.position)
            if since is not None and self.presence.enabled:
                have = {e["sender"] for e in presence}
                for other in sorted(await self._newly_shared(ctx, rooms.get("join", {})) - have):
                    presence.append({
                        "type": "m.presence", "sender": other,
                        "content": await self.presence.get_content(other),
                    })
            presence = [
                e for e in presence if e["sender"] not in ctx.ignored and flt.presence.matches(e)
            ]
            if presence:
                body["presence"] = {"events": presence}
                empty = False

        if await self._e2ee_sections(req, since, now, body):
            empty = False
        return body, empty

    async def _newly_shared(self, ctx: SyncContext, joined: dict[str, Any]) -> set[str]:
        """
        Users who joined one of the viewer's rooms in this incremental
        response (every member when the viewer is the one who joined).
        """
        out: set[str] = set()
        for room_id, entry in joined.items():
            events = list(entry.get("timeline", {}).get("events", ()))
            events += entry.get("state", {}).get("events", ())
            for e in events:
                if e.get("type") != "m.room.member" or not isinstance(e.get("content"), dict):
                    continue
                if e["content"].get("membership") != "join":
                    continue
                prev = e.get("unsigned", {}).get("prev_content") or {}
                if prev.get("membership") == "join":
                    continue
                if e.get("state_key") == ctx.user_id:
                    out.update(await self.store.members(room_id, "join"))
                elif isinstance(e.get("state_key"), str):
                    out.add(e["state_key"])
        out.discard(ctx.user_id)
        return out

    async def _rooms(
        self, ctx: SyncContext, room_account_data: dict[str, list[dict[str, Any]]]
    ) -> dict[str, Any]:
        flt = ctx.filter
        initial = ctx.since is None
        # An initial sync reads the list afresh (forgotten rooms drop out).
        user_rooms = await self._rooms_of_user(ctx.user_id, fresh=initial)
        p = ctx.since_position
        typing_serial = ctx.since.typing if ctx.since is not None else 0
        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        receipts = self.receipts
        typing = self.typing
        store = self.store
        for room_id, rec in user_rooms.records.items():
            if not flt.allows_room(room_id):
                continue
            membership = rec.membership
            if membership == "join":
                room = await store.get_room(room_id)
                if room is None:
                    continue
                if not (initial or ctx.full_state or rec.position > p):
                    head = await store.head(room)
                    if (
                        head.last_position <= p
                        and room_id not in room_account_data
                        and not await receipts.room_changed_since(room.short, p)
                        and typing.event_if_changed(room_id, typing_serial) is None
                    ):
                        continue
                entry = await self.rooms.joined(ctx, room, rec, room_account_data.get(room_id))
                if entry is not None:
                    join[room_id] = entry
            elif membership == "invite":
                if not initial and rec.position <= p:
                    continue
                entry = await self.rooms.invited(ctx, rec)
                if entry is not None:
                    invite[room_id] = entry
            elif membership == "knock":
                if not initial and rec.position <= p:
                    continue
                entry = await self.rooms.knocked(ctx, rec)
                if entry is not None:
                    knock[room_id] = entry
            else:  # leave, ban
                if initial or ctx.full_state:
                    if not flt.include_leave:
                        continue
                elif rec.position <= p:
                    continue
                room = await store.get_room(room_id)
                if room is None:
                    continue
                entry = await self.rooms.left(ctx, room, rec, room_account_data.get(room_id))
                if entry is not None:
                    leave[room_id] = entry
        out: dict[str, Any] = {}
        if join:
            out["join"] = join
        if invite:
            out["invite"] = invite
        if leave:
            out["leave"] = leave
        if knock:
            out["knock"] = knock
        return out
