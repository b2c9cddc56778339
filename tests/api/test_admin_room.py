"""
The admin room through the real message path: the bot and #admins are
created on first start, the first user is joined as an admin, commands sent
as m.text messages are answered by the bot's m.notice in reply (docs/admin.md).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from conduit_tw.handlers.admin_commands import MAX_REPLY_CHARS
from tests.api.accounts import AccountsTestCase
from tests.api.rooms import V3, RoomsTestCase, q


class AdminRoomTestCase(RoomsTestCase):
    """A server whose first user, alice, is the admin and in the admin room."""

    async def _start(self) -> None:
        await super()._start()
        self.alice, self.alice_token = await self.user("alice")
        self.room = self.hs.admin_room.room_id

    async def command(self, text: str, token: str | None = None, reply: bool = True, **extra: Any) -> dict[str, Any] | None:
        """Send C{text} to the admin room; the bot's reply content (None if none)."""
        event_id = await self.send_ok(
            token or self.alice_token, self.room, {"msgtype": "m.text", "body": text, **extra}
        )
        for _ in range(50):
            await deferLater(reactor, 0.01, lambda: None)
            await self.hs.admin_room.drain()
            found = await self.reply_to(event_id)
            if found is not None or (not reply and _ > 5):
                return found
        self.fail(f"no reply to {text!r}")

    async def reply_to(self, event_id: str) -> dict[str, Any] | None:
        for ev in await self.hs.event_store.latest_events(self.room, 20):
            rel = ev.content.get("m.relates_to", {}).get("m.in_reply_to", {})
            if ev.sender == self.hs.admin_room.bot and rel.get("event_id") == event_id:
                return ev.content
        return None

    async def body(self, text: str) -> str:
        content = await self.command(text)
        assert content is not None
        return content["body"]


