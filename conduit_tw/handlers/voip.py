"""
TURN credentials for calls (client-server-api "Voice over IP", "Server
behaviour"; voip.yaml: C{GET /voip/turnServer}).

- With C{turn_secret} (coturn's C{static-auth-secret}, the "TURN REST
  API" scheme): time-limited credentials, C{username = "<expiry>:<user_id>"}
  with C{expiry} the Unix time in seconds C{turn_ttl} from now, and
  C{password = base64(HMAC-SHA1(turn_secret, username))} (standard base64
  with padding, as coturn checks it).
- Otherwise C{turn_username}/C{turn_password} as configured.
- No C{turn_uris}, or neither a secret nor a username and password: 404
  M_NOT_FOUND. voip.yaml's 200 body requires every field and names no
  answer for "no TURN server", so the generic M_NOT_FOUND tells clients
  (Element, matrix-js-sdk) that there is none rather than an empty object
  that does not match the schema.
- Guests get credentials only with C{turn_allow_guests} (403
  M_GUEST_ACCESS_FORBIDDEN otherwise), as Synapse's key of the same name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found

if TYPE_CHECKING:
    from conduit_tw.events.event import Event
    from conduit_tw.storage.stores.rooms import RoomInfo


@dataclass(frozen=True)
class TurnSettings:
    """The C{turn_*} configuration keys."""

    uris: Sequence[str] = ()
    secret: str | None = None
    username: str | None = None
    password: str | None = None
    ttl: int = 86400
    allow_guests: bool = False


def turn_password(secret: str, username: str) -> str:
    """C{base64(HMAC-SHA1(secret, username))}, coturn's REST API password."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class TurnHandler:
    """See the module docstring."""

    def __init__(self, settings: TurnSettings, clock_ms: Callable[[], int]) -> None:
        self.settings = settings
        self.clock_ms = clock_ms

    def credentials(self, user_id: str, is_guest: bool) -> dict[str, Any]:
        """The C{/voip/turnServer} body for C{user_id}."""
        s = self.settings
        if is_guest and not s.allow_guests:
            raise MatrixError(
                403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests may not use this server's TURN server"
            )
        if not s.uris:
            raise not_found("No TURN server is configured")
        if s.secret:
            expiry = self.clock_ms() // 1000 + s.ttl
            username = "%d:%s" % (expiry, user_id)
            password = turn_password(s.secret, username)
        elif s.username and s.password:
            username, password = s.username, s.password
        else:
            raise not_found("No TURN credentials are configured")
        return {"username": username, "password": password, "uris": list(s.uris), "ttl": s.ttl}


class CallProtection:
    """
    conduwuit's call protections (its changelog, "Moderation"): no
    C{m.call.invite} in a public room, which would ring every member.
    "Public" is what conduwuit checks, a room published in our room
    directory. The other half, only moderators (power 50) may send
    C{m.call.invite} and the MSC3401 call events in rooms created with
    C{visibility: public}, is in their initial power levels
    (L{conduit_tw.handlers.rooms.CALL_EVENTS}).
    """

    def __init__(self, is_published: Callable[[str], Awaitable[bool]]) -> None:
        self.is_published = is_published

    async def check_event(self, room: "RoomInfo", event: "Event") -> None:
        """The C{EventHandler.validators} hook: 403 for a call invite in a published room."""
        if event.type == "m.call.invite" and await self.is_published(room.room_id):
            raise forbidden("Room call invites are not allowed in public rooms")
