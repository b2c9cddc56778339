"""
Presence of local users (client-server-api "Presence", presence.yaml).

- C{PUT /presence/{userId}/status} (L{PresenceHandler.set_presence}) and
  pro-active activity (L{PresenceHandler.bump_activity}: sending a message,
  syncing) set the state and the last-active time.
- Idle and offline timeouts (C{presence_idle_timeout_s},
  C{presence_offline_timeout_s}): one C{callLater} per non-offline user,
  reset on activity; no polling. An online user becomes C{unavailable}
  C{idle} seconds after their last activity, and anyone not offline
  becomes C{offline} C{offline} seconds after it. Timers are rebuilt from
  the store at start-up (L{PresenceHandler.start}).
- Every state change takes a global stream position and is indexed, so
  /sync asks L{PresenceHandler.changes_since}.
- With C{allow_local_presence = false} nothing is recorded and everyone is
  shown C{offline}.
- Remote users' presence (C{m.presence} EDUs, L{PresenceHandler.set_remote})
  is stored the same way; with C{presence_timeout_remote_users} (conduwuit's
  default) the same timeouts apply, counted from the latest update their
  server sent, so a user whose server stopped telling us does not stay
  online for ever (a restart counts as an update). Local changes run the
  L{PresenceHandler.on_local_change} hooks (federation/edu.py sends them);
  remote timeouts do not.

Visibility ("presence events are sent to interested parties where users
share a room membership"): through L{PresenceHandler.shares_room}, a
callable C{(viewer, user) -> Awaitable[bool]}. Until the rooms code
registers the real one, only a user's own presence is visible. Likewise
L{PresenceHandler.rooms_of} (C{user -> Awaitable[rooms]}) names the rooms
whose /sync waiters a change wakes; by default only the user is woken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from conduit_tw.errors import bad_json, forbidden, invalid_param, not_found
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.presence import PresenceRecord
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.notifier import Notifier
    from conduit_tw.storage.stores.globals import GlobalsStore
    from conduit_tw.storage.stores.presence import PresenceStore
    from conduit_tw.storage.stores.users import UserStore

log = get_logger("conduit_tw.presence")

ONLINE, UNAVAILABLE, OFFLINE = "online", "unavailable", "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)
_KEEP: Any = object()


async def _only_self(viewer: str, user_id: str) -> bool:
    return viewer == user_id


async def _no_rooms(user_id: str) -> Iterable[str]:
    return ()


class PresenceHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: "PresenceStore",
        globals: "GlobalsStore",
        notifier: "Notifier",
        users: "UserStore",
        reactor: IReactorTime,
        clock_ms: Callable[[], int],
        server_name: str,
        enabled: bool = True,
        idle_timeout_s: float = 300,
        offline_timeout_s: float = 1800,
        timeout_remote: bool = True,
    ) -> None:
        self.store = store
        self.globals = globals
        self.notifier = notifier
        self.users = users
        self.reactor = reactor
        self.clock_ms = clock_ms
        self.server_name = server_name
        self.enabled = enabled
        self.idle_ms = int(idle_timeout_s * 1000)
        self.offline_ms = int(offline_timeout_s * 1000)
        self.timeout_remote = timeout_remote
        #: C{(viewer, user) -> Awaitable[bool]}: do they share a room? The
        #: rooms code registers the real check; the default is "only self".
        self.shares_room: Callable[[str, str], Awaitable[bool]] = _only_self
        #: C{user -> Awaitable[rooms]}: rooms to wake on a change (rooms code).
        self.rooms_of: Callable[[str], Awaitable[Iterable[str]]] = _no_rooms
        #: Hooks C{(user_id, m.presence content)} after a local user's
        #: presence changed (the federation sender, federation/edu.py).
        self.on_local_change: list[Callable[[str, dict[str, Any]], Any]] = []
        self._timers: dict[str, IDelayedCall] = {}
        #: Latest activity seen per local user (ms), newer than the store's
        #: when activity did not change the state.
        self._last_active: dict[str, int] = {}
        #: Users known to be online with a running timer (fast path).
        self._online: set[str] = set()
        #: Remote users with a timer: when their server last updated them (ms).
        self._remote_updated: dict[str, int] = {}

    # -- lifecycle

    async def start(self) -> None:
        """Re-arm the timeouts of users that were not offline at shutdown."""
        if not self.enabled:
            return
        now = self.clock_ms()
        for user_id, record in await self.store.not_offline():
            if user_id.partition(":")[2] != self.server_name:
                if self.timeout_remote:
                    self._remote_updated[user_id] = now
                    self._schedule(user_id, record.presence, now)
                continue
            self._last_active[user_id] = record.last_active_ts
            if record.presence == ONLINE:
                self._online.add(user_id)
            self._schedule(user_id, record.presence, record.last_active_ts)

    def stop(self) -> None:
        """Cancel every timer."""
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    # -- changes

    async def set_presence(
        self, user_id: str, presence: str, status_msg: Any = _KEEP
    ) -> None:
        """
        Set a local user's state (and status message, unless C{_KEEP});
        counts as activity. Writes (and takes a stream position) only when
        something a client sees changes.
        """
        if not self.enabled:
            return
        now = self.clock_ms()
        record = await self.store.get(user_id)
        msg = (record.status_msg if record else None) if status_msg is _KEEP else status_msg
        self._last_active[user_id] = now
        if record is not None and record.presence == presence and record.status_msg == msg:
            self._set_online_flag(user_id, presence)
            self._schedule(user_id, presence, now)
            return
        await self._write(user_id, presence, msg, now)

    async def mark_unavailable(self, user_id: str) -> None:
        """
        C{/sync?set_presence=unavailable}: the user becomes unavailable
        unless they already are (then nothing changes, not even their
        last activity).
        """
        record = await self.store.get(user_id)
        if record is None or record.presence != "unavailable":
            await self.set_presence(user_id, "unavailable")

    async def bump_activity(self, user_id: str) -> None:
        """
        A pro-active event by the user (a message sent, a /sync with
        C{set_presence=online}): online now, timers pushed back. No I/O when
        the user is already online.
        """
        if not self.enabled:
            return
        now = self.clock_ms()
        if user_id in self._online:
            self._last_active[user_id] = now
            self._schedule(user_id, ONLINE, now)
            return
        await self.set_presence(user_id, ONLINE)

    async def _write(self, user_id: str, presence: str, status_msg: str | None, last_active: int) -> None:
        record = await self._record(user_id, presence, status_msg, last_active)
        self._set_online_flag(user_id, presence)
        self._schedule(user_id, presence, last_active)
        await run_hooks(
            self.on_local_change, user_id, self._content(record, user_id), what="on_local_change"
        )

    async def _record(
        self, user_id: str, presence: str, status_msg: str | None, last_active: int
    ) -> PresenceRecord:
        async with self.globals.stream_position() as position:
            record = PresenceRecord(presence, status_msg, last_active, position)
            await self.store.put(user_id, record)
        rooms = await self.rooms_of(user_id)
        self.notifier.notify(position, users=[user_id], rooms=rooms)
        return record

    async def set_remote(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ago: int
    ) -> None:
        """
        Record a remote user's presence from an C{m.presence} EDU (the
        caller checked it); see the module docstring for its timeouts.
        """
        if not self.enabled:
            return
        now = self.clock_ms()
        await self._record(user_id, presence, status_msg, now - last_active_ago)
        if self.timeout_remote:
            self._remote_updated[user_id] = now
            self._schedule(user_id, presence, now)

    def _set_online_flag(self, user_id: str, presence: str) -> None:
        if presence == ONLINE:
            self._online.add(user_id)
        else:
            self._online.discard(user_id)

    # -- timeouts

    def _schedule(self, user_id: str, presence: str, last_active: int) -> None:
        if presence == ONLINE:
            due = last_active + self.idle_ms
        elif presence == UNAVAILABLE:
            due = last_active + self.offline_ms
        else:
            call = self._timers.pop(user_id, None)
            if call is not None and call.active():
                call.cancel()
            self._last_active.pop(user_id, None)
            self._remote_updated.pop(user_id, None)
            return
        delay = max(0.0, (due - self.clock_ms()) / 1000)
        call = self._timers.get(user_id)
        if call is not None and call.active():
            call.reset(delay)
        else:
            self._timers[user_id] = self.reactor.callLater(delay, self._expire, user_id)

    def _expire(self, user_id: str) -> None:
        self._timers.pop(user_id, None)
        d = Deferred.fromCoroutine(self._timeout(user_id))
        d.addErrback(lambda f: log.failure("Presence timeout of {user} failed", f, user=user_id))

    async def _timeout(self, user_id: str) -> None:
        record = await self.store.get(user_id)
        if record is None or record.presence == OFFLINE:
            return
        updated = self._remote_updated.get(user_id)
        last = max(record.last_active_ts, self._last_active.get(user_id, 0), updated or 0)
        idle_for = self.clock_ms() - last
        if idle_for >= self.offline_ms:
            presence = OFFLINE
        elif record.presence == ONLINE and idle_for >= self.idle_ms:
            presence = UNAVAILABLE
        else:
            self._schedule(user_id, record.presence, last)
            return
        if updated is None:
            await self._write(user_id, presence, record.status_msg, last)
        else:  # remote: recorded only (their server speaks for them)
            await self._record(user_id, presence, record.status_msg, record.last_active_ts)
            self._schedule(user_id, presence, last)

    # -- reading

    def _content(self, record: PresenceRecord | None, user_id: str) -> dict[str, Any]:
        if record is None or not self.enabled:
            return {"presence": OFFLINE}
        content: dict[str, Any] = {"presence": record.presence}
        last = max(record.last_active_ts, self._last_active.get(user_id, 0))
        if last:
            content["last_active_ago"] = max(0, self.clock_ms() - last)
        if record.status_msg is not None:
            content["status_msg"] = record.status_msg
        if record.presence == ONLINE:
            content["currently_active"] = True
        return content

    async def get_content(self, user_id: str) -> dict[str, Any]:
        """The C{m.presence} content of a user (no visibility check)."""
        return self._content(await self.store.get(user_id), user_id)

    async def changes_since(
        self, viewer: str, since: int, to: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """
        C{m.presence} events of users whose presence changed in C{(since,
        to]} that C{viewer} may see, and the highest position read (0 if
        none). Visibility is L{shares_room}.
        """
        if not self.enabled:
            return [], 0
        rows = await self.store.changed_since(since, to)
        if not rows:
            return [], 0
        records = await self.store.get_many([u for _, u in rows])
        events = []
        for _, user_id in rows:
            if user_id != viewer and not await self.shares_room(viewer, user_id):
                continue
            events.append(
                {"type": "m.presence", "sender": user_id,
                 "content": self._content(records.get(user_id), user_id)}
            )
        return events, rows[-1][0]

    # -- the client API

    async def client_set(self, requester_id: str, user_id: str, body: dict[str, Any]) -> None:
        """C{PUT /presence/{userId}/status}."""
        if requester_id != user_id:
            raise forbidden("You cannot set the presence state of another user.")
        presence = body.get("presence")
        if presence not in STATES:
            raise invalid_param("'presence' must be one of online, unavailable, offline.")
        status_msg = body.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise bad_json("'status_msg' must be a string.")
        await self.set_presence(user_id, presence, status_msg)

    async def client_get(self, requester_id: str, user_id: str) -> dict[str, Any]:
        """C{GET /presence/{userId}/status}: 403 unless they share a room."""
        if requester_id != user_id and not await self.shares_room(requester_id, user_id):
            raise forbidden("You are not allowed to see their presence.")
        record = await self.store.get(user_id) if self.enabled else None
        if record is None:
            local = user_id.partition(":")[2] == self.server_name
            if not local or await self.users.get_account(user_id) is None:
                raise not_found("No presence state for this user.")
        return self._content(record, user_id)
