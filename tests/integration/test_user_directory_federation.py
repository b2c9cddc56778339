"""
The user directory across two of our servers over TLS (handlers/user_directory.py):
a remote user who joins a public room is found with the display name of
their join event, and the server that joined finds the room's members it
learnt from the join's state.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from tests.api.rooms import V3, q
from tests.integration.test_federation_membership import Server
from tests.integration.federation import start_homeserver


class UserDirectoryFederationTests(unittest.TestCase):
    timeout = 120

    async def search(self, server: Server, token: str, term: str) -> list[dict[str, Any]]:
        r = await server.request("POST", V3 + "/user_directory/search", {"search_term": term}, token)
        self.assertEqual(r.code, 200, r.body)
        return r.json["results"]

    async def test_remote_members_found(self) -> None:
        a = Server(await start_homeserver(self))
        b = Server(await start_homeserver(self))
        alice, at = await a.user("alice")
        bob, bt = await b.user("bob")
        r = await b.request("PUT", f"{V3}/profile/{q(bob)}/displayname", {"displayname": "Zebra Bob"}, bt)
        self.assertEqual(r.code, 200, r.body)
        r = await a.request("POST", V3 + "/createRoom", {"preset": "public_chat"}, at)
        self.assertEqual(r.code, 200, r.body)
        room = r.json["room_id"]
        r = await b.request("POST", V3 + "/join/%s?via=%s" % (q(room), q(a.name)), {}, bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(
            await self.search(a, at, "zebra"), [{"user_id": bob, "display_name": "Zebra Bob"}]
        )
        found = await self.search(b, bt, "alice")
        self.assertEqual([u["user_id"] for u in found], [alice])
