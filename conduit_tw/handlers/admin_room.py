"""
The admin room (docs/admin.md): the server's bot user
C{@conduit:<server_name>} and the private room C{#admins:<server_name>},
where server admins run commands (L{conduit_tw.handlers.admin_commands}).

- On first start the bot account (no password: not login-able, unless
  C{emergency_password} is set) and the room are created; the room stays
  invite-only, unpublished, and its history never world-readable: events
  and directory changes that would alter that are refused (403).
- The first user who registers (the one made a server admin) is invited
  and joined with power level 100; C{users make-admin} does the same later.
- A command is read from an C{m.text} message in the room by a server
  admin, once the message is durable (an L{EventStore} persist hook), and
  run on a later reactor turn: the sender's request never waits for it. The
  reply is an C{m.notice} from the bot in reply to the command
  (client-server-api "Rich replies"); a failing command answers its error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList

from conduit_tw.errors import MatrixError, forbidden
from conduit_tw.handlers.admin_commands import (
    Command, CommandError, Group, NotAvailable, Reply, resolve, split_message,
)
from conduit_tw.handlers.auth import Requester
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.users import Account

if TYPE_CHECKING:
    from conduit_tw.handlers.devices import DeviceHandler
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.handlers.membership import MembershipHandler
    from conduit_tw.handlers.passwords import Passwords
    from conduit_tw.handlers.rooms import RoomCreationHandler
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.admin import AdminStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.rooms import RoomInfo
    from conduit_tw.storage.stores.timeline import StoredEvent
    from conduit_tw.storage.stores.users import UserStore
    from conduit_tw.storage.txn import StoreTxn
    from conduit_tw.events.event import Event

log = get_logger("conduit_tw.admin")

BOT_LOCALPART = "conduit"
ADMIN_ALIAS_LOCALPART = "admins"
ADMIN_POWER = 100


@dataclass(frozen=True)
class AdminRoomDeps:
    """What the admin room needs from the rest of the server."""

    server_name: str
    store: "AdminStore"
    users: "UserStore"
    event_store: "EventStore"
    events: "EventHandler"
    membership: "MembershipHandler"
    room_creation: "RoomCreationHandler"
    aliases: "AliasStore"
    devices: "DeviceHandler"
    passwords: "Passwords"
    clock_ms: Callable[[], int]
    #: C{reactor.callLater}: commands run on a later reactor turn.
    call_later: Callable[..., Any]


class AdminRoom:
    """See the module docstring."""

    def __init__(
        self,
        deps: AdminRoomDeps,
        emergency_password: str | None = None,
        log_guest_registrations: bool = False,
    ) -> None:
        self.deps = deps
        self.bot = f"@{BOT_LOCALPART}:{deps.server_name}"
        self.alias = f"#{ADMIN_ALIAS_LOCALPART}:{deps.server_name}"
        self.emergency_password = emergency_password
        #: C{log_guest_registrations}: announce guests too.
        self.log_guest_registrations = log_guest_registrations
        #: Builds the root of the command table (set by the wiring); called
        #: on the first command, so a server never administered through the
        #: room does not load the commands' code (docs/architecture.md,
        #: "Memory floor").
        self.command_table: Callable[[], Group] = lambda: Group("admin", "server administration")
        self._commands: Group | None = None
        self.room_id: str | None = None
        self._running: set[Deferred[None]] = set()
        self._pending: dict[object, tuple[Any, Callable[[], None]]] = {}
        #: With C{auto_deactivate_banned_room_attempts}: deactivates a user.
        self.auto_deactivate: Callable[[str], Any] | None = None

    @property
    def commands(self) -> Group:
        """The root of the command table, built by L{command_table} on first use."""
        if self._commands is None:
            self._commands = self.command_table()
        return self._commands

    # -- bootstrap

    async def setup(self) -> None:
        """Create the bot and the room if missing; apply C{emergency_password}."""
        d = self.deps
        account = await d.users.get_account(self.bot)
        if account is None:
            account = Account(user_id=self.bot, created_ts=d.clock_ms(), is_admin=True)
            await d.users.create_account(account, displayname="Conduit")
        await self._apply_emergency_password(account)
        self.room_id = await d.store.admin_room_id()
        if self.room_id is None:
            self.room_id = await d.room_creation.create_room(
                Requester(self.bot, None),
                {
                    "preset": "private_chat",
                    "visibility": "private",
                    "name": f"{d.server_name} Admin Room",
                    "topic": f"Manage {d.server_name} | Run commands prefixed with `!admin` | "
                    "Run `!admin help` for help",
                    "initial_state": [
                        {"type": "m.room.history_visibility", "content": {"history_visibility": "shared"}},
                        {"type": "m.room.guest_access", "content": {"guest_access": "forbidden"}},
                    ],
                },
            )
            await d.store.set_admin_room_id(self.room_id)
            # The alias is the server's own: made directly, so that
            # forbidden_alias_names (meant for users) cannot refuse it.
            if await d.aliases.create_alias(self.alias, self.room_id, self.bot):
                await d.events.set_state(
                    self.room_id, self.bot, "m.room.canonical_alias", "", {"alias": self.alias}
                )
            log.info("Created the admin room {room} ({alias})", room=self.room_id, alias=self.alias)

    async def _apply_emergency_password(self, account: Account) -> None:
        """The bot's password is C{emergency_password}; unset, the bot cannot log in."""
        d = self.deps
        if self.emergency_password:
            if not await d.passwords.verify(account.password_hash, self.emergency_password):
                digest = await d.passwords.hash(self.emergency_password)
                await d.users.update_account(self.bot, password_hash=digest)
            log.warn("emergency_password is set: {bot} can log in; unset it when done", bot=self.bot)
        elif account.password_hash is not None:
            await d.users.update_account(self.bot, password_hash=None)
            await d.devices.delete_all_devices(self.bot)

    # -- admins and the room

    async def user_registered(self, user_id: str, is_guest: bool) -> None:
        """
        C{RegistrationHandler.on_registered}: the first user (made admin)
        joins the room; new users are announced there (guests only with
        C{log_guest_registrations}).
        """
        if user_id == self.bot or self.room_id is None:
            return
        if not is_guest and await self.deps.users.is_admin(user_id):
            await self.add_admin(user_id)
        if not is_guest or self.log_guest_registrations:
            kind = "Guest user" if is_guest else "New user"
            notice = Reply.text(f"{kind} {user_id} registered on this server")
            await self._announce(notice)

    async def _announce(self, notice: Reply) -> None:
        try:
            await self.reply(None, notice)
        except Exception:
            log.failure("Could not post to the admin room")

    async def add_admin(self, user_id: str) -> None:
        """Mark C{user_id} admin, join them to the admin room with power level 100."""
        d = self.deps
        await d.users.set_admin(user_id, True)
        assert self.room_id is not None
        membership = await d.event_store.membership(user_id, self.room_id)
        if membership != "join":
            if membership != "invite":
                await d.membership.invite(Requester(self.bot, None), self.room_id, user_id)
            await d.membership.join(Requester(user_id, None), self.room_id)
        await self._set_power(user_id, ADMIN_POWER)

    async def remove_admin(self, user_id: str) -> None:
        """Revoke admin rights, take the power level back and kick from the room."""
        d = self.deps
        await d.users.set_admin(user_id, False)
        assert self.room_id is not None
        await self._set_power(user_id, None)
        if await d.event_store.membership(user_id, self.room_id) in ("join", "invite"):
            await d.membership.kick(
                Requester(self.bot, None), self.room_id, user_id, "No longer a server admin"
            )

    async def _set_power(self, user_id: str, level: int | None) -> None:
        assert self.room_id is not None
        current = await self.deps.event_store.current_state_event(
            self.room_id, "m.room.power_levels", ""
        )
        content = dict(current.content) if current is not None else {}
        users = dict(content.get("users", {}))
        if level is None:
            users.pop(user_id, None)
        else:
            users[user_id] = level
        content["users"] = users
        await self.deps.events.set_state(
            self.room_id, self.bot, "m.room.power_levels", "", content
        )

    async def check_event(self, room: "RoomInfo", event: "Event") -> None:
        """
        C{EventHandler.validators}: the admin room stays invite-only, its
        history never world-readable (403 otherwise).
        """
        if room.room_id != self.room_id or event.state_key != "":
            return
        content = event.content
        if event.type == "m.room.join_rules" and content.get("join_rule") not in ("invite", None):
            raise forbidden("The admin room must stay invite-only")
        if (
            event.type == "m.room.history_visibility"
            and content.get("history_visibility") == "world_readable"
        ):
            raise forbidden("The admin room's history cannot be world-readable")

    async def check_banned_room(self, room: "RoomInfo", event: "Event") -> None:
        """
        C{EventHandler.validators}: no join or invite into a room banned by
        the admins (C{rooms moderation ban-room}); admins are exempt. With
        C{auto_deactivate_banned_room_attempts}, a non-admin who tries to
        join is deactivated.
        """
        if event.type != "m.room.member" or event.content.get("membership") not in ("join", "invite"):
            return
        if not await self.deps.store.is_banned(room.room_id):
            return
        if await self.deps.users.is_admin(event.sender):
            return
        if self.auto_deactivate is not None and event.content.get("membership") == "join":
            log.warn("Deactivating {user}: tried to join banned room {room}",
                     user=event.sender, room=room.room_id)
            deactivate, user_id = self.auto_deactivate, event.sender
            self._later(lambda: self._spawn(deactivate(user_id)))
        raise forbidden("This room is banned on this server")

    def check_publish(self, room_id: str) -> None:
        """C{DirectoryHandler.publish_checks}: the admin room is never published."""
        if room_id == self.room_id:
            raise forbidden("The admin room cannot be published in the room directory")

    async def whois(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """
        C{GET /admin/whois/{userId}} (client-server-api "Server
        administration"): the user's devices and their last connection.
        Server admins may ask about anyone, other users about themselves.
        """
        if requester.user_id != user_id and not await self.deps.users.is_admin(requester.user_id):
            raise forbidden("You are not a server admin")
        devices = {}
        for dev in await self.deps.devices.list_devices(user_id):
            connections = []
            if dev.last_seen_ts is not None:
                connections.append({"ip": dev.last_seen_ip, "last_seen": dev.last_seen_ts})
            devices[dev.device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}

    # -- commands

    def prefixes(self) -> list[str]:
        """What a command message starts with."""
        return ["!admin", self.bot + ":"]

    async def event_persisted(self, txn: "StoreTxn", event: "StoredEvent") -> None:
        """C{EventStore.persist_hooks}: a command runs once its message is durable."""
        if self.room_id is None or event.type != "m.room.message" or event.state_key is not None:
            return
        if event.room_id_or_create() != self.room_id:
            return
        content = event.content
        if content.get("msgtype") != "m.text" or not isinstance(content.get("body"), str):
            return
        if not content["body"].lstrip().startswith(tuple(self.prefixes())):
            return
        txn.after_commit(lambda: self._later(lambda: self._spawn(self._handle(event))))

    def _later(self, fn: Callable[[], None]) -> None:
        """Run C{fn} on a later reactor turn (or at L{drain}, whichever is first)."""
        def run() -> None:
            self._pending.pop(key, None)
            fn()

        key = object()
        self._pending[key] = (self.deps.call_later(0, run), run)

    def _spawn(self, coro: Any) -> None:
        """Run C{coro}, tracked until it ends (L{drain})."""
        d = Deferred.fromCoroutine(coro)
        self._running.add(d)
        d.addBoth(lambda r: self._running.discard(d))

    def drain(self) -> Deferred[Any]:
        """
        Fires once the commands and notices scheduled or running now are
        done (tests, shutdown): the scheduled ones are started at once.
        """
        for call, run in list(self._pending.values()):
            if call.active():
                call.cancel()
                run()
        return DeferredList(list(self._running))

    async def _handle(self, event: "StoredEvent") -> None:
        sender = event.sender
        if not await self.deps.users.is_admin(sender):
            log.info("Ignored an admin command from non-admin {user}", user=sender)
            return
        body = event.content["body"]
        try:
            reply = await self.run(sender, body)
        except Exception:
            log.failure("Admin command failed: {body}", body=body)
            reply = Reply.text("The command failed with an internal error (see the server log).")
        if reply is None:
            return
        try:
            await self.reply(event.event_id, reply)
        except Exception:
            log.failure("Could not send the admin room's reply")

    async def run(self, sender: str, body: str) -> Reply | None:
        """Parse and run one command message; its reply (None: not a command)."""
        try:
            parsed = split_message(body, self.prefixes())
            if parsed is None:
                return None
            tokens, code = parsed
            path, node, rest = resolve(self.commands, tokens)
            if isinstance(node, Group):
                return node.help(path)
            assert isinstance(node, Command)
            if rest == ["--help"]:
                return Reply.text(f"{node.usage(path)}\n{node.doc}")
            if node.unavailable or node.handler is None:
                raise NotAvailable(
                    f"{path}: not available yet ({node.unavailable or 'not implemented'})"
                )
            invocation = node.parse(sender, rest, code)
            log.info("Admin command by {user}: {path} {args}", user=sender, path=path, args=rest)
            return await node.handler(invocation)
        except CommandError as e:
            return Reply.text(str(e))
        except MatrixError as e:
            return Reply.text(f"{e.errcode}: {e.msg}")

    async def reply(self, in_reply_to: str | None, reply: Reply) -> None:
        """Send C{reply} as the bot's m.notice (in reply to C{in_reply_to})."""
        assert self.room_id is not None
        reply = reply.truncated()
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": reply.plain,
            "format": "org.matrix.custom.html",
            "formatted_body": reply.html,
        }
        if in_reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": in_reply_to}}
        await self.deps.events.send(self.room_id, self.bot, "m.room.message", content)
