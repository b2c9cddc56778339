"""Keys of VoIP: the TURN servers offered to clients (C{/voip/turnServer})."""

from __future__ import annotations

from conduit_tw.config import values
from conduit_tw.config.declare import key, section

_TURN = "the TURN endpoint (/voip/turnServer) is not implemented yet"


@section("turn")
class TurnKeys:
    """TURN; Conduit's newer C{[global.turn]} table sets the same keys (C{aliases})."""

    turn_uris: list[str] = key(
        [],
        "TURN server URIs offered to clients (`turn:` / `turns:` / `stun:` ...).",
        values.list_of(values.TURN_URI, "TURN URIs"),
        aliases=("turn.uris",),
        not_effective=_TURN,
    )
    turn_secret: str | None = key(
        None,
        "Shared secret (coturn's `static-auth-secret`) to make time-limited credentials. "
        "Preferred.",
        aliases=("turn.secret",),
        not_effective=_TURN,
    )
    turn_username: str | None = key(
        None,
        "Fixed TURN username, when not using `turn_secret`.",
        aliases=("turn.username",),
        not_effective=_TURN,
    )
    turn_password: str | None = key(
        None,
        "Fixed TURN password, when not using `turn_secret`.",
        aliases=("turn.password",),
        not_effective=_TURN,
    )
    turn_ttl: int = key(
        86400,
        "Lifetime of generated credentials, in seconds.",
        values.POSITIVE,
        aliases=("turn.ttl",),
        not_effective=_TURN,
    )
    turn_allow_guests: bool = key(
        False, "Give TURN credentials to guests too.", not_effective=_TURN
    )
