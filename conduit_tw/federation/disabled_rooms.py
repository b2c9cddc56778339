"""
Rooms whose incoming federation the operator disabled (the admin room's
C{federation disable-room}, kept in C{AdminStore}; conduwuit's command of
the same name). For such a room this server stops taking part in it:

- PDUs of incoming transactions are dropped (their per-PDU result says
  L{DISABLED}) before any signature check or fetch (pdu_pipeline.py);
- its typing and receipt EDUs are ignored (edu.py);
- make_join, send_join, make_leave, send_leave, make_knock, send_knock and
  invites into it are refused with 403 C{M_FORBIDDEN} (membership_server.py).

Serving what we already hold (C{/event}, C{/state}, C{/backfill} ...) and
our own users' events are not affected; C{federation enable-room} undoes it.
"""

from __future__ import annotations

from typing import Awaitable, Callable

#: The error other servers get.
DISABLED = "Federation of this room is disabled on this server"

#: C{async (room_id) -> bool}: whether the room's incoming federation is disabled.
RoomDisabled = Callable[[str], Awaitable[bool]]


async def never_disabled(room_id: str) -> bool:
    """The default L{RoomDisabled}: no room is disabled."""
    return False
