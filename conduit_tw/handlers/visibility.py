"""
History visibility (client-server-api "Room History Visibility",
modules/history_visibility.md): may a user see an event?

The rules are evaluated with the room state *at the event*: for most
events the state before it (equal to the state after it for messages);
for C{m.room.history_visibility} events and the user's own
C{m.room.member} events, the state before *or* after the event may allow
it. With C{hv} the history visibility there (default and unknown values:
C{shared}) and C{m} the user's membership there:

1. C{hv == world_readable}: allow;
2. C{m == join}: allow;
3. C{hv == shared} and the user joined the room at any point after the
   event: allow. "Joined after" is one comparison: the order of the
   user's latest join (C{userroomid_membership}) against the event's
   timeline order;
4. C{hv == invited} and C{m == invite}: allow;
5. otherwise deny.

Answers per (state hash, user) are cached, so filtering a page of events
that share a few states costs a few lookups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from conduit_tw.storage.stores.timeline import StoredEvent
from conduit_tw.util.caches import LruCache, scaled

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

_HV = "m.room.history_visibility"
_KNOWN = frozenset({"world_readable", "shared", "invited", "joined"})


class Visibility:
    """See the module docstring."""

    def __init__(self, store: "EventStore", cache_modifier: float = 1.0) -> None:
        self.store = store
        self._hv: LruCache[int, str] = LruCache(scaled(50_000, cache_modifier))
        self._member: LruCache[tuple[int, str], str | None] = LruCache(
            scaled(100_000, cache_modifier)
        )

    async def history_visibility(self, statehash: int) -> str:
        """The history visibility in a state (C{shared} by default)."""
        hv = self._hv.get(statehash)
        if hv is None:
            ev = await self.store.state_event(statehash, _HV, "")
            value = ev.content.get("history_visibility") if ev is not None else None
            hv = value if value in _KNOWN else "shared"
            self._hv.set(statehash, hv)
        return hv

    async def membership_at(self, statehash: int, user_id: str) -> str | None:
        """The user's membership in a state."""
        key = (statehash, user_id)
        if key in self._member:
            return self._member.get(key)
        ev = await self.store.state_event(statehash, "m.room.member", user_id)
        m = ev.membership() if ev is not None else None
        self._member.set(key, m)
        return m

    async def _allowed_at(
        self, statehash: int, user_id: str, event: StoredEvent, last_join: int
    ) -> bool:
        hv = await self.history_visibility(statehash)
        if hv == "world_readable":
            return True
        m = await self.membership_at(statehash, user_id)
        if m == "join":
            return True
        if hv == "shared" and last_join and event.order and last_join > event.order:
            return True
        if hv == "invited" and m == "invite":
            return True
        return False

    async def _can_see(self, user_id: str, event: StoredEvent, last_join: int) -> bool:
        if await self._allowed_at(event.state_before, user_id, event, last_join):
            return True
        both = event.type == _HV or (
            event.type == "m.room.member" and event.state_key == user_id
        )
        if both and event.state_after != event.state_before:
            return await self._allowed_at(event.state_after, user_id, event, last_join)
        return False

    async def can_see_event(self, user_id: str, event: StoredEvent) -> bool:
        """Whether C{user_id} may see C{event} (see the module docstring)."""
        rec = await self.store.membership_record(user_id, event.room_id_or_create())
        return await self._can_see(user_id, event, rec.last_join_order if rec else 0)

    async def filter_events_for_user(
        self, user_id: str, events: Iterable[StoredEvent]
    ) -> list[StoredEvent]:
        """The events C{user_id} may see, in their order."""
        out = []
        last_joins: dict[str, int] = {}
        for event in events:
            room_id = event.room_id_or_create()
            last_join = last_joins.get(room_id)
            if last_join is None:
                rec = await self.store.membership_record(user_id, room_id)
                last_join = last_joins[room_id] = rec.last_join_order if rec else 0
            if await self._can_see(user_id, event, last_join):
                out.append(event)
        return out
