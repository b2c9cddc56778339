"""
Typing notifications (client-server-api "Typing Notifications",
typing.yaml, the C{m.typing} EDU). Kept in memory only, as the spec
intends ("the server does not remember users who are not typing").

- Each typing user has one C{callLater} that removes them when their
  timeout (clamped to C{typing_client_timeout_min_s} ..
  C{typing_client_timeout_max_s}) ends; no polling.
- Every change of a room's typing list takes the next value of a typing
  serial; /sync keeps the serial in its token and asks
  L{TypingHandler.event_if_changed}. The serial starts at the server's
  clock in milliseconds, so it keeps growing across restarts and a token
  from before a restart never hides a change.

L{TypingHandler.on_local_typing} hooks (C{(room_id, user_id, typing)}, run
after a local user's request; util/hooks.py) tell other servers (the
federation sender, federation/edu.py).

"User is joined to the room" is checked through L{TypingHandler.is_joined}
(C{(user_id, room_id) -> Awaitable[bool]}): until the rooms code
registers the real check, every request is refused with 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from conduit_tw.errors import bad_json, forbidden
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.notifier import Notifier


async def _refuse(user_id: str, room_id: str) -> bool:
    return False


class _RoomTyping:
    __slots__ = ("serial", "users")

    def __init__(self) -> None:
        self.serial = 0
        #: Typing user -> the call that ends their typing.
        self.users: dict[str, IDelayedCall] = {}


class TypingHandler:
    """See the module docstring."""

    def __init__(
        self,
        reactor: IReactorTime,
        notifier: "Notifier",
        clock_ms: Callable[[], int],
        min_timeout_s: float = 15,
        max_timeout_s: float = 45,
    ) -> None:
        self.reactor = reactor
        self.notifier = notifier
        self.min_timeout_s = min_timeout_s
        self.max_timeout_s = max_timeout_s
        #: C{(user_id, room_id) -> Awaitable[bool]}, registered by the rooms code.
        self.is_joined: Callable[[str, str], Awaitable[bool]] = _refuse
        #: Hooks C{(room_id, user_id, typing)} after a local user's typing request.
        self.on_local_typing: list[Callable[[str, str, bool], Any]] = []
        self._serial = clock_ms()
        self._rooms: dict[str, _RoomTyping] = {}

    # -- for /sync

    def current_serial(self) -> int:
        """The typing serial to put in a sync token."""
        return self._serial

    def typing_users(self, room_id: str) -> list[str]:
        """Who is typing in the room now."""
        room = self._rooms.get(room_id)
        return sorted(room.users) if room is not None else []

    def event(self, room_id: str) -> dict[str, Any]:
        """The room's C{m.typing} ephemeral event."""
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}

    def event_if_changed(self, room_id: str, since_serial: int) -> dict[str, Any] | None:
        """The room's C{m.typing} event if it changed after C{since_serial}, else None."""
        room = self._rooms.get(room_id)
        if room is None or room.serial <= since_serial:
            return None
        return self.event(room_id)

    # -- changes

    def set_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int | None = None) -> None:
        """
        Start (for C{timeout_ms}, clamped) or stop a user's typing; the
        membership check is the caller's. Notifies only on a change of the
        typing list.
        """
        room = self._rooms.get(room_id)
        if typing:
            timeout_s = self.max_timeout_s if timeout_ms is None else timeout_ms / 1000
            timeout_s = min(max(timeout_s, self.min_timeout_s), self.max_timeout_s)
            if room is None:
                room = self._rooms[room_id] = _RoomTyping()
            call = room.users.get(user_id)
            if call is not None and call.active():
                call.reset(timeout_s)
                return
            room.users[user_id] = self.reactor.callLater(timeout_s, self._expire, room_id, user_id)
            self._changed(room_id, room)
        else:
            if room is None or user_id not in room.users:
                return
            call = room.users.pop(user_id)
            if call.active():
                call.cancel()
            self._changed(room_id, room)

    def _expire(self, room_id: str, user_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None and room.users.pop(user_id, None) is not None:
            self._changed(room_id, room)

    def _changed(self, room_id: str, room: _RoomTyping) -> None:
        self._serial += 1
        room.serial = self._serial
        self.notifier.notify(rooms=[room_id])

    def stop(self) -> None:
        """Cancel every timer (shutdown)."""
        for room in self._rooms.values():
            for call in room.users.values():
                if call.active():
                    call.cancel()
            room.users.clear()

    # -- the client API

    async def client_set_typing(
        self, requester_id: str, room_id: str, user_id: str, body: dict[str, Any]
    ) -> None:
        """C{PUT /rooms/{roomId}/typing/{userId}}."""
        if requester_id != user_id:
            raise forbidden("You cannot set the typing state of another user.")
        typing = body.get("typing")
        if not isinstance(typing, bool):
            raise bad_json("'typing' must be a boolean.")
        timeout = body.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)):
            raise bad_json("'timeout' must be an integer.")
        if not await self.is_joined(user_id, room_id):
            raise forbidden("You are not in this room.")
        self.set_typing(room_id, user_id, typing, timeout)
        await run_hooks(self.on_local_typing, room_id, user_id, typing, what="on_local_typing")
