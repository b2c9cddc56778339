"""
Relations, threads and search end to end against the real `twistd -n
conduit`: one matrix-nio client edits a message, the other reacts and
replies in a thread; each sees the other's relations aggregated on the
original (through /event and /messages), pages them with nio's
/relations and /threads iterators, and finds messages with /search.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio


class NioRelationsTests(ServerTestCase):
    skip = NIO_MISSING

    def test_edit_reaction_thread(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))

    async def _send(self, client: Any, room: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        resp = await client.room_send(room, event_type, content)
        self.assertIsInstance(resp, nio.RoomSendResponse, resp)
        return resp.event_id

    async def _unsigned(self, client: Any, room: str, event_id: str) -> dict[str, Any]:
        resp = await client.room_get_event(room, event_id)
        self.assertIsInstance(resp, nio.RoomGetEventResponse, resp)
        return resp.event.source.get("unsigned", {})

    async def _session(self, base_url: str) -> None:
        async with self._registered(base_url, "alice", "bob") as (alice, bob):
            created = await alice.room_create(name="Relations")
            room = created.room_id
            await alice.room_invite(room, bob.user_id)
            await bob.join(room)

            original = await self._send(alice, room, {"msgtype": "m.text", "body": "hello wrld"})
            edit = await self._send(alice, room, {
                "msgtype": "m.text", "body": "* hello world",
                "m.new_content": {"msgtype": "m.text", "body": "hello world"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            })
            reaction = await self._send(
                bob, room,
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}},
                "m.reaction",
            )
            reply = await self._send(bob, room, {
                "msgtype": "m.text", "body": "a thread reply",
                "m.relates_to": {"rel_type": "m.thread", "event_id": original},
            })

            # Bob sees Alice's edit bundled, Alice sees Bob's thread.
            for client, participated in ((bob, True), (alice, True)):
                unsigned = await self._unsigned(client, room, original)
                relations = unsigned["m.relations"]
                self.assertEqual(relations["m.replace"]["event_id"], edit)
                self.assertEqual(relations["m.thread"]["latest_event"]["event_id"], reply)
                self.assertEqual(relations["m.thread"]["count"], 1)
                self.assertEqual(relations["m.thread"]["current_user_participated"], participated)

            # /messages through nio carries the same bundle.
            messages = await bob.room_messages(room, limit=20)
            self.assertIsInstance(messages, nio.RoomMessagesResponse, messages)
            by_id = {e.event_id: e for e in messages.chunk}
            self.assertEqual(
                by_id[original].source["unsigned"]["m.relations"]["m.replace"]["event_id"], edit
            )

            # nio's /relations and /threads iterators.
            related = [e.event_id async for e in alice.room_get_event_relations(room, original, limit=1)]
            self.assertEqual(related, [reply, reaction, edit])
            threads = [e.event_id async for e in alice.room_get_threads(room)]
            self.assertEqual(threads, [original])

            # /search through nio's raw requests.
            resp = await bob.send(
                "POST", "/_matrix/client/v3/search",
                json.dumps({"search_categories": {"room_events": {"search_term": "thread"}}}),
                headers={"Authorization": f"Bearer {bob.access_token}",
                         "Content-Type": "application/json"},
            )
            self.assertEqual(resp.status, 200)
            body = await resp.json()
            found = [r["result"]["event_id"] for r in body["search_categories"]["room_events"]["results"]]
            self.assertEqual(found, [reply])
