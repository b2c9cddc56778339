"""
The admin room's command groups (docs/admin.md): C{users}, C{rooms},
C{media}, C{server}, C{federation}, C{appservices}, C{tokens}, C{debug};
commands whose parts are not built yet answer "not available yet".

Each handler receives an L{Invocation} and uses the explicit dependencies
in L{AdminDeps}; L{command_table} builds the root L{Group}. To add a group
(e.g. appservices, issue 17), write its commands like these and put the
group in L{command_table}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import resource
import secrets
import string
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import quote

from twisted.internet.threads import deferToThread

from conduit_tw.appservice.registration import RegistrationError
from conduit_tw.config.values import is_valid_server_name
from conduit_tw.errors import MatrixError
from conduit_tw.events.canonical_json import encode_canonical_json
from conduit_tw.events.event_ids import compute_event_id
from conduit_tw.events.hashes import check_content_hash
from conduit_tw.events.room_versions import get_room_version
from conduit_tw.events.signing import hash_and_sign_event, sign_json
from conduit_tw.events.validation import validate_pdu
from conduit_tw.federation.pdu_checks import PduError, check_pdu
from conduit_tw.handlers.admin_commands import Command, CommandError, Group, Invocation, Reply
from conduit_tw.handlers.auth import Requester
from conduit_tw.util.caches import clear_all

if TYPE_CHECKING:
    from conduit_tw.handlers.account import AccountHandler
    from conduit_tw.handlers.appservices import AppserviceHandler
    from conduit_tw.handlers.admin_room import AdminRoom
    from conduit_tw.handlers.devices import DeviceHandler
    from conduit_tw.handlers.directory import DirectoryHandler
    from conduit_tw.handlers.media import MediaHandler
    from conduit_tw.handlers.membership import MembershipHandler
    from conduit_tw.handlers.passwords import Passwords
    from conduit_tw.handlers.registration import RegistrationHandler
    from conduit_tw.handlers.server_keys import ServerKeys
    from conduit_tw.storage.events import EventStore
    from conduit_tw.federation.client import FederationClient
    from conduit_tw.federation.keyring import KeyRing
    from conduit_tw.federation.pdu_pipeline import Incoming
    from conduit_tw.storage.stores.admin import AdminStore
    from conduit_tw.storage.stores.media import MediaStore
    from conduit_tw.storage.stores.registration_tokens import RegistrationTokenStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.directory import DirectoryStore
    from conduit_tw.storage.stores.users import UserStore

#: Length of generated passwords (Conduit: 25 characters).
GENERATED_PASSWORD_LENGTH = 25
_SECRET_KEY = re.compile(r"secret|password|token|private|macaroon", re.IGNORECASE)
_MXC = re.compile(r"^mxc://([^/]+)/([^/]+)$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration_ms(text: str) -> int:
    """C{30s}, C{15m}, C{12h}, C{7d}, C{2w} in milliseconds (usage error otherwise)."""
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise CommandError(f"Bad duration {text!r}: use e.g. 30m, 12h, 7d, 2w")
    return int(m.group(1)) * _UNIT_S[m.group(2)] * 1000


def generate_password() -> str:
    """A random password of L{GENERATED_PASSWORD_LENGTH} letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(GENERATED_PASSWORD_LENGTH))


@dataclass(frozen=True)
class AdminDeps:
    """The components the commands use."""

    server_name: str
    users: "UserStore"
    registration: "RegistrationHandler"
    account: "AccountHandler"
    devices: "DeviceHandler"
    passwords: "Passwords"
    event_store: "EventStore"
    membership: "MembershipHandler"
    directory: "DirectoryHandler"
    directory_store: "DirectoryStore"
    aliases: "AliasStore"
    media: "MediaHandler"
    server_keys: Callable[[], "ServerKeys"]
    admin_store: "AdminStore"
    admin_room: "AdminRoom"
    config: Any
    started: float
    clock_ms: Callable[[], int]
    media_store: "MediaStore"
    keyring: "KeyRing"
    #: C{IKeyValueDatabase.backup}: an online copy into a directory.
    backup: Callable[[str], Any]
    #: Stops the server (C{reactor.stop}).
    shutdown: Callable[[], None]
    registration_tokens: "RegistrationTokenStore"
    federation_client: "FederationClient"
    #: The outgoing HTTP client (C{ip_range_denylist} applies).
    http_client: Any
    #: Applies a log filter (C{conduit_tw.logging.configure}).
    configure_logging: Callable[[str], None]
    #: The appservice registry (built after the admin room).
    appservices: Callable[[], "AppserviceHandler"]
    #: C{DeviceListTracker.key_changed}: announce a user's devices changed.
    device_keys_changed: Callable[[str], Awaitable[None]]
    #: C{PduPipeline.incoming}: rooms with incoming PDUs in the pipeline now.
    federation_incoming: Callable[[], list["Incoming"]] = list


def _unavailable(reason: str, *commands: tuple[str, str, tuple[str, ...]]) -> tuple[Command, ...]:
    return tuple(Command(name, doc, aliases=aliases, unavailable=reason) for name, doc, aliases in commands)


