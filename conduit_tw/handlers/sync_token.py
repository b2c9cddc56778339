"""
The /sync C{since}/C{next_batch} token, C{s<position>_<typing serial>}.

C{position} is the global stream position everything in the response is
bounded by (events, receipts, account data, presence, membership ...),
the typing serial the typing changes it covered (handlers/typing.py).
Both grow across restarts (the stream counter is stored, the typing
serial starts at the clock), so a token stays valid after a restart, and
comparing two tokens is comparing two integers.

Room pagination tokens (C{prev_batch}, /messages C{from}/C{to}/C{end},
/members C{at}) are those of handlers/room_history.py: a boundary in the
room's timeline, C{s<position>} for live events. Its parser reads only the
leading C{s<digits>} of a token, so a sync token is a valid /messages
token meaning "after every live event up to C{position}", as the spec
wants (C{/messages?from=<since>&to=<prev_batch>} closes a gap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.storage.stores.timeline import LIVE_BASE

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.rooms import RoomInfo


@dataclass(frozen=True, slots=True)
class SyncToken:
    """A /sync C{next_batch}/C{since} token."""

    position: int
    typing: int

    def encode(self) -> str:
        return f"s{self.position}_{self.typing}"


def parse_sync_token(token: str) -> SyncToken:
    """
    Parse a C{since} parameter.

    @raise MatrixError: 400 M_INVALID_PARAM for anything else.
    """
    pos, sep, typing = token[1:].partition("_")
    if not token.startswith("s") or not sep or not pos.isdigit() or not typing.isdigit():
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid since token {token[:64]!r}")
    return SyncToken(int(pos), int(typing))


def boundary_after_position(position: int) -> int:
    """The smallest timeline order after every live event at or before C{position}."""
    return LIVE_BASE + position + 1


async def statehash_at(store: "EventStore", room: "RoomInfo", boundary: int) -> int:
    """
    The room's shortstatehash just before timeline order C{boundary}: the
    state after the last timeline event below it (0 if there is none).
    """
    if boundary <= 0:
        return 0
    events = await store.timeline.range(room.short, boundary - 1, False, 1)
    return events[0].state_after if events else 0
