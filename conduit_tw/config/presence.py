"""Keys of ephemeral data: presence, typing notifications and read receipts."""

from __future__ import annotations

from typing import Any

from conduit_tw.config.declare import FEDERATION, key, section
from conduit_tw.config.values import POSITIVE, ConfigError


@section("presence")
class PresenceKeys:
    """Presence, typing, receipts."""

    allow_local_presence: bool = key(
        True, "Presence among local users (required for outgoing presence)."
    )
    allow_incoming_presence: bool = key(
        True, "Accept presence from other servers.",
    )
    allow_outgoing_presence: bool = key(
        True, "Send presence to other servers.",
    )
    presence_timeout_remote_users: bool = key(
        True, "Also time remote users out to idle/offline.", not_effective=FEDERATION
    )
    presence_idle_timeout_s: int = key(
        300, "Seconds without activity before a user shows as idle.", POSITIVE
    )
    presence_offline_timeout_s: int = key(
        1800, "Seconds without activity before a user shows as offline.", POSITIVE
    )
    allow_incoming_read_receipts: bool = key(
        True, "Accept read receipts from other servers.",
    )
    allow_outgoing_read_receipts: bool = key(
        True, "Send read receipts to other servers.",
    )
    allow_incoming_typing: bool = key(
        True, "Accept typing notifications from other servers.",
    )
    allow_outgoing_typing: bool = key(
        True, "Send typing notifications to other servers.",
    )
    typing_federation_timeout_s: int = key(
        30,
        "Longest a remote user may show as typing.",
        POSITIVE,
    )
    typing_client_timeout_min_s: int = key(
        15, "Shortest typing timeout granted to a local client.", POSITIVE
    )
    typing_client_timeout_max_s: int = key(
        45,
        "Longest typing timeout granted to a local client (must be ≥ the minimum).",
        POSITIVE,
    )


def after_load(config: Any, g: dict[str, Any], notices: list[str]) -> None:
    if config.typing_client_timeout_min_s > config.typing_client_timeout_max_s:
        raise ConfigError(
            f"global.typing_client_timeout_min_s: must not exceed typing_client_timeout_max_s "
            f"({config.typing_client_timeout_min_s} > {config.typing_client_timeout_max_s})"
        )
