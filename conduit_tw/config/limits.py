"""Keys of limits: per-action rate limits (Synapse's C{rc_*} names) and stored sizes."""

from __future__ import annotations

from typing import Any

from conduit_tw.config.declare import key, section
from conduit_tw.config.values import POSITIVE, integer, number

_RATE = number(0.0)


def _rate(per_second: float, doc: str, **kw: Any) -> Any:
    """Declare C{rc_<action>_per_second}: what counts, and how many per second."""
    return key(per_second, doc, _RATE, **kw)


def _burst(count: int, action: str, **kw: Any) -> Any:
    """Declare C{rc_<action>_burst_count}: how many may happen at once."""
    return key(count, f"Burst of `rc_{action}_per_second`.", POSITIVE, **kw)


@section("rate_limits")
class RateLimitKeys:
    """Rate limits, per user (or per IP address before login); C{*_per_second = 0} disables."""

    rc_message_per_second: float = _rate(0.2, "Messages and other events sent by a user.")
    rc_message_burst_count: int = _burst(10, "message")
    rc_registration_per_second: float = _rate(
        0.17,
        "Accounts registered per IP address (the round trips of one registration count once). "
        "The same rate, counted separately, limits `/register/available` and "
        "registration-token validity checks.",
    )
    rc_registration_burst_count: int = _burst(3, "registration")
    rc_login_per_second: float = _rate(
        0.17,
        "Login attempts per IP address, failed password logins per account, and "
        "`/login/get_token` per user.",
    )
    rc_login_burst_count: int = _burst(3, "login")
    rc_joins_per_second: float = _rate(0.1, "Room joins and knocks by a user.")
    rc_joins_burst_count: int = _burst(10, "joins")
    rc_profile_per_second: float = _rate(
        0.1,
        "Profile changes by a user (`PUT`/`DELETE /profile/{userId}/{keyName}`; display name "
        "and avatar changes write a member event into every joined room).",
    )
    rc_profile_burst_count: int = _burst(5, "profile")
    rc_account_data_per_second: float = _rate(
        1.0,
        "Account data (global and per room), room tag changes, push rule changes, filter "
        "uploads and read markers written by a user.",
    )
    rc_account_data_burst_count: int = _burst(20, "account_data")
    rc_room_aliases_per_second: float = _rate(0.2, "Room alias creation and deletion by a user.")
    rc_room_aliases_burst_count: int = _burst(10, "room_aliases")
    rc_directory_per_second: float = _rate(
        0.2,
        "Room directory visibility changes (`PUT /directory/list/room/{roomId}`) by a user.",
    )
    rc_directory_burst_count: int = _burst(10, "directory")
    rc_pushers_per_second: float = _rate(0.1, "Pusher changes (`POST /pushers/set`) by a user.")
    rc_pushers_burst_count: int = _burst(5, "pushers")
    rc_invites_per_second: float = _rate(
        0.3,
        "Invites sent by a user (an invite also counts under `rc_message_*`).",
    )
    rc_invites_burst_count: int = _burst(10, "invites")
    rc_keys_per_second: float = _rate(
        1.0,
        "Device updates (`PUT /devices/{deviceId}`) by a user; end-to-end key uploads once "
        "they land (not effective for them yet).",
    )
    rc_keys_burst_count: int = _burst(20, "keys")
    rc_media_per_second: float = _rate(
        1.0, "Media uploads, `/media/v1/create` and URL previews by a user."
    )
    rc_media_burst_count: int = _burst(20, "media")
    #: Largest stored user JSON (account data, filters, pusher data, room tags) in bytes.
    max_account_data_size: int = key(
        65536,
        "Largest stored user JSON in bytes, as compact UTF-8 JSON (one account data event, a "
        "room's whole tag set, a filter, a pusher, or a user's own push rule set); larger "
        "ones are refused with 413 `M_TOO_LARGE`.",
        integer(1024, 16_000_000),
    )
