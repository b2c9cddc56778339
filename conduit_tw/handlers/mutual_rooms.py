"""
Mutual rooms (client-server-api "Mutual Rooms", v1.19; mutual_rooms.yaml):
C{GET /_matrix/client/v1/mutual_rooms?user_id=} lists the rooms where both
the requester and C{user_id} are joined, by room ID, L{BATCH} at a time.

C{next_batch} is stateless: the other user and the last room ID returned,
so it never expires (the spec asks for at least 10 minutes) and a token
given with another C{user_id} is 400 M_INVALID_PARAM, as are a missing,
malformed (not even a historical user ID) or own C{user_id}. A valid ID of
nobody we know shares nothing: an empty list. C{count} is the total.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.events.auth_rules import is_valid_user_id
from conduit_tw.util.opaque import decode_token, encode_token

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

#: Rooms per answer.
BATCH = 100


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


class MutualRooms:
    """See the module docstring."""

    def __init__(self, store: "EventStore", page_size: int = BATCH) -> None:
        self.store = store
        self.page_size = page_size

    async def mutual_rooms(
        self, user_id: str, other: str | None, from_token: str | None = None
    ) -> dict[str, Any]:
        """The rooms C{user_id} and C{other} are both joined to."""
        if not other:
            raise _invalid("user_id is required")
        if not is_valid_user_id(other):
            raise _invalid("The user ID provided was invalid")
        if other == user_id:
            raise _invalid("You cannot ask for the rooms you share with yourself")
        after = ""
        if from_token is not None:
            data = decode_token(from_token)
            after = data.get("r")
            if data.get("u") != other or not isinstance(after, str):
                raise _invalid("The pagination token is for another request")
        mine = set(await self.store.joined_room_ids(user_id))
        shared = sorted(r for r in await self.store.joined_room_ids(other) if r in mine)
        rest = [r for r in shared if r > after]
        body: dict[str, Any] = {"joined": rest[: self.page_size], "count": len(shared)}
        if len(rest) > self.page_size:
            body["next_batch"] = encode_token({"u": other, "r": body["joined"][-1]})
        return body
