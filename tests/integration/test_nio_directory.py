"""
Aliases and the published room directory end to end: matrix-nio against
the real `twistd -n conduit` (create, resolve, join by and delete an
alias; publish a room and find it in /publicRooms, with a search filter
and pagination).
"""

from __future__ import annotations

from typing import Any

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio


class NioDirectoryTests(ServerTestCase):
    skip = NIO_MISSING

    def test_aliases_and_directory(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))

    async def _session(self, base_url: str) -> None:
        async with self._registered(base_url, "alice", "bob") as (alice, bob):
            created = await alice.room_create(
                name="Cheese Club", visibility=nio.RoomVisibility.public
            )
            self.assertIsInstance(created, nio.RoomCreateResponse, created)
            room = created.room_id
            others: list[Any] = []
            for i in range(3):
                r = await alice.room_create(
                    name="Other %d" % i, visibility=nio.RoomVisibility.public
                )
                others.append(r.room_id)

            r = await alice.room_put_alias("#cheese:localhost", room)
            self.assertIsInstance(r, nio.RoomPutAliasResponse, r)
            r = await bob.room_resolve_alias("#cheese:localhost")
            self.assertIsInstance(r, nio.RoomResolveAliasResponse, r)
            self.assertEqual((r.room_id, r.servers), (room, ["localhost"]))
            r = await bob.join("#cheese:localhost")
            self.assertIsInstance(r, nio.JoinResponse, r)

            r = await bob.room_get_visibility(room)
            self.assertIsInstance(r, nio.RoomGetVisibilityResponse, r)
            self.assertEqual(r.visibility, "public")

            r = await bob.list_public_rooms(filter_generic_search_term="cheese")
            self.assertIsInstance(r, nio.responses.PublicRoomsResponse, r)
            self.assertEqual([c.room_id for c in r.public_rooms], [room])
            self.assertEqual(r.public_rooms[0].num_joined_members, 2)

            seen = []
            since = None
            while True:
                r = await bob.list_public_rooms(limit=3, since=since)
                self.assertIsInstance(r, nio.responses.PublicRoomsResponse, r)
                seen += [c.room_id for c in r.public_rooms]
                since = r.next_batch
                if not since:
                    break
            self.assertEqual(seen[0], room)  # the most members first
            self.assertEqual(sorted(seen), sorted([room] + others))

            # nio parses every answer as success here; the status tells.
            r = await bob.room_delete_alias("#cheese:localhost")
            self.assertEqual(r.transport_response.status, 403)
            r = await alice.room_delete_alias("#cheese:localhost")
            self.assertIsInstance(r, nio.RoomDeleteAliasResponse, r)
            r = await bob.room_resolve_alias("#cheese:localhost")
            self.assertIsInstance(r, nio.RoomResolveAliasError, r)
