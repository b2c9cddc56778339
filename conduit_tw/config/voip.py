"""Keys of VoIP: the TURN servers offered to clients (C{/voip/turnServer})."""

from __future__ import annotations

from conduit_tw.config import values
from conduit_tw.config.declare import key, section


@section("turn")
class TurnKeys:
    """TURN; Conduit's newer C{[global.turn]} table sets the same keys (C{aliases})."""

    turn_uris: list[str] = key(
        [],
        "TURN server URIs offered to clients (`turn:` / `turns:` / `stun:` ...).",
        values.list_of(values.TURN_URI, "TURN URIs"),
        aliases=("turn.uris",),
    )
    turn_secret: str | None = key(
        None,
        "Shared secret (coturn's `static-auth-secret`) to make time-limited credentials. "
        "Preferred.",
        aliases=("turn.secret",),
    )
    turn_username: str | None = key(
        None,
        "Fixed TURN username, when not using `turn_secret`.",
        aliases=("turn.username",),
    )
    turn_password: str | None = key(
        None,
        "Fixed TURN password, when not using `turn_secret`.",
        aliases=("turn.password",),
    )
    turn_ttl: int = key(
        86400,
        "Lifetime of generated credentials, in seconds.",
        values.POSITIVE,
        aliases=("turn.ttl",),
    )
    turn_allow_guests: bool = key(
        False, "Give TURN credentials to guests too."
    )
