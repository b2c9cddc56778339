"""
/sync end to end against the real `twistd -n conduit`: two matrix-nio
clients sync (nio's `sync` and `sync_forever`), see each other's messages,
typing notifications and read receipts, and their unread counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio


class NioSyncTests(ServerTestCase):
    skip = NIO_MISSING

    def test_two_clients_sync(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))

    async def _wait_for(self, client: Any, predicate: Any, what: str, rounds: int = 20) -> Any:
        for _ in range(rounds):
            resp = await client.sync(timeout=3000)
            self.assertIsInstance(resp, nio.SyncResponse, resp)
            found = predicate(resp)
            if found:
                return found
        self.fail(f"never saw {what}")

    async def _session(self, base_url: str) -> None:
        async with self._registered(base_url, "alice", "bob") as (alice, bob):
            created = await alice.room_create(name="Lobby")
            room = created.room_id
            await alice.room_invite(room, bob.user_id)

            # Bob's first sync shows the invite; joining moves it to join.
            first = await bob.sync(timeout=0, full_state=True)
            self.assertIsInstance(first, nio.SyncResponse, first)
            self.assertIn(room, first.rooms.invite)
            await bob.join(room)
            await alice.sync(timeout=0)

            # Alice's message arrives through Bob's long-poll.
            sent = await alice.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "hello bob"}
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)

            def has_message(resp: Any) -> Any:
                info = resp.rooms.join.get(room)
                if info is None:
                    return None
                return [e for e in info.timeline.events if getattr(e, "body", None) == "hello bob"]

            [msg] = await self._wait_for(bob, has_message, "alice's message")
            self.assertEqual(msg.sender, alice.user_id)
            self.assertEqual(bob.rooms[room].display_name, "Lobby")
            self.assertEqual(bob.rooms[room].unread_notifications, 1)

            # Typing.
            await alice.room_typing(room, True, timeout=10000)

            def typing(resp: Any) -> Any:
                info = resp.rooms.join.get(room)
                if info is None:
                    return None
                return [
                    e for e in info.ephemeral
                    if isinstance(e, nio.TypingNoticeEvent) and alice.user_id in e.users
                ]

            await self._wait_for(bob, typing, "alice typing")

            # Bob's read receipt reaches Alice, and clears his count.
            r = await bob.room_read_markers(room, msg.event_id, msg.event_id)
            self.assertIsInstance(r, nio.RoomReadMarkersResponse, r)

            def receipt(resp: Any) -> Any:
                info = resp.rooms.join.get(room)
                if info is None:
                    return None
                return [
                    rc for e in info.ephemeral if isinstance(e, nio.ReceiptEvent)
                    for rc in e.receipts if rc.user_id == bob.user_id and rc.event_id == msg.event_id
                ]

            await self._wait_for(alice, receipt, "bob's receipt")
            resp = await bob.sync(timeout=0)
            self.assertEqual(bob.rooms[room].unread_notifications, 0)

            # sync_forever: Bob's callback sees Alice's next message.
            got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            async def on_message(room_: Any, event: Any) -> None:
                if event.sender == alice.user_id and not got.done():
                    got.set_result(event.body)

            bob.add_event_callback(on_message, nio.RoomMessageText)
            task = asyncio.create_task(bob.sync_forever(timeout=30000))
            await asyncio.sleep(0.2)
            await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "forever"})
            self.assertEqual(await asyncio.wait_for(got, 10), "forever")
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

            # And Alice sees Bob's answer.
            await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})

            def answer(resp: Any) -> Any:
                info = resp.rooms.join.get(room)
                return info and [e for e in info.timeline.events if getattr(e, "body", None) == "hi alice"]

            await self._wait_for(alice, answer, "bob's answer")
