"""
Rooms end to end against the real `twistd -n conduit`:

- two matrix-nio clients register, create a room, invite, join, exchange
  messages (each reads the other's with GET /rooms/{id}/event/{id}, as
  /messages and /sync belong to other modules), change name and topic,
  kick and ban;
- crash safety: events acknowledged by the server are all there after a
  SIGKILL and a restart.
"""

from __future__ import annotations

from urllib.parse import quote

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio


class NioRoomsTests(ServerTestCase):
    skip = NIO_MISSING

    def test_two_clients(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))

    async def _session(self, base_url: str) -> None:
        async with self._registered(base_url, "alice", "bob") as (alice, bob):
            created = await alice.room_create(name="Lobby", topic="Hello")
            self.assertIsInstance(created, nio.RoomCreateResponse, created)
            room = created.room_id

            # Bob may not join before being invited.
            refused = await bob.join(room)
            self.assertIsInstance(refused, nio.JoinError, refused)
            self.assertEqual(refused.status_code, "M_FORBIDDEN")

            invited = await alice.room_invite(room, bob.user_id)
            self.assertIsInstance(invited, nio.RoomInviteResponse, invited)
            joined = await bob.join(room)
            self.assertIsInstance(joined, nio.JoinResponse, joined)
            self.assertEqual(joined.room_id, room)

            sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hi bob"})
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            reply = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
            self.assertIsInstance(reply, nio.RoomSendResponse, reply)

            got = await bob.room_get_event(room, sent.event_id)
            self.assertIsInstance(got, nio.RoomGetEventResponse, got)
            self.assertEqual(got.event.body, "hi bob")
            self.assertEqual(got.event.sender, alice.user_id)
            got = await alice.room_get_event(room, reply.event_id)
            self.assertEqual(got.event.body, "hi alice")

            # Name and topic changes, read back by the other side.
            r = await alice.room_put_state(room, "m.room.name", {"name": "Renamed"})
            self.assertIsInstance(r, nio.RoomPutStateResponse, r)
            r = await alice.room_put_state(room, "m.room.topic", {"topic": "New topic"})
            self.assertIsInstance(r, nio.RoomPutStateResponse, r)
            state = await bob.room_get_state_event(room, "m.room.name")
            self.assertIsInstance(state, nio.RoomGetStateEventResponse, state)
            self.assertEqual(state.content, {"name": "Renamed"})
            full = await bob.room_get_state(room)
            self.assertIsInstance(full, nio.RoomGetStateResponse, full)
            topics = [e["content"] for e in full.events if e["type"] == "m.room.topic"]
            self.assertEqual(topics[0]["topic"], "New topic")

            # Bob (power 0) cannot rename; nor kick alice.
            r = await bob.room_put_state(room, "m.room.name", {"name": "Mine"})
            self.assertIsInstance(r, nio.RoomPutStateError, r)
            r = await bob.room_kick(room, alice.user_id)
            self.assertIsInstance(r, nio.RoomKickError, r)

            # Alice kicks bob, he is invited back and rejoins, then banned.
            r = await alice.room_kick(room, bob.user_id, reason="testing")
            self.assertIsInstance(r, nio.RoomKickResponse, r)
            r = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "still here?"})
            self.assertIsInstance(r, nio.RoomSendError, r)
            await alice.room_invite(room, bob.user_id)
            self.assertIsInstance(await bob.join(room), nio.JoinResponse)
            r = await alice.room_ban(room, bob.user_id, reason="bye")
            self.assertIsInstance(r, nio.RoomBanResponse, r)
            r = await bob.join(room)
            self.assertIsInstance(r, nio.JoinError, r)
            r = await alice.room_unban(room, bob.user_id)
            self.assertIsInstance(r, nio.RoomUnbanResponse, r)

            rooms = await alice.joined_rooms()
            # Alice, the first user, is also in the admin room.
            self.assertEqual(len(rooms.rooms), 2)
            self.assertIn(room, rooms.rooms)


class CrashTests(ServerTestCase):
    """Every acknowledged event survives SIGKILL."""

    def test_kill_9(self) -> None:
        server = self._server()
        status, body = server.call(
            "POST", "/_matrix/client/v3/register",
            {"username": "alice", "password": "pw-alice-1", "auth": {"type": "m.login.dummy"}},
        )
        self.assertEqual(status, 200, body)
        token = body["access_token"]
        status, body = server.call("POST", "/_matrix/client/v3/createRoom", {"name": "crash"}, token)
        self.assertEqual(status, 200, body)
        room = body["room_id"]
        acked = []
        for i in range(60):
            status, body = server.call(
                "PUT",
                f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/txn{i}",
                {"msgtype": "m.text", "body": f"message {i}"},
                token,
            )
            self.assertEqual(status, 200, body)
            acked.append(body["event_id"])
            if i % 10 == 0:
                status, body = server.call(
                    "PUT", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.topic/",
                    {"topic": f"topic {i}"}, token,
                )
                self.assertEqual(status, 200, body)
        server.kill()
        server.start()
        for i, event_id in enumerate(acked):
            status, body = server.get(
                f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(event_id)}", token
            )
            self.assertEqual(status, 200, (i, body))
            self.assertEqual(body["content"]["body"], f"message {i}")
        status, body = server.get(
            f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.topic/", token
        )
        self.assertEqual((status, body), (200, {"topic": "topic 50"}))
        # Replays after the restart return the acknowledged events.
        status, body = server.call(
            "PUT", f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/txn5",
            {"msgtype": "m.text", "body": "again"}, token,
        )
        self.assertEqual(body["event_id"], acked[5])
        # And the room goes on.
        status, body = server.call(
            "PUT", f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/after",
            {"msgtype": "m.text", "body": "after"}, token,
        )
        self.assertEqual(status, 200, body)
