"""auto_join_rooms: new accounts are joined to the configured local rooms."""

from __future__ import annotations

from typing import Any

from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase


class AutoJoinTests(RoomsTestCase):
    config_overrides: dict[str, Any] = {
        **OPEN,
        "allow_guest_registration": True,
        "auto_join_rooms": ["#lobby:test", "#missing:test", "#far:elsewhere.example"],
        # No federation in these tests: the remote alias can't be resolved.
        "allow_federation": False,
    }

    async def joined(self, token: str) -> list[str]:
        r = await self.request("GET", V3 + "/joined_rooms", access_token=token)
        self.assertEqual(r.code, 200, r.body)
        # The admin room (the first user is the admin) is not an auto-join.
        return [r for r in r.json["joined_rooms"] if r != self.hs.admin_room.room_id]

    async def test_joined_after_registration(self) -> None:
        # The first user registers while no listed room exists: still 200.
        _, alice = await self.user("alice")
        self.assertEqual(await self.joined(alice), [])
        lobby = await self.create_room(alice, preset="public_chat", room_alias_name="lobby")
        private = await self.create_room(alice, preset="private_chat")
        public = await self.create_room(alice, preset="public_chat")
        self.hs.auto_join.rooms = [*self.hs.auto_join.rooms, private, public]
        bob_id, bob = await self.user("bob")
        # Joinable rooms by alias and by ID; the invite-only one, the unknown
        # alias and the remote alias are skipped without failing registration.
        self.assertEqual(sorted(await self.joined(bob)), sorted([lobby, public]))
        r = await self.get_state(bob, lobby, "m.room.member", bob_id)
        self.assertEqual(r.json["membership"], "join")
        self.assertEqual(r.json["displayname"], "bob")

    async def test_guests_only_when_allowed(self) -> None:
        _, alice = await self.user("alice")
        lobby = await self.create_room(alice, preset="public_chat", room_alias_name="lobby")
        r = await self.put_state(alice, lobby, "m.room.guest_access", {"guest_access": "can_join"})
        self.assertEqual(r.code, 200, r.body)
        guest = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(guest.code, 200, guest.body)
        self.assertEqual(await self.joined(guest.json["access_token"]), [])
        self.hs.auto_join.allow_guests = True
        guest = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(guest.code, 200, guest.body)
        self.assertEqual(await self.joined(guest.json["access_token"]), [lobby])


class NoAutoJoinTests(RoomsTestCase):
    async def test_default_joins_nothing(self) -> None:
        _, alice = await self.user("alice")
        await self.create_room(alice, preset="public_chat", room_alias_name="lobby")
        _, bob = await self.user("bob")
        r = await self.request("GET", V3 + "/joined_rooms", access_token=bob)
        self.assertEqual(r.json["joined_rooms"], [])
