"""
A real appservice library against the real server: mautrix-python's
C{AppService} (asyncio, in this test's thread) registered with a real
C{twistd -n conduit}, either through C{app_service_config_files} or, while
the server runs, by the first (admin) user sending C{!admin appservices
register} with the YAML to the admin room from matrix-nio: the server
answers its ping through the appservice's C{/_matrix/app/v1/ping},
registers and masquerades one of its namespace users, and pushes it the
transactions of its room, including a message of a matrix-nio user.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests.integration.nio_support import NIO_MISSING, OPEN_REGISTRATION, ServerTestCase, nio
from tests.integration.process import free_port

try:
    from mautrix.appservice import AppService
    from mautrix.appservice.state_store import FileASStateStore
    from mautrix.types import RoomCreatePreset, UserID
except ImportError:  # pragma: no cover - mautrix is a test dependency
    if os.environ.get("CI"):
        raise
    AppService = None

AS_TOKEN = "mautrix-as-token"
HS_TOKEN = "mautrix-hs-token"


def registration(url: str) -> str:
    return f"""
id: mautrix
url: {url}
as_token: {AS_TOKEN}
hs_token: {HS_TOKEN}
sender_localpart: _mx_bot
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: "@_mx_.*:localhost"
  aliases: []
  rooms: []
"""


class MautrixAppserviceTests(ServerTestCase):
    skip = NIO_MISSING or (None if AppService is not None else "mautrix is not installed")

    def test_mautrix_appservice(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        as_port = free_port()
        path = os.path.join(workdir, "mautrix.yaml")
        with open(path, "w") as f:
            f.write(registration(f"http://127.0.0.1:{as_port}"))
        server = self._server(
            OPEN_REGISTRATION + "rc_message_per_second = 0\n"
            f'app_service_config_files = ["{path}"]\n'
        )
        self._run_async(self._session(server.base_url, as_port, workdir))

    def test_registered_from_the_admin_room(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        as_port = free_port()
        server = self._server(OPEN_REGISTRATION + "rc_message_per_second = 0\n")
        self._run_async(self._session(
            server.base_url, as_port, workdir, admin_room_yaml=registration(f"http://127.0.0.1:{as_port}")
        ))

    async def _register_in_admin_room(self, alice: Any, yaml_text: str) -> None:
        """Alice (the first user, an admin) registers the appservice by command."""
        synced = await alice.sync(timeout=0, full_state=True)
        self.assertIsInstance(synced, nio.SyncResponse, synced)
        rooms = [r for r, room in alice.rooms.items() if room.canonical_alias == "#admins:localhost"]
        self.assertEqual(len(rooms), 1, alice.rooms)
        sent = await alice.room_send(rooms[0], "m.room.message", {
            "msgtype": "m.text", "body": f"!admin appservices register\n```\n{yaml_text}\n```",
        })
        self.assertIsInstance(sent, nio.RoomSendResponse, sent)
        for _ in range(40):
            resp = await alice.sync(timeout=500, since=alice.next_batch)
            joined = resp.rooms.join.get(rooms[0])
            for event in joined.timeline.events if joined else []:
                content = event.source.get("content", {})
                if event.sender == "@conduit:localhost" and "mautrix" in content.get("body", ""):
                    self.assertIn("Appservice mautrix registered", content["body"])
                    return
        self.fail("the admin room bot did not answer")

    async def _session(
        self, base_url: str, as_port: int, workdir: str, admin_room_yaml: str | None = None
    ) -> None:
        az = AppService(
            server=base_url, domain="localhost", as_token=AS_TOKEN, hs_token=HS_TOKEN,
            bot_localpart="_mx_bot", id="mautrix",
            state_store=FileASStateStore(os.path.join(workdir, "mx-state.json"), binary=False),
        )
        messages: list[tuple[str, str]] = []
        arrived = asyncio.Event()

        @az.matrix_event_handler
        async def on_event(evt) -> None:
            if str(evt.type) == "m.room.message":
                messages.append((evt.sender, evt.content.body))
                arrived.set()

        await az.start("127.0.0.1", as_port)
        alice = nio.AsyncClient(base_url, "alice")
        try:
            # Alice registers first, so she is the server admin.
            resp = await alice.register("alice", "password-alice")
            self.assertIsInstance(resp, nio.RegisterResponse, resp)
            if admin_room_yaml is not None:
                await self._register_in_admin_room(alice, admin_room_yaml)
            # The server reaches the appservice: ping through /_matrix/app/v1/ping.
            duration = await az.ping_self("ping-1")
            self.assertIsInstance(duration, int)

            # A namespace user, registered by the appservice and masqueraded.
            bob = az.intent.user(UserID("@_mx_bob:localhost"))
            await bob.ensure_registered()
            me = await bob.whoami()
            self.assertEqual(me.user_id, "@_mx_bob:localhost")
            room = await bob.create_room(preset=RoomCreatePreset.PUBLIC, name="Bridged")
            await bob.send_text(room, "from the bridge")

            # A real client joins and talks; the appservice is told.
            joined = await alice.join(room)
            self.assertIsInstance(joined, nio.JoinResponse, joined)
            sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hi bridge"})
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            while ("@alice:localhost", "hi bridge") not in messages:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 30)
            self.assertIn(("@_mx_bob:localhost", "from the bridge"), messages)
            self.assertLess(
                messages.index(("@_mx_bob:localhost", "from the bridge")),
                messages.index(("@alice:localhost", "hi bridge")),
            )

            # Others may not take names in its exclusive namespace.
            taken = await alice.register("_mx_mallory", "password")
            self.assertIsInstance(taken, nio.responses.ErrorResponse, taken)
            self.assertEqual(taken.status_code, "M_EXCLUSIVE")
        finally:
            await alice.close()
            await az.stop()
