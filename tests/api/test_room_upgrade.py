"""POST /rooms/{roomId}/upgrade (handlers/room_upgrade.py)."""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, RoomsTestCase, q


class UpgradeTests(RoomsTestCase):
    async def upgrade(self, token: str, room_id: str, expect: int = 200, **body: Any) -> Any:
        r = await self.request("POST", f"{V3}/rooms/{q(room_id)}/upgrade", body, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def state_map(self, token: str, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {(e["type"], e["state_key"]): e for e in await self.full_state(token, room_id)}

    async def test_upgrade_copies_state_and_tombstones(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, room_version="10", preset="public_chat", name="The room", topic="Talk",
            initial_state=[
                {"type": "m.room.avatar", "content": {"url": "mxc://test/avatar"}},
                {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["evil.example"]}},
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
                {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
                {"type": "org.example.private", "content": {"secret": 1}},
            ],
        )
        await self.join(bt, room)
        old = await self.state_map(at, room)
        new_room = (await self.upgrade(at, room, new_version="11"))["replacement_room"]

        # The old room: a tombstone naming the new room, restricted levels.
        after = await self.state_map(at, room)
        tombstone = after[("m.room.tombstone", "")]
        self.assertEqual(tombstone["content"]["replacement_room"], new_room)
        self.assertEqual(tombstone["sender"], alice)
        pl = after[("m.room.power_levels", "")]["content"]
        self.assertEqual((pl["events_default"], pl["invite"]), (50, 50))
        r = await self.send(bt, room)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

        # The new room.
        new = await self.state_map(at, new_room)
        create = new[("m.room.create", "")]["content"]
        self.assertEqual(create["room_version"], "11")
        self.assertEqual(
            create["predecessor"], {"room_id": room, "event_id": tombstone["event_id"]}
        )
        for key in [
            ("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", ""),
            ("m.room.server_acl", ""), ("m.room.join_rules", ""),
            ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
            ("m.room.power_levels", ""),
        ]:
            self.assertEqual(new[key]["content"], old[key]["content"], key)
        self.assertNotIn(("org.example.private", ""), new)
        self.assertEqual(new[("m.room.member", alice)]["content"]["membership"], "join")
        self.assertNotIn(("m.room.member", bob), new)
        # Bob can follow (public room).
        await self.join(bt, new_room)

    async def test_upgrade_to_v12(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, room_version="10", preset="public_chat", name="n")
        await self.join(bt, room)
        body = await self.upgrade(at, room, new_version="12", additional_creators=[bob])
        new_room = body["replacement_room"]
        new = await self.state_map(at, new_room)
        create = new[("m.room.create", "")]
        self.assertEqual(create["content"]["predecessor"], {"room_id": room})
        self.assertEqual(create["content"]["additional_creators"], [bob])
        self.assertEqual(create["content"]["room_version"], "12")
        users = new[("m.room.power_levels", "")]["content"].get("users", {})
        self.assertNotIn(alice, users)
        self.assertNotIn(bob, users)
        tomb = (await self.state_map(at, room))[("m.room.tombstone", "")]
        self.assertEqual(tomb["content"]["replacement_room"], new_room)
        self.assertEqual(new[("m.room.name", "")]["content"], {"name": "n"})
        # A v12 room upgraded again: additional creators are not copied.
        newer = (await self.upgrade(at, new_room, new_version="12"))["replacement_room"]
        create = (await self.state_map(at, newer))[("m.room.create", "")]["content"]
        self.assertNotIn("additional_creators", create)
        self.assertEqual(create["predecessor"], {"room_id": new_room})

    async def test_power_raised_for_copy_then_restored(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, room_version="10", preset="public_chat",
            power_level_content_override={
                "users": {alice: 200, bob: 100},
                "events": {"m.room.tombstone": 100, "m.room.server_acl": 150, "m.room.power_levels": 150},
            },
            initial_state=[
                {"type": "m.room.server_acl", "content": {"allow": ["*"]}},
            ],
        )
        await self.join(bt, room)
        old_pl = (await self.state_map(at, room))[("m.room.power_levels", "")]["content"]
        new_room = (await self.upgrade(bt, room, new_version="11"))["replacement_room"]
        new = await self.state_map(bt, new_room)
        self.assertEqual(new[("m.room.server_acl", "")]["content"], {"allow": ["*"]})
        self.assertEqual(new[("m.room.power_levels", "")]["content"], old_pl)
        self.assertEqual(new[("m.room.power_levels", "")]["content"]["users"][bob], 100)

    async def test_bans_copied(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, room_version="10", preset="public_chat")
        await self.join(bt, room)
        r = await self.member_action(at, room, "ban", {"user_id": bob, "reason": "spam"})
        self.assertEqual(r.code, 200, r.body)
        new_room = (await self.upgrade(at, room, new_version="11"))["replacement_room"]
        ban = (await self.state_map(at, new_room))[("m.room.member", bob)]
        self.assertEqual(ban["content"], {"membership": "ban", "reason": "spam"})
        await self.join(bt, new_room, expect=403)

    async def test_aliases_moved(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at, room_version="10", room_alias_name="lobby")
        alias = "#lobby:test"
        new_room = (await self.upgrade(at, room, new_version="11"))["replacement_room"]
        self.assertEqual(await self.hs.aliases_store.get_room_for_alias(alias), new_room)
        self.assertEqual(await self.hs.aliases_store.aliases_for_room(room), [])
        self.assertEqual(await self.hs.aliases_store.aliases_for_room(new_room), [alias])
        new = await self.state_map(at, new_room)
        self.assertEqual(new[("m.room.canonical_alias", "")]["content"], {"alias": alias})
        old = await self.state_map(at, room)
        self.assertNotIn("alias", old[("m.room.canonical_alias", "")]["content"])

    async def test_space_type_and_children(self) -> None:
        alice, at = await self.user("alice")
        child = await self.create_room(at)
        space = await self.create_room(
            at, room_version="10", creation_content={"type": "m.space"},
            initial_state=[{"type": "m.space.child", "state_key": child, "content": {"via": ["test"]}}],
        )
        new_room = (await self.upgrade(at, space, new_version="11"))["replacement_room"]
        new = await self.state_map(at, new_room)
        self.assertEqual(new[("m.room.create", "")]["content"]["type"], "m.space")
        self.assertEqual(new[("m.space.child", child)]["content"], {"via": ["test"]})

    async def test_refusals(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        eve, et = await self.user("eve")
        room = await self.create_room(at, room_version="10", preset="public_chat")
        await self.join(bt, room)
        before = await self.hs.event_store.joined_room_ids(bob)
        body = await self.upgrade(bt, room, expect=403, new_version="11")
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertEqual(await self.hs.event_store.joined_room_ids(bob), before)
        self.assertNotIn(("m.room.tombstone", ""), await self.state_map(at, room))
        await self.upgrade(et, room, expect=403, new_version="11")
        body = await self.upgrade(at, room, expect=400, new_version="999")
        self.assertEqual(body["errcode"], "M_UNSUPPORTED_ROOM_VERSION")
        body = await self.upgrade(at, room, expect=400)
        self.assertEqual(body["errcode"], "M_MISSING_PARAM")
        await self.upgrade(at, room, expect=400, new_version="12", additional_creators=["nope"])
        await self.upgrade(at, "!unknown:test", expect=404, new_version="11")
