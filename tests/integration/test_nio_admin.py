"""
matrix-nio and the admin room against `twistd -n conduit`: the first user
registers, finds the admin room in its sync, sends `!admin users create bob`,
reads the bot's reply, and bob logs in with the password it gives.
"""

from __future__ import annotations

import asyncio

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio


class NioAdminRoomTests(ServerTestCase):
    """A real client runs an admin command and reads the answer."""

    skip = NIO_MISSING
    nio_timeout = 60

    def test_create_user_from_the_admin_room(self) -> None:
        server = self._server()
        base_url = server.base_url
        self._run_async(self._session(base_url))

    async def _session(self, base_url: str) -> None:
        async with self._registered(base_url, "alice") as (alice,):
            synced = await alice.sync(timeout=0, full_state=True)
            self.assertIsInstance(synced, nio.SyncResponse, synced)
            rooms = [
                rid for rid, room in alice.rooms.items() if room.canonical_alias == "#admins:localhost"
            ]
            self.assertEqual(len(rooms), 1, alice.rooms)
            room_id = rooms[0]
            self.assertIn("@conduit:localhost", alice.rooms[room_id].users)
            self.assertEqual(alice.rooms[room_id].power_levels.get_user_level(alice.user_id), 100)

            sent = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": "!admin users create bob"}
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            reply = None
            for _ in range(40):
                resp = await alice.sync(timeout=500, since=alice.next_batch)
                self.assertIsInstance(resp, nio.SyncResponse, resp)
                joined = resp.rooms.join.get(room_id)
                for event in joined.timeline.events if joined else []:
                    source = event.source.get("content", {})
                    in_reply = source.get("m.relates_to", {}).get("m.in_reply_to", {})
                    if event.sender == "@conduit:localhost" and in_reply.get("event_id") == sent.event_id:
                        reply = source
                if reply is not None:
                    break
                await asyncio.sleep(0.05)
            self.assertIsNotNone(reply)
            assert reply is not None
            self.assertEqual(reply["msgtype"], "m.notice")
            self.assertIn("@bob:localhost", reply["body"])
            password = reply["body"].rsplit(": ", 1)[1]

            bob = nio.AsyncClient(base_url, "bob")
            try:
                login = await bob.login(password)
                self.assertIsInstance(login, nio.LoginResponse, login)
                self.assertEqual(login.user_id, "@bob:localhost")
            finally:
                await bob.close()
