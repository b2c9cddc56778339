"""Keys of limits: per-action rate limits (Synapse's C{rc_*} names) and stored sizes."""

from __future__ import annotations

from conduit_tw.config.declare import MEDIA, key, section
from conduit_tw.config.values import POSITIVE, integer, number

_RATE = number(0.0)


@section("rate_limits")
class RateLimitKeys:
    """Rate limits, per user (or per IP address before login); C{*_per_second = 0} disables."""

    rc_message_per_second: float = key(
        0.2,
        "Messages and other events sent by a user.",
        _RATE,
    )
    rc_message_burst_count: int = key(10, "Burst of `rc_message_per_second`.", POSITIVE)
    rc_registration_per_second: float = key(
        0.17,
        "Accounts registered per IP address (the round trips of one registration count once). "
        "The same rate, counted separately, limits `/register/available` and "
        "registration-token validity checks.",
        _RATE,
    )
    rc_registration_burst_count: int = key(3, "Burst of `rc_registration_per_second`.", POSITIVE)
    rc_login_per_second: float = key(
        0.17,
        "Login attempts per IP address, failed password logins per account, and "
        "`/login/get_token` per user.",
        _RATE,
    )
    rc_login_burst_count: int = key(3, "Burst of `rc_login_per_second`.", POSITIVE)
    rc_joins_per_second: float = key(
        0.1,
        "Room joins and knocks by a user.",
        _RATE,
    )
    rc_joins_burst_count: int = key(10, "Burst of `rc_joins_per_second`.", POSITIVE)
    rc_profile_per_second: float = key(
        0.1,
        "Profile changes by a user (`PUT`/`DELETE /profile/{userId}/{keyName}`; display name "
        "and avatar changes write a member event into every joined room).",
        _RATE,
    )
    rc_profile_burst_count: int = key(5, "Burst of `rc_profile_per_second`.", POSITIVE)
    rc_account_data_per_second: float = key(
        1.0,
        "Account data (global and per room), room tag changes, push rule changes, filter "
        "uploads and read markers written by a user.",
        _RATE,
    )
    rc_account_data_burst_count: int = key(20, "Burst of `rc_account_data_per_second`.", POSITIVE)
    rc_room_aliases_per_second: float = key(
        0.2,
        "Room alias creation and deletion by a user.",
        _RATE,
    )
    rc_room_aliases_burst_count: int = key(10, "Burst of `rc_room_aliases_per_second`.", POSITIVE)
    rc_directory_per_second: float = key(
        0.2,
        "Room directory visibility changes (`PUT /directory/list/room/{roomId}`) by a user.",
        _RATE,
    )
    rc_directory_burst_count: int = key(10, "Burst of `rc_directory_per_second`.", POSITIVE)
    rc_pushers_per_second: float = key(
        0.1,
        "Pusher changes (`POST /pushers/set`) by a user.",
        _RATE,
    )
    rc_pushers_burst_count: int = key(5, "Burst of `rc_pushers_per_second`.", POSITIVE)
    rc_invites_per_second: float = key(
        0.3,
        "Invites sent by a user (an invite also counts under `rc_message_*`).",
        _RATE,
    )
    rc_invites_burst_count: int = key(10, "Burst of `rc_invites_per_second`.", POSITIVE)
    rc_keys_per_second: float = key(
        1.0,
        "Device updates (`PUT /devices/{deviceId}`) by a user; end-to-end key uploads once "
        "they land (not effective for them yet).",
        _RATE,
    )
    rc_keys_burst_count: int = key(20, "Burst of `rc_keys_per_second`.", POSITIVE)
    rc_media_per_second: float = key(
        1.0,
        "Media uploads by a user.",
        _RATE,
        not_effective=MEDIA,
    )
    rc_media_burst_count: int = key(
        20,
        "Burst of `rc_media_per_second`.",
        POSITIVE,
        not_effective=MEDIA,
    )
    #: Largest stored user JSON (account data, filters, pusher data, room tags) in bytes.
    max_account_data_size: int = key(
        65536,
        "Largest stored user JSON in bytes, as compact UTF-8 JSON (one account data event, a "
        "room's whole tag set, a filter, a pusher, or a user's own push rule set); larger "
        "ones are refused with 413 `M_TOO_LARGE`.",
        integer(1024, 16_000_000),
    )
