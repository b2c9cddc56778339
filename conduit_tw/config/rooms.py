"""Keys of rooms: creation, versions, invites, aliases and the room directory."""

from __future__ import annotations

from conduit_tw.config import values
from conduit_tw.config.declare import key, section


@section("rooms")
class RoomKeys:
    """Rooms and the public room directory."""

    allow_encryption: bool = key(
        True,
        "Allow new encrypted rooms; `false` refuses `m.room.encryption` in createRoom, state "
        "events and upgrades (rooms already encrypted keep working).",
    )
    allow_room_creation: bool = key(
        True, "Let local users create rooms (admins and appservices always can)."
    )
    allow_unstable_room_versions: bool = key(
        True, "Allow creating and joining room versions not marked stable."
    )
    default_room_version: str = key(
        "12",
        'Version of new rooms: `"1"` to `"12"` (an integer is accepted too).',
        values.ROOM_VERSION,
    )
    block_non_admin_invites: bool = key(
        False, "Only admins may send invites or receive remote ones."
    )
    forbidden_alias_names: list[str] = key(
        [], "Room aliases and custom room IDs containing any of these strings are refused."
    )
    auto_deactivate_banned_room_attempts: bool = key(
        False,
        "Deactivate local non-admin users who try to join a banned room or a forbidden "
        "alias/server.",
    )
    allow_public_room_directory_without_auth: bool = key(
        False, "Serve the public room directory to clients without an access token."
    )
    allow_public_room_directory_over_federation: bool = key(
        False,
        "Serve our public room directory to other servers.",
    )
    lockdown_public_room_directory: bool = key(
        False,
        "Only admins may publish rooms to the directory (anyone may still unpublish).",
    )
