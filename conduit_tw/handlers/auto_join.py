"""
C{auto_join_rooms}: join every new local account to the configured rooms.

Runs as a L{RegistrationHandler.on_registered} hook, so it applies to
accounts made by C{/register} (guests only with
C{allow_guests_auto_join_rooms}). Each entry is a room ID or a local alias
of a room this server has; the join goes through the ordinary membership
code, so the room's join rules and bans apply. A room that cannot be
joined is logged and skipped: registration never fails because of it.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from conduit_tw.errors import MatrixError
from conduit_tw.handlers.auth import Requester
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.handlers.auto_join")


class AutoJoin:
    """Joins newly registered users to C{auto_join_rooms}."""

    def __init__(
        self,
        join: Callable[[Requester, str], Awaitable[Any]],
        rooms: Sequence[str] = (),
        allow_guests: bool = False,
    ) -> None:
        #: C{MembershipHandler.join}.
        self.join = join
        #: C{auto_join_rooms}: room IDs or local aliases.
        self.rooms = list(rooms)
        #: C{allow_guests_auto_join_rooms}.
        self.allow_guests = allow_guests

    async def user_registered(self, user_id: str, is_guest: bool) -> None:
        """The registration hook: join C{user_id} to each configured room."""
        if not self.rooms or (is_guest and not self.allow_guests):
            return
        requester = Requester(user_id=user_id, device_id=None, is_guest=is_guest)
        for room in list(self.rooms):
            try:
                await self.join(requester, room)
            except MatrixError as e:
                log.warn(
                    "auto_join_rooms: {user_id} could not join {room}: {errcode} {error}",
                    user_id=user_id, room=room, errcode=e.errcode, error=e.msg,
                )
            except Exception:
                log.failure(
                    "auto_join_rooms: joining {user_id} to {room} failed",
                    user_id=user_id, room=room,
                )