class AdminCommands:
    """The command handlers, over L{AdminDeps}."""

    def __init__(self, deps: AdminDeps) -> None:
        self.d = deps

    # -- helpers

    def user_id(self, value: str) -> str:
        """A local user ID from a user ID or a localpart."""
        if not value.startswith("@"):
            value = f"@{value.lower()}:{self.d.server_name}"
        if value.partition(":")[2] != self.d.server_name:
            raise CommandError(f"{value} is not a user of this server")
        return value

    async def existing_user(self, value: str) -> str:
        user_id = self.user_id(value)
        if not await self.d.users.exists(user_id):
            raise CommandError(f"User {user_id} does not exist")
        if user_id == self.d.admin_room.bot:
            raise CommandError(f"{user_id} is the server's bot: not changed by commands")
        return user_id

    async def room_id(self, value: str) -> str:
        """A room ID from a room ID or a local alias that exists here."""
        room_id = await self.d.membership.resolve_room(value)
        if not await self.d.event_store.room_exists(room_id):
            raise CommandError(f"Room {room_id} is not known to this server")
        return room_id

    async def _state(self, room_id: str, etype: str, key: str = "") -> dict[str, Any]:
        ev = await self.d.event_store.current_state_event(room_id, etype, key)
        return ev.content if ev is not None else {}

    # -- users

    async def users_list(self, inv: Invocation) -> Reply:
        rows = []
        for user_id in await self.d.users.list_user_ids():
            acc = await self.d.users.get_account(user_id)
            if acc is None:
                continue
            flags = [f for f, on in (("admin", acc.is_admin), ("guest", acc.is_guest),
                                      ("deactivated", acc.deactivated)) if on]
            rows.append((user_id, ", ".join(flags)))
        return Reply.table("Local users", ["user", "flags"], rows)

    async def users_create(self, inv: Invocation) -> Reply:
        user_id = await self.d.registration.check_available(inv.args[0])
        password = inv.args[1] if len(inv.args) > 1 else generate_password()
        await self.d.registration.create_user(user_id, password)
        return Reply.text(f"Created user {user_id} with password: {password}")

    async def users_reset_password(self, inv: Invocation) -> Reply:
        user_id = await self.existing_user(inv.args[0])
        password = inv.args[1] if len(inv.args) > 1 else generate_password()
        await self.d.users.update_account(
            user_id, password_hash=await self.d.passwords.hash(password)
        )
        return Reply.text(f"Password of {user_id} set to: {password}")

    async def _deactivate(self, user_id: str, sender: str) -> None:
        if user_id == sender:
            raise CommandError("You cannot deactivate yourself from the admin room")
        acc = await self.d.users.get_account(user_id)
        if acc is not None and acc.deactivated:
            raise CommandError(f"{user_id} is already deactivated")
        await self.d.account.deactivate(user_id)

    async def users_deactivate(self, inv: Invocation) -> Reply:
        user_id = await self.existing_user(inv.args[0])
        await self._deactivate(user_id, inv.sender)
        return Reply.text(f"Deactivated {user_id}; it left its rooms and its sessions ended")

    async def users_deactivate_all(self, inv: Invocation) -> Reply:
        done, failed = [], []
        for line in inv.body_lines():
            try:
                user_id = await self.existing_user(line)
                if await self.d.users.is_admin(user_id) and not inv.flag("force"):
                    raise CommandError("is an admin (use --force)")
                await self._deactivate(user_id, inv.sender)
                done.append(user_id)
            except (CommandError, MatrixError) as e:
                failed.append((line, str(e) if isinstance(e, CommandError) else e.msg))
        text = f"Deactivated {len(done)} user(s): {', '.join(done) or '-'}"
        if failed:
            text += "\nFailed:\n" + "\n".join(f"{u}: {why}" for u, why in failed)
        return Reply.text(text)

    async def users_make_admin(self, inv: Invocation) -> Reply:
        user_id = await self.existing_user(inv.args[0])
        acc = await self.d.users.get_account(user_id)
        if acc is None or acc.deactivated or acc.is_guest:
            raise CommandError(f"{user_id} is deactivated or a guest")
        await self.d.admin_room.add_admin(user_id)
        return Reply.text(f"{user_id} is now a server admin (joined to the admin room)")

    async def users_revoke_admin(self, inv: Invocation) -> Reply:
        user_id = await self.existing_user(inv.args[0])
        if user_id == inv.sender:
            raise CommandError("You cannot revoke your own admin rights")
        await self.d.admin_room.remove_admin(user_id)
        return Reply.text(f"{user_id} is no longer a server admin")

    async def users_joined_rooms(self, inv: Invocation) -> Reply:
        user_id = self.user_id(inv.args[0])
        rows = []
        for room_id in await self.d.event_store.joined_room_ids(user_id):
            name = (await self._state(room_id, "m.room.name")).get("name", "")
            rows.append((room_id, name))
        return Reply.table(f"Rooms {user_id} is joined to", ["room", "name"], rows)

    async def users_devices(self, inv: Invocation) -> Reply:
        user_id = await self.existing_user(inv.args[0])
        rows = [
            (dev.device_id, dev.display_name or "", dev.last_seen_ip or "", dev.last_seen_ts or "")
            for dev in await self.d.devices.list_devices(user_id)
        ]
        return Reply.table(f"Devices of {user_id}", ["device", "name", "last IP", "last seen"], rows)

    async def users_logout_all(self, inv: Invocation) -> Reply:
        user_id = await self.existing_user(inv.args[0])
        removed = await self.d.devices.delete_all_devices(user_id)
        return Reply.text(f"Logged {user_id} out of {len(removed)} device(s)")

    # -- rooms

    async def rooms_list(self, inv: Invocation) -> Reply:
        rows = []
        for room in await self.d.event_store.rooms.all_rooms():
            head = await self.d.event_store.head(room)
            if not head.statehash:
                continue
            name = (await self._state(room.room_id, "m.room.name")).get("name", "")
            alias = (await self._state(room.room_id, "m.room.canonical_alias")).get("alias", "")
            rows.append((room.room_id, head.joined, name, alias, room.version.identifier))
        rows.sort(key=lambda r: -r[1])
        return Reply.table("Rooms", ["room", "members", "name", "alias", "version"], rows)

    async def rooms_info(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        room = await self.d.event_store.get_room(room_id)
        assert room is not None
        head = await self.d.event_store.head(room)
        create = await self.d.event_store.current_state_event(room_id, "m.room.create", "")
        rows = [
            ("room", room_id),
            ("name", (await self._state(room_id, "m.room.name")).get("name", "")),
            ("topic", (await self._state(room_id, "m.room.topic")).get("topic", "")),
            ("canonical alias", (await self._state(room_id, "m.room.canonical_alias")).get("alias", "")),
            ("local aliases", ", ".join(await self.d.aliases.aliases_for_room(room_id))),
            ("version", room.version.identifier),
            ("creator", create.sender if create is not None else ""),
            ("joined members", head.joined),
            ("invited members", head.invited),
            ("join rule", (await self._state(room_id, "m.room.join_rules")).get("join_rule", "")),
            ("published", await self.d.directory_store.is_public(room_id)),
            ("banned", await self.d.admin_store.is_banned(room_id)),
        ]
        return Reply.table(f"Room {room_id}", ["field", "value"], rows)

    async def rooms_state(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        events = await self.d.event_store.current_state_events(room_id)
        items = events.values() if isinstance(events, dict) else events
        state = [
            {"type": e.type, "state_key": e.state_key, "sender": e.sender, "content": e.content}
            for e in items
        ]
        return Reply.code(f"State of {room_id}:", json.dumps(state, indent=2, sort_keys=True))

    async def alias_set(self, inv: Invocation) -> Reply:
        alias, room = inv.args
        if not alias.startswith("#"):
            alias = f"#{alias}:{self.d.server_name}"
        room_id = await self.room_id(room)
        current = await self.d.aliases.get_room_for_alias(alias)
        if current is not None:
            if not inv.flag("force"):
                raise CommandError(f"{alias} already points to {current} (use --force)")
            await self.d.aliases.delete_alias(alias)
        await self.d.directory.create_alias(Requester(inv.sender, None), alias, room_id)
        return Reply.text(f"{alias} now points to {room_id}")

    async def alias_remove(self, inv: Invocation) -> Reply:
        alias = inv.args[0]
        if not await self.d.aliases.delete_alias(alias):
            raise CommandError(f"No alias {alias} here")
        return Reply.text(f"Removed {alias}")

    async def alias_list(self, inv: Invocation) -> Reply:
        room_ids = [await self.room_id(inv.args[0])] if inv.args else [
            r.room_id for r in await self.d.event_store.rooms.all_rooms()
        ]
        rows = [
            (alias, room_id)
            for room_id in room_ids
            for alias in await self.d.aliases.aliases_for_room(room_id)
        ]
        return Reply.table("Local aliases", ["alias", "room"], rows)

    async def directory_publish(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        await self.d.directory.set_visibility(Requester(inv.sender, None), room_id, "public")
        return Reply.text(f"Published {room_id} in the room directory")

    async def directory_unpublish(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        await self.d.directory_store.set_public(room_id, False)
        return Reply.text(f"Removed {room_id} from the room directory")

    async def directory_list(self, inv: Invocation) -> Reply:
        rows = []
        for room_id in sorted(await self.d.directory_store.public_room_ids()):
            name = (await self._state(room_id, "m.room.name")).get("name", "")
            rows.append((room_id, name))
        return Reply.table("Published rooms", ["room", "name"], rows)

    async def _ban_rooms(self, values: list[str], sender: str) -> tuple[list[str], list[str]]:
        banned: list[str] = []
        notes: list[str] = []
        for value in values:
            try:
                room_id = await self.d.membership.resolve_room(value)
            except MatrixError as e:
                notes.append(f"{value}: {e.msg}")
                continue
            if room_id == self.d.admin_room.room_id:
                notes.append(f"{value}: the admin room cannot be banned")
                continue
            banned.append(room_id)
        await self.d.admin_store.set_banned(banned, True)
        for room_id in banned:
            await self.d.directory_store.set_public(room_id, False)
            for user_id in await self.d.event_store.members(room_id, "join") + await self.d.event_store.members(room_id, "invite"):
                if user_id.partition(":")[2] != self.d.server_name:
                    continue
                try:
                    await self.d.membership.leave(Requester(user_id, None), room_id, "Room banned by the server admins")
                except MatrixError as e:
                    notes.append(f"{user_id} could not leave {room_id}: {e.msg}")
        return banned, notes

    async def moderation_ban(self, inv: Invocation) -> Reply:
        banned, notes = await self._ban_rooms(inv.args, inv.sender)
        if not banned:
            raise CommandError("\n".join(notes) or "Nothing banned")
        return Reply.text(
            f"Banned {', '.join(banned)}: local users were made to leave, joins and invites "
            "are refused" + ("\n" + "\n".join(notes) if notes else "")
        )

    async def moderation_ban_list(self, inv: Invocation) -> Reply:
        banned, notes = await self._ban_rooms(inv.body_lines(), inv.sender)
        return Reply.text(
            f"Banned {len(banned)} room(s)" + ("\n" + "\n".join(notes) if notes else "")
        )

    async def moderation_unban(self, inv: Invocation) -> Reply:
        room_id = await self.d.membership.resolve_room(inv.args[0])
        if not await self.d.admin_store.is_banned(room_id):
            raise CommandError(f"{room_id} is not banned")
        await self.d.admin_store.set_banned([room_id], False)
        return Reply.text(f"Unbanned {room_id}")

    async def moderation_list(self, inv: Invocation) -> Reply:
        rows = [(r,) for r in await self.d.admin_store.banned_room_ids()]
        return Reply.table("Banned rooms", ["room"], rows)

    # -- media

    async def _delete_media(self, mxc: str) -> bool:
        m = _MXC.match(mxc.strip())
        if m is None:
            raise CommandError(f"{mxc} is not an mxc:// URI")
        return await self.d.media.delete(m.group(1), m.group(2))

    async def media_delete(self, inv: Invocation) -> Reply:
        if not await self._delete_media(inv.args[0]):
            raise CommandError(f"No media {inv.args[0]} here")
        return Reply.text(f"Deleted {inv.args[0]}")

    async def media_list(self, inv: Invocation) -> Reply:
        user = inv.flag("user")
        since = inv.flag("since")
        if user is True or since is True:
            raise CommandError("--user and --since need a value (e.g. --user @alice:example.org --since 7d)")
        cutoff = self.d.clock_ms() - parse_duration_ms(since) if isinstance(since, str) else None
        rows = []
        for server_name, media_id, meta in await self.d.media_store.all_media():
            if meta.get("pending"):
                continue
            if isinstance(user, str) and meta.get("uploader") != user:
                continue
            created = int(meta.get("created_ts", 0))
            if cutoff is not None and created < cutoff:
                continue
            rows.append((
                created, f"mxc://{server_name}/{media_id}", meta.get("uploader") or "(remote)",
                str(meta.get("size", "?")), meta.get("content_type", "?"),
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(created / 1000)),
            ))
        rows.sort(reverse=True)
        return Reply.table("Media, newest first", ["mxc", "uploader", "bytes", "type", "created (UTC)"],
                           [r[1:] for r in rows])

    async def media_delete_past_remote(self, inv: Invocation) -> Reply:
        cutoff = self.d.clock_ms() - parse_duration_ms(inv.args[0])
        deleted = 0
        for server_name, media_id, meta in await self.d.media_store.all_media():
            is_remote = server_name != self.d.server_name or meta.get("remote")
            if is_remote and int(meta.get("created_ts", 0)) < cutoff:
                if await self.d.media.delete(server_name, media_id):
                    deleted += 1
        return Reply.text(f"Deleted {deleted} remote media item(s) fetched before {inv.args[0]} ago")

    async def media_delete_list(self, inv: Invocation) -> Reply:
        deleted, failed = 0, []
        for line in inv.body_lines():
            try:
                if await self._delete_media(line):
                    deleted += 1
                else:
                    failed.append(f"{line}: not found")
            except CommandError as e:
                failed.append(str(e))
        return Reply.text(f"Deleted {deleted} media file(s)" + ("\n" + "\n".join(failed) if failed else ""))

    # -- server

    async def server_uptime(self, inv: Invocation) -> Reply:
        seconds = int(time.time() - self.d.started)
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return Reply.text(f"Uptime: {days}d {hours}h {minutes}m {secs}s")

    async def server_memory(self, inv: Invocation) -> Reply:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rows = [("max resident set (KiB)", usage.ru_maxrss)]
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(("VmRSS", "VmSize", "VmHWM")):
                        key, _, value = line.partition(":")
                        rows.append((key, value.strip()))
        except OSError:
            pass
        return Reply.table("Memory usage", ["measure", "value"], rows)

    async def server_show_config(self, inv: Invocation) -> Reply:
        config = self.d.config
        names = (
            [f.name for f in dataclasses.fields(config)]
            if dataclasses.is_dataclass(config) else sorted(vars(config))
        )
        rows = []
        for name in names:
            if name.startswith("_") or name == "notices":
                continue
            value = getattr(config, name, None)
            if _SECRET_KEY.search(name) and value:
                value = "<redacted>"
            rows.append((name, repr(value)))
        return Reply.table("Configuration", ["key", "value"], rows)

    async def server_rotate_key(self, inv: Invocation) -> Reply:
        key_id = await self.d.server_keys().rotate()
        return Reply.text(f"New signing key: {key_id} (the old one is kept as an old verify key)")

    async def server_stats(self, inv: Invocation) -> Reply:
        users = await self.d.users.list_user_ids()
        rooms = await self.d.event_store.rooms.all_rooms()
        uptime = (await self.server_uptime(inv)).plain
        rows = [("local users", len(users)), ("rooms", len(rooms)), ("uptime", uptime.split(": ", 1)[1])]
        return Reply.table("Server statistics", ["measure", "value"], rows)

    async def rooms_delete(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        if room_id == self.d.admin_room.room_id:
            raise CommandError("The admin room cannot be deleted")
        notes = await self._evict(room_id, "Room deleted by the server admins")
        await self.d.directory_store.set_public(room_id, False)
        aliases = await self.d.aliases.aliases_for_room(room_id)
        for alias in aliases:
            await self.d.aliases.delete_alias(alias)
        if inv.flag("ban"):
            await self.d.admin_store.set_banned([room_id], True)
        text = (
            f"Deleted {room_id}: local users left, unpublished, "
            f"{len(aliases)} alias(es) removed" + (", banned" if inv.flag("ban") else "")
        )
        return Reply.text(text + ("\n" + "\n".join(notes) if notes else ""))

    async def _evict(self, room_id: str, reason: str) -> list[str]:
        """Make every local member leave (and every local invite be rejected)."""
        notes = []
        members = await self.d.event_store.members(room_id, "join")
        members += await self.d.event_store.members(room_id, "invite")
        for user_id in members:
            if user_id.partition(":")[2] != self.d.server_name:
                continue
            try:
                await self.d.membership.leave(Requester(user_id, None), room_id, reason)
            except MatrixError as e:
                notes.append(f"{user_id} could not leave {room_id}: {e.msg}")
        return notes

    async def media_info(self, inv: Invocation) -> Reply:
        m = _MXC.match(inv.args[0])
        if m is None:
            raise CommandError(f"{inv.args[0]} is not an mxc:// URI")
        meta = await self.d.media_store.get(m.group(1), m.group(2))
        if meta is None:
            raise CommandError(f"No media {inv.args[0]} here")
        rows = sorted((k, v) for k, v in meta.items())
        return Reply.table(f"Media {inv.args[0]}", ["field", "value"], rows)

    # -- server: backups, registration, shutdown

    def _backup_dir(self) -> str:
        path = self.d.config.database_backup_path
        if not path:
            raise CommandError("Set database_backup_path in the configuration to make backups")
        return path

    def _backups(self) -> list[str]:
        path = self._backup_dir()
        if not os.path.isdir(path):
            return []
        names = [n for n in os.listdir(path) if n.startswith("conduit-backup-")]
        # Oldest first: by time, then by the sequence number of same-second backups.
        return sorted(names, key=lambda n: (n.split(".")[0], int(n.split(".")[1]) if "." in n else 1))

    async def server_backup(self, inv: Invocation) -> Reply:
        path = self._backup_dir()
        name = time.strftime("conduit-backup-%Y%m%dT%H%M%S", time.gmtime(self.d.clock_ms() / 1000))
        target = os.path.join(path, name)
        n = 1
        while os.path.exists(target):
            n += 1
            target = os.path.join(path, f"{name}.{n}")
        await self.d.backup(target)
        keep = max(1, int(self.d.config.database_backups_to_keep or 1))
        old = self._backups()[:-keep]
        for n in old:
            await deferToThread(shutil.rmtree, os.path.join(path, n), True)
        return Reply.text(f"Backup written to {target}" + (f"; removed {len(old)} old backup(s)" if old else ""))

    async def server_list_backups(self, inv: Invocation) -> Reply:
        path = self._backup_dir()
        rows = []
        for n in self._backups():
            full = os.path.join(path, n)
            size = sum(
                os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(full) for f in files
            )
            rows.append((n, size))
        return Reply.table(f"Backups in {path}", ["backup", "bytes"], rows)

    async def server_allow_registration(self, inv: Invocation) -> Reply:
        value = inv.args[0].lower()
        if value not in ("true", "false", "on", "off", "yes", "no"):
            raise CommandError("Usage: allow-registration true|false")
        allow = value in ("true", "on", "yes")
        has_token = any("registration_token" in stage for flow in self.d.registration.flows() for stage in flow)
        if allow and not has_token and not inv.flag("open"):
            raise CommandError(
                "No registration token is configured: anyone could register. "
                "Add --open to allow that anyway"
            )
        self.d.registration.set_allow_registration(allow)
        return Reply.text(
            f"Registration is now {'open' if allow else 'closed'} (until restart: not persisted)"
        )

    async def server_shutdown(self, inv: Invocation) -> Reply:
        self.d.shutdown()
        return Reply.text("Shutting down")

    # -- debug

    def _json_body(self, inv: Invocation) -> dict[str, Any]:
        try:
            value = json.loads(inv.need_body())
        except ValueError as e:
            raise CommandError(f"The code block is not JSON: {e}") from None
        if not isinstance(value, dict):
            raise CommandError("The code block must hold a JSON object")
        return value

    async def debug_get_pdu(self, inv: Invocation) -> Reply:
        event_id = inv.args[0]
        if len(inv.args) > 1:
            return await self._remote_pdu(event_id, inv.args[1])
        event = await self.d.event_store.get_event(event_id)
        if event is None:
            raise CommandError(f"No event {event_id} here: name a server to fetch it from")
        return Reply.code(f"PDU {event.event_id}:", json.dumps(event.pdu, indent=2, sort_keys=True))

    async def _remote_pdu(self, event_id: str, server: str) -> Reply:
        """
        C{GET /_matrix/federation/v1/event/{eventId}} from C{server}
        (server-server-api "Retrieving events"), shown with the outcome of
        the checks on receipt (format, event ID, signatures, content hash)
        when the room is known here; nothing is stored.
        """
        if not is_valid_server_name(server):
            raise CommandError(f"{server} is not a server name")
        path = "/_matrix/federation/v1/event/" + quote(event_id, safe="")
        try:
            answer = await self.d.federation_client.get_json(server, path)
        except Exception as e:
            raise CommandError(f"{server} did not give {event_id}: {e}") from None
        pdus = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(pdus, list) or len(pdus) != 1 or not isinstance(pdus[0], dict):
            raise CommandError(f"{server} answered without exactly one PDU")
        pdu = pdus[0]
        room_id = pdu.get("room_id")
        room = await self.d.event_store.get_room(room_id) if isinstance(room_id, str) else None
        if room is None:
            verdict = "room unknown here: not checked"
        else:
            try:
                checked = await check_pdu(self.d.keyring, room.room_id, room.version, pdu)
            except PduError as e:
                verdict = f"fails the checks on receipt: {e.reason}"
            else:
                if checked.event_id != event_id:
                    verdict = f"is {checked.event_id}, not the event asked for"
                elif not check_content_hash(pdu):
                    verdict = "content hash mismatch: would be kept redacted"
                else:
                    verdict = "signatures and content hash valid"
        return Reply.code(
            f"PDU {event_id} from {server} ({verdict}):", json.dumps(pdu, indent=2, sort_keys=True)
        )

    async def debug_auth_chain(self, inv: Invocation) -> Reply:
        start = await self.d.event_store.get_event(inv.args[0])
        if start is None:
            raise CommandError(f"No event {inv.args[0]} here")
        seen: set[str] = set()
        todo = list(start.auth_event_ids())
        missing = 0
        began = time.monotonic()
        while todo:
            event_id = todo.pop()
            if event_id in seen:
                continue
            seen.add(event_id)
            event = await self.d.event_store.get_event(event_id)
            if event is None:
                missing += 1
                continue
            todo.extend(event.auth_event_ids())
        took = time.monotonic() - began
        return Reply.text(
            f"Auth chain of {start.event_id}: {len(seen)} event(s), {missing} missing here, "
            f"walked in {took * 1000:.1f} ms"
        )

    async def debug_parse_pdu(self, inv: Invocation) -> Reply:
        pdu = self._json_body(inv)
        version = self._room_version(inv.args[0] if inv.args else "10")
        try:
            validate_pdu(pdu, version)
            event_id = compute_event_id(pdu, version)
        except Exception as e:
            raise CommandError(f"Invalid PDU for room version {version.identifier}: {e}") from None
        return Reply.text(f"Valid PDU for room version {version.identifier}; event ID {event_id}")

    def _room_version(self, identifier: str) -> Any:
        try:
            return get_room_version(identifier)
        except Exception:
            raise CommandError(f"Unknown room version {identifier!r}") from None

    async def debug_sign_json(self, inv: Invocation) -> Reply:
        keys = self.d.server_keys()
        signed = sign_json(self._json_body(inv), keys.signing_key, self.d.server_name)
        return Reply.code("Signed:", encode_canonical_json(signed).decode("utf-8"))

    async def debug_verify_json(self, inv: Invocation) -> Reply:
        obj = self._json_body(inv)
        signatures = obj.get("signatures")
        if not isinstance(signatures, dict) or not signatures:
            raise CommandError("The object has no signatures")
        results = []
        for server in sorted(signatures):
            try:
                await self.d.keyring.verify_json_for_server(server, obj)
                results.append(f"{server}: signature valid")
            except Exception as e:
                results.append(f"{server}: {type(e).__name__}: {e}")
        return Reply.text("\n".join(results))

    async def debug_hash_and_sign(self, inv: Invocation) -> Reply:
        version = self._room_version(inv.args[0])
        pdu = self._json_body(inv)
        keys = self.d.server_keys()
        try:
            hash_and_sign_event(pdu, version, keys.signing_key, self.d.server_name)
        except Exception as e:
            raise CommandError(f"Cannot hash and sign: {e}") from None
        return Reply.code("Hashed and signed:", json.dumps(pdu, indent=2, sort_keys=True))

    # -- registration tokens

    async def tokens_create(self, inv: Invocation) -> Reply:
        token = inv.args[0] if inv.args else secrets.token_urlsafe(18)
        if not re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", token):
            raise CommandError("A token is 1-64 characters of A-Z, a-z, 0-9, '.', '_', '~', '-'")
        uses = inv.flag("uses")
        try:
            uses_allowed = int(uses) if isinstance(uses, str) else None
        except ValueError:
            raise CommandError("--uses needs a number") from None
        if uses_allowed is not None and uses_allowed < 1:
            raise CommandError("--uses must be at least 1")
        expires = inv.flag("expires")
        now = self.d.clock_ms()
        expiry = now + parse_duration_ms(expires) if isinstance(expires, str) else None
        if not await self.d.registration_tokens.create(token, uses_allowed, expiry, now):
            raise CommandError(f"Token {token} exists already")
        return Reply.text(f"Registration token created: {token}")

    async def tokens_list(self, inv: Invocation) -> Reply:
        now = self.d.clock_ms()
        rows = []
        for token, info in self.d.registration_tokens.all().items():
            uses = info.get("uses_allowed")
            left = "unlimited" if uses is None else max(0, uses - info.get("completed", 0))
            expiry = info.get("expiry_time")
            expires = "never" if expiry is None else time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiry / 1000)
            )
            valid = self.d.registration_tokens.valid(token, now)
            rows.append((token, info.get("completed", 0), left, expires, "yes" if valid else "no"))
        return Reply.table("Registration tokens", ["token", "used", "uses left", "expires", "valid"], rows)

    async def tokens_delete(self, inv: Invocation) -> Reply:
        if not await self.d.registration_tokens.delete(inv.args[0]):
            raise CommandError(f"No token {inv.args[0]}")
        return Reply.text(f"Deleted registration token {inv.args[0]}")

    # -- caches and device lists

    async def server_clear_caches(self, inv: Invocation) -> Reply:
        caches, entries = clear_all()
        return Reply.text(f"Cleared {entries} entries from {caches} in-memory caches")

    async def debug_force_device_lists(self, inv: Invocation) -> Reply:
        count = 0
        for user_id in await self.d.users.list_user_ids():
            acc = await self.d.users.get_account(user_id)
            if acc is None or acc.deactivated:
                continue
            await self.d.device_keys_changed(user_id)
            count += 1
        return Reply.text(
            f"Marked the device lists of {count} local users changed; "
            "clients query their keys again"
        )

    # -- appservices

    async def appservices_register(self, inv: Invocation) -> Reply:
        try:
            reg = await self.d.appservices().register(inv.need_body())
        except RegistrationError as e:
            raise CommandError(f"Registration refused: {e}") from None
        return Reply.text(f"Appservice {reg.id} registered (sender {reg.sender}); it is active now")

    async def appservices_unregister(self, inv: Invocation) -> Reply:
        try:
            await self.d.appservices().unregister(inv.args[0])
        except KeyError:
            raise CommandError(f"No appservice {inv.args[0]}") from None
        except RegistrationError as e:
            raise CommandError(str(e)) from None
        return Reply.text(f"Appservice {inv.args[0]} unregistered")

    async def appservices_list(self, inv: Invocation) -> Reply:
        rows = [
            (reg.id, reg.sender, reg.url or "(no URL)",
             ", ".join(n.regex.pattern for n in reg.users) or "-")
            for reg in self.d.appservices().list()
        ]
        return Reply.table("Appservices", ["id", "sender", "url", "user namespaces"], rows)

    async def appservices_show(self, inv: Invocation) -> Reply:
        try:
            text = self.d.appservices().show(inv.args[0])
        except KeyError:
            raise CommandError(f"No appservice {inv.args[0]}") from None
        return Reply.code(f"Registration of {inv.args[0]}:", text)

    # -- logging

    async def server_log_level(self, inv: Invocation) -> Reply:
        spec = inv.args[0] if inv.args else self.d.config.log
        try:
            self.d.configure_logging(spec)
        except ValueError as e:
            raise CommandError(f"Bad log filter {spec!r}: {e}") from None
        return Reply.text(f"Log filter is now {spec!r} (until restart)")

    # -- federation

    async def federation_ping(self, inv: Invocation) -> Reply:
        server = inv.args[0]
        if not is_valid_server_name(server):
            raise CommandError(f"{server} is not a server name")
        began = time.monotonic()
        try:
            answer = await self.d.federation_client.get_json(server, "/_matrix/federation/v1/version")
        except Exception as e:
            raise CommandError(f"{server} did not answer: {e}") from None
        took = (time.monotonic() - began) * 1000
        version = answer.get("server", {}) if isinstance(answer, dict) else {}
        return Reply.text(
            f"{server} answered in {took:.0f} ms: {version.get('name', '?')} {version.get('version', '?')}"
        )

    async def federation_support(self, inv: Invocation) -> Reply:
        server = inv.args[0]
        if not is_valid_server_name(server):
            raise CommandError(f"{server} is not a server name")
        url = f"https://{server}/.well-known/matrix/support"
        try:
            response = await self.d.http_client.request("GET", url, max_size=64 * 1024)
        except Exception as e:
            raise CommandError(f"Could not fetch {url}: {e}") from None
        if response.code != 200:
            raise CommandError(f"{url} answered {response.code}")
        try:
            document = json.loads(response.body)
        except ValueError:
            raise CommandError(f"{url} is not JSON") from None
        return Reply.code(f"Support of {server}:", json.dumps(document, indent=2, sort_keys=True))

    async def federation_remote_user(self, inv: Invocation) -> Reply:
        user_id = inv.args[0]
        if not user_id.startswith("@") or ":" not in user_id:
            raise CommandError(f"{user_id} is not a user ID")
        if user_id.partition(":")[2] == self.d.server_name:
            raise CommandError(f"{user_id} is a local user: use users list-joined-rooms")
        rows = []
        for rec in await self.d.event_store.rooms_for_user(user_id, ("join",)):
            name = (await self._state(rec.room_id, "m.room.name")).get("name", "")
            rows.append((rec.room_id, name))
        return Reply.table(f"Rooms shared with {user_id}", ["room", "name"], rows)


    async def federation_disable_room(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        if await self.d.admin_store.is_federation_disabled(room_id):
            raise CommandError(f"Incoming federation of {room_id} is already disabled")
        await self.d.admin_store.set_federation_disabled([room_id], True)
        return Reply.text(
            f"Incoming federation of {room_id} disabled: its PDUs and EDUs from other servers "
            "are dropped and their joins, leaves, knocks and invites refused"
        )

    async def federation_enable_room(self, inv: Invocation) -> Reply:
        room_id = await self.room_id(inv.args[0])
        if not await self.d.admin_store.is_federation_disabled(room_id):
            raise CommandError(f"Incoming federation of {room_id} is not disabled")
        await self.d.admin_store.set_federation_disabled([room_id], False)
        return Reply.text(f"Incoming federation of {room_id} enabled again")

    async def federation_list_disabled(self, inv: Invocation) -> Reply:
        rows = [(r,) for r in await self.d.admin_store.federation_disabled_room_ids()]
        return Reply.table("Rooms with incoming federation disabled", ["room"], rows)

    async def federation_incoming(self, inv: Invocation) -> Reply:
        now = time.monotonic()
        rows = [
            (i.room_id, str(i.pdus), i.event_id or "(checking signatures / waiting)",
             f"{now - i.since:.1f} s" if i.event_id else "")
            for i in self.d.federation_incoming()
        ]
        return Reply.table(
            "Rooms whose incoming federation is being processed",
            ["room", "PDUs", "processing", "for"], rows,
        )


def command_table(deps: AdminDeps) -> Group:
    """The root group: every command the admin room knows."""
    c = AdminCommands(deps)
    users = Group("users", "local user accounts", (
        Command("list", "list local users", c.users_list, aliases=("list-local-users",)),
        Command("create", "create a user (password generated, 25 characters, if not given)",
                c.users_create, ("username", "[password]"), aliases=("create-user",)),
        Command("reset-password", "set a new password (generated if not given)",
                c.users_reset_password, ("user", "[password]")),
        Command("deactivate", "deactivate a user (leaves its rooms, ends its sessions)",
                c.users_deactivate, ("user",), {"leave-rooms": False}, aliases=("deactivate-user",)),
        Command("deactivate-all", "deactivate the users listed one per line",
                c.users_deactivate_all, (), {"leave-rooms": False, "force": False},
                body="user IDs", aliases=("deactivate-all",)),
        Command("make-admin", "make a user a server admin and join it to the admin room",
                c.users_make_admin, ("user",), aliases=("make-user-admin",)),
        Command("revoke-admin", "take server admin rights away", c.users_revoke_admin, ("user",)),
        Command("list-joined-rooms", "rooms a user is joined to", c.users_joined_rooms, ("user",)),
        Command("list-devices", "a user's devices", c.users_devices, ("user",)),
        Command("logout-all", "log a user out of every device", c.users_logout_all, ("user",)),
    ))
    rooms = Group("rooms", "rooms on this server", (
        Command("list", "list rooms (members, name, alias, version)", c.rooms_list,
                aliases=("list-rooms",)),
        Command("info", "details of a room", c.rooms_info, ("room",)),
        Command("state", "the current state of a room (JSON)", c.rooms_state, ("room",)),
        Group("alias", "local room aliases", (
            Command("set", "point an alias to a room", c.alias_set, ("alias", "room"), {"force": False}),
            Command("remove", "delete an alias", c.alias_remove, ("alias",)),
            Command("list", "local aliases (of one room or all)", c.alias_list, ("[room]",)),
        )),
        Group("directory", "the published room directory", (
            Command("publish", "publish a room", c.directory_publish, ("room",)),
            Command("unpublish", "remove a room from the directory", c.directory_unpublish, ("room",)),
            Command("list", "published rooms", c.directory_list),
        )),
        Group("moderation", "banned rooms", (
            Command("ban-room", "ban rooms: local users leave, joins and invites refused (admins exempt)",
                    c.moderation_ban, ("room...",)),
            Command("ban-list-of-rooms", "ban the rooms listed one per line", c.moderation_ban_list,
                    body="room IDs or aliases"),
            Command("unban-room", "lift a room ban", c.moderation_unban, ("room",)),
            Command("list-banned", "banned rooms", c.moderation_list, aliases=("list-banned-rooms",)),
        )),
        Command("delete", "delete a room: local users leave, unpublished, aliases removed",
                c.rooms_delete, ("room",), {"ban": False}),
    ))
    media = Group("media", "media repository", (
        Command("delete", "delete one media item", c.media_delete, ("mxc",)),
        Command("delete-list", "delete the media listed one MXC URI per line", c.media_delete_list,
                body="MXC URIs", aliases=("purge-media-from-list",)),
        Command("info", "details of a media item", c.media_info, ("mxc",)),
        Command("list", "media newest first (local uploads and cached remote media)", c.media_list,
                options={"user": True, "since": True}),
        Command("delete-past-remote", "delete cached remote media fetched longer ago than a duration "
                "(e.g. 30d); it is fetched again when asked for", c.media_delete_past_remote,
                ("duration",)),
    ))
    server = Group("server", "the server itself", (
        Command("stats", "users, rooms, uptime", c.server_stats),
        Command("uptime", "time since start", c.server_uptime),
        Command("memory-usage", "memory used by the process", c.server_memory, aliases=("memory-usage",)),
        Command("show-config", "the configuration (secrets redacted)", c.server_show_config,
                aliases=("show-config",)),
        Command("rotate-signing-key", "replace the server's signing key", c.server_rotate_key),
        Command("backup", "online backup into database_backup_path (keeps database_backups_to_keep)",
                c.server_backup, aliases=("backup-database",)),
        Command("list-backups", "backups in database_backup_path", c.server_list_backups,
                aliases=("list-backups",)),
        Command("allow-registration", "open or close registration until restart",
                c.server_allow_registration, ("true|false",), {"open": False}),
        Command("shutdown", "stop the server", c.server_shutdown),
        Command("change-log-level", "set the log filter until restart (e.g. debug or info,conduit_tw.api=debug)",
                c.server_log_level, ("filter",)),
        Command("reload-log-level", "apply the configured log filter again", c.server_log_level),
        Command("clear-caches", "empty the in-memory caches (they refill from the database)",
                c.server_clear_caches, aliases=("clear-database-caches",)),
    ))
    federation = Group("federation", "federation with other servers", (
        Command("ping", "time a server's /_matrix/federation/v1/version", c.federation_ping, ("server",)),
        Command("fetch-support-well-known", "a server's /.well-known/matrix/support",
                c.federation_support, ("server",)),
        Command("remote-user-in-rooms", "rooms here a remote user is joined to",
                c.federation_remote_user, ("user",)),
        Command("disable-room", "stop handling incoming federation (PDUs, EDUs, joins) for a room",
                c.federation_disable_room, ("room",), aliases=("disable-room",)),
        Command("enable-room", "resume incoming federation for a room", c.federation_enable_room,
                ("room",), aliases=("enable-room",)),
        Command("list-disabled-rooms", "rooms whose incoming federation is disabled",
                c.federation_list_disabled),
        Command("incoming", "rooms whose incoming PDUs are being processed now", c.federation_incoming,
                aliases=("incoming-federation",)),
    ))
    appservices = Group("appservices", "application services", (
        Command("register", "register an appservice (its registration YAML in a code block)",
                c.appservices_register, body="registration YAML", aliases=("register-appservice",)),
        Command("unregister", "unregister an appservice", c.appservices_unregister, ("id",),
                aliases=("unregister-appservice",)),
        Command("list", "registered appservices", c.appservices_list, aliases=("list-appservices",)),
        Command("show", "an appservice's registration", c.appservices_show, ("id",),
                aliases=("show-appservice-config",)),
    ))
    tokens = Group("tokens", "registration tokens (beyond the config's registration_token)", (
        Command("create", "create a token (random if not given); registration needs allow_registration",
                c.tokens_create, ("[token]",), {"uses": True, "expires": True}),
        Command("list", "tokens with their uses left and expiry", c.tokens_list),
        Command("delete", "delete a token", c.tokens_delete, ("token",)),
    ))
    debug = Group("debug", "debugging", (
        Command("get-pdu", "an event as stored (JSON), or as a server serves it (GET /event, checked)",
                c.debug_get_pdu, ("event_id", "[server]"), aliases=("get-pdu", "get-remote-pdu")),
        Command("get-auth-chain", "walk an event's auth chain", c.debug_auth_chain, ("event_id",),
                aliases=("get-auth-chain",)),
        Command("parse-pdu", "check a PDU and compute its event ID", c.debug_parse_pdu,
                ("[room_version]",), body="PDU JSON", aliases=("parse-pdu",)),
        Command("sign-json", "sign a JSON object with the server's key", c.debug_sign_json,
                body="JSON object", aliases=("sign-json",)),
        Command("verify-json", "verify the signatures of a JSON object", c.debug_verify_json,
                body="signed JSON object", aliases=("verify-json",)),
        Command("hash-and-sign-event", "add the content hash and the server's signature to an event",
                c.debug_hash_and_sign, ("room_version",), body="event JSON"),
        Command("force-device-list-updates",
                "mark every local user's device list changed (clients query their keys again)",
                c.debug_force_device_lists),
    ))
    return Group("admin", "server administration", (
        users, rooms, media, server, federation, appservices, tokens, debug,
    ))