class BootstrapTests(AdminRoomTestCase):
    async def test_bot_and_room(self) -> None:
        bot = self.hs.admin_room.bot
        self.assertEqual(bot, "@conduit:test")
        r = await self.request("GET", f"{V3}/directory/room/{q('#admins:test')}")
        self.assertEqual(r.json["room_id"], self.room)
        state = {(e["type"], e["state_key"]): e["content"] for e in await self.full_state(self.alice_token, self.room)}
        self.assertEqual(state[("m.room.join_rules", "")]["join_rule"], "invite")
        self.assertEqual(state[("m.room.history_visibility", "")]["history_visibility"], "shared")
        self.assertEqual(state[("m.room.member", self.alice)]["membership"], "join")
        self.assertEqual(state[("m.room.power_levels", "")]["users"][self.alice], 100)
        self.assertTrue(await self.hs.users.is_admin(self.alice))
        # Not login-able without emergency_password.
        r = await self.login("conduit", "")
        self.assertEqual(r.code, 403, r.body)

    async def test_second_user_not_admin(self) -> None:
        bob, _ = await self.user("bob")
        self.assertFalse(await self.hs.users.is_admin(bob))
        self.assertIsNone(await self.hs.event_store.membership(bob, self.room))

    async def test_room_stays_private(self) -> None:
        r = await self.put_state(self.alice_token, self.room, "m.room.join_rules", {"join_rule": "public"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.put_state(
            self.alice_token, self.room, "m.room.history_visibility", {"history_visibility": "world_readable"}
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request(
            "PUT", f"{V3}/directory/list/room/{q(self.room)}", {"visibility": "public"},
            access_token=self.alice_token,
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_restart_keeps_room(self) -> None:
        await self.restart()
        self.assertEqual(self.hs.admin_room.room_id, self.room)
        # The bot still answers commands in the same room after the restart.
        self.assertIn("Uptime", await self.body("!admin server uptime"))


class EmergencyPasswordTests(AdminRoomTestCase):
    config_overrides = {**RoomsTestCase.config_overrides, "emergency_password": "break glass"}

    async def test_bot_login(self) -> None:
        r = await self.login("conduit", "break glass")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@conduit:test")
        # The operator logged in as the bot runs commands with m.text.
        content = await self.command("!admin users list", token=r.json["access_token"])
        assert content is not None
        self.assertIn("@alice:test", content["body"])


    async def test_command_table_built_on_first_command(self) -> None:
        """The commands' table (and code) is built by the first command, then kept."""
        self.assertIsNone(self.hs.admin_room._commands)
        self.assertIn("Uptime", await self.body("!admin server uptime"))
        table = self.hs.admin_room._commands
        self.assertIsNotNone(table)
        self.assertIn("@alice:test", await self.body("!admin users list"))
        self.assertIs(self.hs.admin_room._commands, table)


class ParsingTests(AdminRoomTestCase):
    async def test_reply_shape(self) -> None:
        content = await self.command("!admin users list")
        assert content is not None
        self.assertEqual(content["msgtype"], "m.notice")
        self.assertEqual(content["format"], "org.matrix.custom.html")
        self.assertIn("<table>", content["formatted_body"])
        self.assertIn("@alice:test", content["body"])

    async def test_help_everywhere(self) -> None:
        top = await self.body("!admin help")
        for group in ("users", "rooms", "media", "server", "federation", "appservices"):
            self.assertIn(f"{group} ...", top)
        self.assertIn("users create <username> [password]", await self.body("!admin users help"))
        self.assertIn("users create <username> [password]", await self.body("!admin help users"))
        self.assertIn("rooms moderation ban-room", await self.body("!admin rooms moderation"))
        usage = await self.body("!admin users create --help")
        self.assertIn("password generated", usage)

    async def test_bot_mention_and_flat_alias(self) -> None:
        body = await self.body("@conduit:test: list-local-users")
        self.assertIn("@alice:test", body)
        body = await self.body("@conduit:test: create-user carol 'pass word'")
        self.assertIn("@carol:test", body)
        r = await self.login("carol", "pass word")
        self.assertEqual(r.code, 200, r.body)

    async def test_errors_answered(self) -> None:
        self.assertIn("Unknown command 'nope'", await self.body("!admin nope"))
        self.assertIn("Usage: create <username>", await self.body("!admin users create"))
        self.assertIn("Unknown option --bogus", await self.body("!admin users list --bogus"))
        self.assertIn("Cannot parse", await self.body("!admin users create 'unbalanced"))
        self.assertIn("M_USER_IN_USE", await self.body("!admin users create alice"))
        self.assertIn("needs a body", await self.body("!admin users deactivate-all"))
        # The bot still answers afterwards.
        self.assertIn("Uptime", await self.body("!admin server uptime"))

    def test_every_command_available(self) -> None:
        """Every command of the issue's list works now: none answers "not available yet"."""
        from conduit_tw.handlers.admin_groups import command_table

        root = command_table(None)  # type: ignore[arg-type]
        unavailable = [path for group in root.children for path, cmd in group.walk(group.name)
                       if cmd.unavailable]
        self.assertEqual(unavailable, [])

    async def test_non_admin_ignored(self) -> None:
        bob, bob_token = await self.user("bob")
        # Bob gets in somehow (an admin invites him).
        await self.invite(self.alice_token, self.room, bob)
        await self.join(bob_token, self.room)
        self.assertIsNone(await self.command("!admin users create mallory", token=bob_token, reply=False))
        self.assertFalse(await self.hs.users.exists("@mallory:test"))

    async def test_notice_and_plain_text_ignored(self) -> None:
        self.assertIsNone(await self.command("hello there", reply=False))
        event_id = await self.send_ok(
            self.alice_token, self.room, {"msgtype": "m.notice", "body": "!admin users list"}
        )
        await deferLater(reactor, 0.05, lambda: None)
        await self.hs.admin_room.drain()
        self.assertIsNone(await self.reply_to(event_id))

    async def test_long_output_truncated(self) -> None:
        for i in range(130):
            await self.hs.registration.create_user(f"@user{i:03d}{'x' * 200}:test", None)
        content = await self.command("!admin users list")
        assert content is not None
        self.assertIn("output truncated", content["body"])
        self.assertLess(len(content["body"]), MAX_REPLY_CHARS + 200)


class UserCommandTests(AdminRoomTestCase):
    async def test_create_generated_password(self) -> None:
        body = await self.body("!admin users create bob")
        password = body.rsplit(": ", 1)[1]
        self.assertEqual(len(password), 25)
        r = await self.login("bob", password)
        self.assertEqual(r.code, 200, r.body)

    async def test_reset_password(self) -> None:
        await self.user("bob")
        await self.body("!admin users reset-password bob 'new pw'")
        self.assertEqual((await self.login("bob", "new pw")).code, 200)
        self.assertEqual((await self.login("bob", "secret pw")).code, 403)

    async def test_deactivate(self) -> None:
        bob, bob_token = await self.user("bob")
        room = await self.create_room(bob_token)
        self.assertIn("Deactivated", await self.body("!admin users deactivate @bob:test --leave-rooms"))
        self.assertEqual((await self.login("bob")).code, 403)
        self.assertEqual(await self.hs.event_store.membership(bob, room), "leave")
        self.assertIn("already deactivated", await self.body("!admin users deactivate bob"))
        self.assertIn("yourself", await self.body("!admin users deactivate alice"))

    async def test_deactivate_all(self) -> None:
        await self.user("bob")
        await self.user("carol")
        body = await self.body("!admin users deactivate-all\n```\n@bob:test\ncarol\n@nobody:test\n```")
        self.assertIn("Deactivated 2 user(s)", body)
        self.assertIn("@nobody:test", body)
        self.assertEqual((await self.login("carol")).code, 403)

    async def test_make_and_revoke_admin(self) -> None:
        bob, bob_token = await self.user("bob")
        await self.body("!admin users make-admin bob")
        self.assertTrue(await self.hs.users.is_admin(bob))
        self.assertEqual(await self.hs.event_store.membership(bob, self.room), "join")
        # Bob can now run commands.
        self.assertIn("@bob:test", (await self.command("!admin users list", token=bob_token))["body"])
        await self.body("!admin users revoke-admin bob")
        self.assertFalse(await self.hs.users.is_admin(bob))
        self.assertEqual(await self.hs.event_store.membership(bob, self.room), "leave")

    async def test_rooms_devices_logout(self) -> None:
        bob, bob_token = await self.user("bob")
        room = await self.create_room(bob_token, name="Bob's room")
        body = await self.body("!admin users list-joined-rooms bob")
        self.assertIn(room, body)
        self.assertIn("Bob's room", body)
        self.assertIn("Devices of @bob:test (1)", await self.body("!admin users list-devices bob"))
        self.assertIn("1 device", await self.body("!admin users logout-all bob"))
        r = await self.request("GET", f"{V3}/account/whoami", access_token=bob_token)
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")


class RoomCommandTests(AdminRoomTestCase):
    async def test_list_info_state(self) -> None:
        room = await self.create_room(self.alice_token, name="Lobby")
        body = await self.body("!admin rooms list")
        self.assertIn(room, body)
        self.assertIn("Lobby", body)
        self.assertIn("#admins:test", body)
        self.assertIn("Lobby", await self.body(f"!admin rooms info {room}"))
        self.assertIn('"m.room.create"', await self.body(f"!admin rooms state {room}"))
        self.assertIn("M_NOT_FOUND", await self.body("!admin rooms info #nope:test"))

    async def test_alias(self) -> None:
        room = await self.create_room(self.alice_token)
        await self.body(f"!admin rooms alias set lobby {room}")
        r = await self.request("GET", f"{V3}/directory/room/{q('#lobby:test')}")
        self.assertEqual(r.json["room_id"], room)
        self.assertIn("#lobby:test", await self.body("!admin rooms alias list"))
        self.assertIn("--force", await self.body(f"!admin rooms alias set #lobby:test {self.room}"))
        await self.body("!admin rooms alias remove #lobby:test")
        r = await self.request("GET", f"{V3}/directory/room/{q('#lobby:test')}")
        self.assertEqual(r.code, 404)

    async def test_directory(self) -> None:
        room = await self.create_room(self.alice_token, name="Pub")
        await self.body(f"!admin rooms directory publish {room}")
        self.assertIn(room, await self.body("!admin rooms directory list"))
        await self.body(f"!admin rooms directory unpublish {room}")
        self.assertNotIn(room, await self.body("!admin rooms directory list"))
        self.assertIn("cannot be published", await self.body(f"!admin rooms directory publish {self.room}"))

    async def test_ban_room(self) -> None:
        bob, bob_token = await self.user("bob")
        carol, carol_token = await self.user("carol")
        room = await self.create_room(bob_token, preset="public_chat")
        body = await self.body(f"!admin rooms moderation ban-room {room}")
        self.assertIn("Banned", body)
        self.assertEqual(await self.hs.event_store.membership(bob, room), "leave")
        r = await self.join(carol_token, room, expect=403)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        self.assertIn(room, await self.body("!admin rooms moderation list-banned"))
        # Admins are exempt.
        await self.join(self.alice_token, room)
        await self.body(f"!admin rooms moderation unban-room {room}")
        await self.join(carol_token, room)
        self.assertIn("cannot be banned", await self.body(f"!admin rooms moderation ban-room {self.room}"))

    async def test_ban_list(self) -> None:
        _, bob_token = await self.user("bob")
        a = await self.create_room(bob_token)
        b = await self.create_room(bob_token)
        body = await self.body(f"!admin rooms moderation ban-list-of-rooms\n```\n{a}\n{b}\n```")
        self.assertIn("Banned 2 room(s)", body)
        self.assertTrue(await self.hs.admin_store.is_banned(b))


class AutoDeactivateTests(AdminRoomTestCase):
    config_overrides = {**RoomsTestCase.config_overrides, "auto_deactivate_banned_room_attempts": True}

    async def test_join_attempt_deactivates(self) -> None:
        bob, bob_token = await self.user("bob")
        room = await self.create_room(self.alice_token, preset="public_chat")
        await self.body(f"!admin rooms moderation ban-room {room}")
        await self.join(bob_token, room, expect=403)
        await deferLater(reactor, 0.05, lambda: None)
        account = await self.hs.users.get_account(bob)
        self.assertTrue(account.deactivated)


class ServerAndMediaCommandTests(AdminRoomTestCase):
    async def test_server(self) -> None:
        self.assertIn("Uptime", await self.body("!admin server uptime"))
        self.assertIn("VmRSS", await self.body("!admin server memory-usage"))
        self.assertIn("local users", await self.body("!admin server stats"))
        old = self.hs.server_keys.key_id
        body = await self.body("!admin server rotate-signing-key")
        self.assertNotEqual(self.hs.server_keys.key_id, old)
        self.assertIn(self.hs.server_keys.key_id, body)

    async def test_show_config_redacts(self) -> None:
        self.hs.config.turn_secret = "hunter2"  # type: ignore[misc]
        body = await self.body("!admin show-config")
        self.assertIn("server_name", body)
        self.assertNotIn("hunter2", body)
        self.assertIn("<redacted>", body)

    async def test_media_delete(self) -> None:
        mxcs = []
        for _ in range(3):
            r = await self.request(
                "POST", "/_matrix/media/v3/upload", raw_body=b"data", access_token=self.alice_token,
                headers={"Content-Type": "text/plain"},
            )
            self.assertEqual(r.code, 200, r.body)
            mxcs.append(r.json["content_uri"])
        self.assertIn("Deleted", await self.body(f"!admin media delete {mxcs[0]}"))
        self.assertIn("No media", await self.body(f"!admin media delete {mxcs[0]}"))
        body = await self.body("!admin media delete-list\n```\n" + "\n".join(mxcs[1:]) + "\nbogus\n```")
        self.assertIn("Deleted 2 media", body)
        self.assertIn("bogus", body)
        media_id = mxcs[1].rsplit("/", 1)[1]
        r = await self.request(
            "GET", f"/_matrix/client/v1/media/download/test/{media_id}", access_token=self.alice_token
        )
        self.assertEqual(r.code, 404)


class DocsTests(unittest.SynchronousTestCase):
    def test_docs_list_every_command(self) -> None:
        """docs/admin.md holds the reference generated from the command table."""
        import os

        from conduit_tw.handlers.admin_commands import reference_markdown
        from conduit_tw.handlers.admin_groups import command_table

        path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "admin.md")
        with open(path) as f:
            text = f.read()
        start = text.index("<!-- commands:")
        start = text.index("\n", start) + 1
        end = text.index("<!-- end of commands -->")
        self.assertEqual(text[start:end].strip(), reference_markdown(command_table(None)).strip())  # type: ignore[arg-type]


class MoreCommandTests(AdminRoomTestCase):
    async def test_rooms_delete(self) -> None:
        bob, bob_token = await self.user("bob")
        room = await self.create_room(bob_token, preset="public_chat", room_alias_name="gone")
        await self.request(
            "PUT", f"{V3}/directory/list/room/{q(room)}", {"visibility": "public"}, access_token=bob_token
        )
        body = await self.body(f"!admin rooms delete #gone:test --ban")
        self.assertIn("1 alias(es) removed", body)
        self.assertEqual(await self.hs.event_store.membership(bob, room), "leave")
        self.assertFalse(await self.hs.directory_store.is_public(room))
        r = await self.request("GET", f"{V3}/directory/room/{q('#gone:test')}")
        self.assertEqual(r.code, 404)
        await self.join(bob_token, room, expect=403)
        self.assertIn("cannot be deleted", await self.body(f"!admin rooms delete {self.room}"))

    async def test_media_info(self) -> None:
        r = await self.request(
            "POST", "/_matrix/media/v3/upload", raw_body=b"data", access_token=self.alice_token,
            headers={"Content-Type": "text/plain"},
        )
        body = await self.body(f"!admin media info {r.json['content_uri']}")
        self.assertIn("text/plain", body)
        self.assertIn("No media", await self.body("!admin media info mxc://test/nope"))

    async def test_allow_registration(self) -> None:
        self.assertIn("--open", await self.body("!admin server allow-registration true"))
        await self.body("!admin server allow-registration false")
        r = await self.request(
            "POST", f"{V3}/register", {"username": "late", "password": "pw", "auth": {"type": "m.login.dummy"}}
        )
        self.assertEqual(r.code, 403, r.body)
        await self.body("!admin server allow-registration true --open")
        await self.register("late")

    async def test_registrations_announced(self) -> None:
        await self.user("bob")
        await self.hs.admin_room.drain()
        bodies = [e.content.get("body") for e in await self.hs.event_store.latest_events(self.room, 5)]
        self.assertIn("New user @bob:test registered on this server", bodies)

    async def test_debug(self) -> None:
        event_id = await self.send_ok(self.alice_token, self.room, {"msgtype": "m.text", "body": "x"})
        body = await self.body(f"!admin debug get-pdu {event_id}")
        self.assertIn('"origin_server_ts"', body)
        self.assertIn("auth chain", (await self.body(f"!admin get-auth-chain {event_id}")).lower())
        self.assertIn("No event", await self.body("!admin debug get-pdu $nope"))
        signed = await self.body('!admin debug sign-json\n```\n{"a": 1}\n```')
        signed_json = signed.split("\n", 1)[1]
        self.assertIn("signatures", signed_json)
        verified = await self.body(f"!admin debug verify-json\n```\n{signed_json}\n```")
        self.assertIn("test: signature valid", verified)
        tampered = signed_json.replace('"a":1', '"a":2')
        self.assertNotIn("signature valid", await self.body(f"!admin debug verify-json\n```\n{tampered}\n```"))
        self.assertIn("not JSON", await self.body("!admin debug sign-json\n```\nnope\n```"))
        event = await self.hs.event_store.get_event(event_id)
        import json
        pdu = dict(event.pdu)
        self.assertIn(event_id, await self.body(f"!admin debug parse-pdu 10\n```\n{json.dumps(pdu)}\n```"))
        pdu.pop("hashes")
        pdu.pop("signatures")
        body = await self.body(f"!admin debug hash-and-sign-event 10\n```\n{json.dumps(pdu)}\n```")
        self.assertIn('"hashes"', body)
        self.assertIn("Unknown room version", await self.body("!admin debug hash-and-sign-event 99\n```\n{}\n```"))


class BackupTests(AdminRoomTestCase):
    async def _start(self) -> None:
        self.backups = self.mktemp()
        self.config_overrides = {
            **RoomsTestCase.config_overrides, "database_backup_path": self.backups,
            "database_backups_to_keep": 2,
        }
        await super()._start()

    async def test_backup_opens_and_holds_users(self) -> None:
        import os

        from conduit_tw.storage.database import database_ready, open_database
        from conduit_tw.storage.stores.users import UserStore

        await self.user("bob")
        for _ in range(3):
            self.assertIn("Backup written", await self.body("!admin server backup"))
            await deferLater(reactor, 0.002, lambda: None)
        listing = await self.body("!admin server list-backups")
        names = sorted(os.listdir(self.backups))
        self.assertEqual(len(names), 2)
        for name in names:
            self.assertIn(name, listing)
        options = {}
        if self.config.database_backend == "postgresql":
            # A PostgreSQL backup opens by restoring it into an empty database.
            from tests.postgresql import database_url

            options["database_url"] = database_url(self)
        db = open_database(self.config.database_backend, os.path.join(self.backups, names[-1]), options)
        try:
            await database_ready(db)
            users = await UserStore(db).list_user_ids()
        finally:
            db.close()
        self.assertIn("@bob:test", users)
        self.assertIn("@alice:test", users)


class NoBackupPathTests(AdminRoomTestCase):
    async def test_needs_path(self) -> None:
        self.assertIn("database_backup_path", await self.body("!admin server backup"))


class WhoisTests(AdminRoomTestCase):
    async def test_whois(self) -> None:
        bob, bob_token = await self.user("bob")
        await self.request("GET", f"{V3}/account/whoami", access_token=bob_token)
        await self.hs.devices.flush()
        r = await self.request("GET", f"{V3}/admin/whois/{q(bob)}", access_token=self.alice_token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], bob)
        (device,) = r.json["devices"].values()
        self.assertEqual(device["sessions"][0]["connections"][0]["ip"], "127.0.0.1")
        # Users may ask about themselves only.
        r = await self.request("GET", f"{V3}/admin/whois/{q(bob)}", access_token=bob_token)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", f"{V3}/admin/whois/{q(self.alice)}", access_token=bob_token)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", f"{V3}/admin/whois/{q(bob)}")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")


class TokenCommandTests(AdminRoomTestCase):
    """Admin-made registration tokens, honoured by /register (static token set too)."""

    config_overrides = {
        **RoomsTestCase.config_overrides,
        "yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse": False,
        "registration_token": "static-token",
    }

    async def _start(self) -> None:
        # The first user registers with the static token.
        await AccountsTestCase._start(self)
        self.alice, self.alice_token = await self.with_token("alice", "static-token")
        self.room = self.hs.admin_room.room_id

    async def with_token(self, name: str, token: str, expect: int = 200) -> tuple[str, str]:
        register = f"{V3}/register"
        r = await self.request("POST", register, {"username": name, "password": "secret pw"})
        sid = r.json["session"]
        r = await self.request("POST", register, {
            "username": name, "password": "secret pw",
            "auth": {"type": "m.login.registration_token", "token": token, "session": sid},
        })
        if r.code == 401 and "errcode" in r.json:
            self.assertEqual(expect, 401, r.body)
            return "", ""
        r = await self.request("POST", register, {
            "username": name, "password": "secret pw", "auth": {"type": "m.login.dummy", "session": sid},
        })
        self.assertEqual(r.code, expect, r.body)
        return r.json["user_id"], r.json["access_token"]

    async def test_tokens(self) -> None:
        self.assertIn("created: once", await self.body("!admin tokens create once --uses 1"))
        self.assertIn("exists already", await self.body("!admin tokens create once"))
        body = await self.body("!admin tokens create --expires 1h")
        generated = body.rsplit(": ", 1)[1]
        self.assertIn("Bad duration", await self.body("!admin tokens create x --expires soon"))
        r = await self.request("GET", f"/_matrix/client/v1/register/m.login.registration_token/validity?token=once")
        self.assertEqual(r.json, {"valid": True})
        await self.with_token("bob", "once")
        await self.with_token("carol", "once", expect=401)  # used up
        listing = await self.body("!admin tokens list")
        self.assertIn("once\t1\t0\tnever\tno", listing)
        self.assertIn(generated, listing)
        self.clock.advance(2 * 3600)
        await self.with_token("dave", generated, expect=401)  # expired
        self.assertIn("Deleted", await self.body("!admin tokens delete once"))
        self.assertIn("No token", await self.body("!admin tokens delete once"))
        # The static token still works.
        await self.with_token("erin", "static-token")


class FederationAndLoggingCommandTests(AdminRoomTestCase):
    config_overrides = {
        **RoomsTestCase.config_overrides, "forbidden_remote_server_names": ["evil.example"],
    }

    async def test_ping_refused_and_unreachable(self) -> None:
        body = await self.body("!admin federation ping evil.example")
        self.assertIn("did not answer", body)
        self.assertIn("forbidden_remote_server_names", body)
        self.assertIn("not a server name", await self.body("!admin federation ping 'a b'"))

    async def test_disable_room_persisted(self) -> None:
        from conduit_tw.storage.stores.admin import AdminStore

        room = await self.create_room(self.alice_token, room_alias_name="quiet")
        self.assertIn("disabled", await self.body("!admin disable-room #quiet:test"))
        # Persisted: a fresh store over the same database (as after a restart) sees it.
        self.assertEqual(await AdminStore(self.hs.db).federation_disabled_room_ids(), [room])
        self.assertIn("not known", await self.body("!admin federation disable-room !nope:test"))
        self.assertIn("Usage", await self.body("!admin federation enable-room"))
        await self.body(f"!admin federation enable-room {room}")
        self.assertEqual(await AdminStore(self.hs.db).federation_disabled_room_ids(), [])

    async def test_remote_user_in_rooms(self) -> None:
        self.assertIn("(0)", await self.body("!admin federation remote-user-in-rooms @x:elsewhere.example"))
        self.assertIn("local user", await self.body("!admin federation remote-user-in-rooms @alice:test"))

    async def test_log_level(self) -> None:
        from twisted.logger import LogLevel

        from conduit_tw.logging import configure, is_enabled
        self.addCleanup(configure, self.config.log)
        await self.body("!admin server change-log-level debug")
        self.assertTrue(is_enabled("conduit_tw.api", LogLevel.debug))
        self.assertIn("Bad log filter", await self.body("!admin server change-log-level loud"))
        await self.body("!admin server reload-log-level")
        self.assertFalse(is_enabled("conduit_tw.api", LogLevel.debug) and self.config.log == "info")


class SupportWellKnownTests(AdminRoomTestCase):
    """!admin federation fetch-support-well-known, against a real HTTPS server."""

    config_overrides = {
        **RoomsTestCase.config_overrides, "ip_range_denylist": [],
        "allow_invalid_tls_certificates": True,
    }

    async def test_fetch(self) -> None:
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        from tests.http.test_client import self_signed

        class Support(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                request.setHeader(b"content-type", b"application/json")
                return b'{"contacts": [{"role": "m.role.admin", "matrix_id": "@op:elsewhere"}]}'

        site = Site(Support())
        site.timeOut = None
        port = reactor.listenSSL(0, site, self_signed().options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(self.hs.http_client.close)
        body = await self.body(f"!admin federation fetch-support-well-known localhost:{port.getHost().port}")
        self.assertIn("@op:elsewhere", body)


class AppserviceCommandTests(AdminRoomTestCase):
    """The appservices group drives the appservice registry (issue 17)."""

    async def test_register_list_show_unregister(self) -> None:
        from tests.api.test_appservice_auth import AS_TOKEN, registration

        yaml_text = registration()
        body = await self.body("!admin appservices register\n```\n" + yaml_text + "\n```")
        self.assertIn("Appservice irc registered", body)
        reg = self.hs.appservices.get("irc")
        assert reg is not None
        self.assertEqual(reg.sender, "@_irc_bot:test")
        # Active at once: its as_token authenticates its sender.
        r = await self.request("GET", f"{V3}/account/whoami", access_token=AS_TOKEN)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@_irc_bot:test")
        listed = await self.body("!admin list-appservices")
        self.assertIn("irc", listed)
        self.assertIn("@_irc_.*:test", listed)
        self.assertIn("as_token: " + AS_TOKEN, await self.body("!admin appservices show irc"))
        # The same ID again is refused with the reason.
        self.assertIn("Registration refused", await self.body(
            "!admin register-appservice\n```\n" + yaml_text + "\n```"
        ))
        self.assertIn("Appservice irc unregistered", await self.body("!admin appservices unregister irc"))
        self.assertIsNone(self.hs.appservices.get("irc"))
        r = await self.request("GET", f"{V3}/account/whoami", access_token=AS_TOKEN)
        self.assertEqual(r.code, 401, r.body)
        self.assertIn("No appservice irc", await self.body("!admin appservices show irc"))
        self.assertIn("No appservice irc", await self.body("!admin unregister-appservice irc"))

    async def test_bad_yaml_refused(self) -> None:
        body = await self.body("!admin appservices register\n```\nid: [unclosed\n```")
        self.assertIn("Registration refused", body)
        self.assertIn("needs a body", await self.body("!admin appservices register"))
        self.assertEqual(self.hs.appservices.list(), [])


class CacheAndDeviceListCommandTests(AdminRoomTestCase):
    async def test_clear_caches(self) -> None:
        import re

        from conduit_tw.util import caches

        # Requests so far cached things (room heads, tokens, state).
        self.assertGreater(sum(len(c) for c in list(caches._ALL)), 0)
        body = await self.body("!admin server clear-caches")
        m = re.search(r"Cleared (\d+) entries from (\d+) in-memory caches", body)
        assert m is not None, body
        self.assertGreater(int(m.group(1)), 0)
        caches.clear_all()
        self.assertEqual(sum(len(c) for c in list(caches._ALL)), 0)
        # The server keeps working from the database (Conduit's name too).
        self.assertIn("Cleared", await self.body("!admin clear-database-caches"))
        self.assertIn("@alice:test", await self.body("!admin users list"))

    async def test_force_device_list_updates(self) -> None:
        bob, bob_token = await self.user("bob")
        await self.invite(self.alice_token, self.room, bob)
        await self.join(bob_token, self.room)
        r = await self.request("GET", f"{V3}/sync", access_token=bob_token)
        since = r.json["next_batch"]
        body = await self.body("!admin debug force-device-list-updates")
        self.assertIn("Marked the device lists of", body)
        r = await self.request("GET", f"{V3}/sync?since={since}&timeout=0", access_token=bob_token)
        self.assertIn("@alice:test", r.json.get("device_lists", {}).get("changed", []))


class MediaListCommandTests(AdminRoomTestCase):
    async def upload(self, token: str, data: bytes) -> str:
        r = await self.request("POST", "/_matrix/media/v3/upload", raw_body=data, access_token=token,
                               headers={"Content-Type": "text/plain"})
        self.assertEqual(r.code, 200, r.body)
        return r.json["content_uri"]

    async def test_list_and_delete_past_remote(self) -> None:
        bob, bob_token = await self.user("bob")
        mine = await self.upload(self.alice_token, b"alice's")
        theirs = await self.upload(bob_token, b"bob's file")
        now = self.hs.clock_ms()
        # Remote media cached here: one fetched 40 days ago, one just now.
        await self.hs.media.store.put("far.example", "old", {
            "content_type": "image/png", "size": 3, "created_ts": now - 40 * 86400_000, "remote": True,
        })
        await self.hs.media.store.put("far.example", "new", {
            "content_type": "image/png", "size": 3, "created_ts": now, "remote": True,
        })
        body = await self.body("!admin media list")
        for uri in (mine, theirs, "mxc://far.example/old", "mxc://far.example/new"):
            self.assertIn(uri, body)
        body = await self.body("!admin media list --user @bob:test")
        self.assertIn(theirs, body)
        self.assertNotIn(mine, body)
        body = await self.body("!admin media list --since 7d")
        self.assertNotIn("mxc://far.example/old", body)
        self.assertIn("mxc://far.example/new", body)
        self.assertIn("needs a value", await self.body("!admin media list --user"))
        body = await self.body("!admin media delete-past-remote 30d")
        self.assertIn("Deleted 1 remote media", body)
        self.assertIsNone(await self.hs.media.store.get("far.example", "old"))
        self.assertIsNotNone(await self.hs.media.store.get("far.example", "new"))
        # Local media is never touched by it, however old.
        self.clock.advance(400 * 86400)
        self.assertIn("Deleted 1 remote media", await self.body("!admin media delete-past-remote 30d"))
        r = await self.request("GET", "/_matrix/client/v1/media/download/" + mine[len("mxc://"):],
                               access_token=self.alice_token)
        self.assertEqual(r.code, 200, r.body)
        self.assertIn("Bad duration", await self.body("!admin media delete-past-remote soon"))
