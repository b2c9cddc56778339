"""POST /createRoom: presets, options, the event sequence, refusals, room versions."""

from __future__ import annotations

from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase


class CreateRoomTests(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")

    async def state_map(self, room_id: str) -> dict:
        return {(e["type"], e["state_key"]): e for e in await self.full_state(self.at, room_id)}

    async def timeline_types(self, room_id: str) -> list:
        events = await self.hs.event_store.latest_events(room_id, 100)
        return [(e.type, e.state_key) for e in reversed(events)]

    async def test_private_chat_default(self) -> None:
        room = await self.create_room(self.at)
        state = await self.state_map(room)
        self.assertEqual(state[("m.room.join_rules", "")]["content"], {"join_rule": "invite"})
        self.assertEqual(
            state[("m.room.history_visibility", "")]["content"], {"history_visibility": "shared"}
        )
        self.assertEqual(state[("m.room.guest_access", "")]["content"], {"guest_access": "can_join"})
        create = state[("m.room.create", "")]
        self.assertEqual(create["content"]["room_version"], "12")
        self.assertEqual(create["sender"], self.alice)
        # v12: the room ID is the create event's ID.
        self.assertEqual(room, "!" + create["event_id"][1:])
        self.assertNotIn("creator", create["content"])
        pl = state[("m.room.power_levels", "")]["content"]
        self.assertNotIn(self.alice, pl["users"])
        self.assertEqual(pl["events"]["m.room.tombstone"], 150)
        self.assertEqual(pl["invite"], 0)

    async def test_public_chat_from_visibility(self) -> None:
        room = await self.create_room(self.at, visibility="public")
        state = await self.state_map(room)
        self.assertEqual(state[("m.room.join_rules", "")]["content"], {"join_rule": "public"})
        self.assertEqual(state[("m.room.guest_access", "")]["content"], {"guest_access": "forbidden"})
        self.assertEqual(state[("m.room.power_levels", "")]["content"]["invite"], 50)

    async def test_preset_overrides_visibility(self) -> None:
        room = await self.create_room(self.at, visibility="public", preset="private_chat")
        state = await self.state_map(room)
        self.assertEqual(state[("m.room.join_rules", "")]["content"]["join_rule"], "invite")

    async def test_event_sequence(self) -> None:
        bob, _ = await self.user("bob")
        room = await self.create_room(
            self.at,
            preset="public_chat",
            room_alias_name="seq",
            name="N",
            topic="T",
            invite=[bob],
            initial_state=[{"type": "m.room.avatar", "content": {"url": "mxc://a/b"}}],
        )
        self.assertEqual(
            await self.timeline_types(room),
            [
                ("m.room.create", ""),
                ("m.room.member", self.alice),
                ("m.room.power_levels", ""),
                ("m.room.canonical_alias", ""),
                ("m.room.join_rules", ""),
                ("m.room.history_visibility", ""),
                ("m.room.guest_access", ""),
                ("m.room.avatar", ""),
                ("m.room.name", ""),
                ("m.room.topic", ""),
                ("m.room.member", bob),
            ],
        )
        state = await self.state_map(room)
        self.assertEqual(state[("m.room.topic", "")]["content"]["topic"], "T")
        self.assertEqual(
            state[("m.room.topic", "")]["content"]["m.topic"],
            {"m.text": [{"body": "T", "mimetype": "text/plain"}]},
        )
        self.assertEqual(state[("m.room.member", bob)]["content"]["membership"], "invite")
        self.assertEqual(
            state[("m.room.canonical_alias", "")]["content"], {"alias": "#seq:test"}
        )

    async def test_initial_state_overrides_preset_and_name_overrides_initial_state(self) -> None:
        room = await self.create_room(
            self.at,
            preset="public_chat",
            name="Real",
            initial_state=[
                {"type": "m.room.join_rules", "content": {"join_rule": "invite"}},
                {"type": "m.room.name", "content": {"name": "Ignored"}},
                {"type": "org.example.custom", "state_key": "k", "content": {"a": 1}},
            ],
        )
        state = await self.state_map(room)
        self.assertEqual(state[("m.room.join_rules", "")]["content"]["join_rule"], "invite")
        self.assertEqual(state[("m.room.name", "")]["content"]["name"], "Real")
        self.assertEqual(state[("org.example.custom", "k")]["content"], {"a": 1})
        types = await self.timeline_types(room)
        self.assertEqual(types.count(("m.room.join_rules", "")), 1)
        self.assertEqual(types.count(("m.room.name", "")), 1)

    async def test_power_level_override(self) -> None:
        room = await self.create_room(
            self.at, power_level_content_override={"events_default": 10, "kick": 99}
        )
        pl = (await self.state_map(room))[("m.room.power_levels", "")]["content"]
        self.assertEqual((pl["events_default"], pl["kick"], pl["ban"]), (10, 99, 50))

    async def test_bad_power_level_override_is_invalid_room_state(self) -> None:
        # Dropping the creator's own power below state_default in v11
        # makes the following state events unauthorised.
        r = await self.request(
            "POST", V3 + "/createRoom",
            {"room_version": "11", "power_level_content_override": {"users": {}, "state_default": 100},
             "name": "x"},
            access_token=self.at,
        )
        self.assertMatrixError(r, 400, "M_INVALID_ROOM_STATE")
        self.assertEqual(
            await self.hs.event_store.joined_room_ids(self.alice), [self.hs.admin_room.room_id]
        )

    async def test_trusted_private_chat(self) -> None:
        bob, _ = await self.user("bob")
        room = await self.create_room(self.at, preset="trusted_private_chat", invite=[bob])
        create = (await self.state_map(room))[("m.room.create", "")]
        self.assertEqual(create["content"]["additional_creators"], [bob])
        room11 = await self.create_room(
            self.at, preset="trusted_private_chat", invite=[bob], room_version="11"
        )
        pl = (await self.state_map(room11))[("m.room.power_levels", "")]["content"]
        self.assertEqual(pl["users"], {self.alice: 100, bob: 100})

    async def test_is_direct_on_invites(self) -> None:
        bob, _ = await self.user("bob")
        room = await self.create_room(self.at, invite=[bob], is_direct=True)
        member = (await self.state_map(room))[("m.room.member", bob)]
        self.assertEqual(member["content"]["is_direct"], True)
        self.assertEqual(member["content"]["displayname"], "bob")

    async def test_creation_content(self) -> None:
        room = await self.create_room(
            self.at, creation_content={"m.federate": False, "room_version": "1", "type": "m.space"}
        )
        create = (await self.state_map(room))[("m.room.create", "")]["content"]
        self.assertEqual(create["m.federate"], False)
        self.assertEqual(create["type"], "m.space")
        self.assertEqual(create["room_version"], "12")

    async def test_unknown_room_version(self) -> None:
        r = await self.request(
            "POST", V3 + "/createRoom", {"room_version": "99"}, access_token=self.at
        )
        self.assertMatrixError(r, 400, "M_UNSUPPORTED_ROOM_VERSION")

    async def test_alias_taken_and_forbidden(self) -> None:
        room = await self.create_room(self.at, room_alias_name="pub")
        self.assertEqual(await self.hs.aliases_store.get_room_for_alias("#pub:test"), room)
        self.assertEqual(await self.hs.aliases_store.aliases_for_room(room), ["#pub:test"])
        r = await self.request(
            "POST", V3 + "/createRoom", {"room_alias_name": "pub"}, access_token=self.at
        )
        self.assertMatrixError(r, 400, "M_ROOM_IN_USE")
        r = await self.request(
            "POST", V3 + "/createRoom", {"room_alias_name": "bad:name"}, access_token=self.at
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_invite_3pid_refused(self) -> None:
        r = await self.request(
            "POST", V3 + "/createRoom",
            {"invite_3pid": [{"id_server": "x", "id_access_token": "y", "medium": "email", "address": "a@b"}]},
            access_token=self.at,
        )
        self.assertMatrixError(r, 400, "M_UNRECOGNIZED")
        # Only the admin room (alice is the first user).
        self.assertEqual(
            await self.hs.event_store.joined_room_ids(self.alice), [self.hs.admin_room.room_id]
        )

    async def test_remote_invite_refused(self) -> None:
        r = await self.request(
            "POST", V3 + "/createRoom", {"invite": ["@bob:elsewhere"]}, access_token=self.at
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        self.assertIn("federation", r.json["error"])

    async def test_bad_bodies(self) -> None:
        for body in (
            {"visibility": "secret"},
            {"preset": "nope"},
            {"initial_state": [{"type": "x"}]},
            {"invite": "@bob:test"},
            {"name": 3},
            {"creation_content": []},
        ):
            r = await self.request("POST", V3 + "/createRoom", body, access_token=self.at)
            self.assertEqual(r.code, 400, body)

    async def test_no_token(self) -> None:
        r = await self.request("POST", V3 + "/createRoom", {})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_r0_path(self) -> None:
        r = await self.request("POST", "/_matrix/client/r0/createRoom", {}, access_token=self.at)
        self.assertEqual(r.code, 200, r.body)


class RoomCreationDisabledTests(RoomsTestCase):
    config_overrides = dict(OPEN, allow_room_creation=False, forbidden_alias_names=["admin"])

    async def test_admin_only(self) -> None:
        # The first registered user is the server admin.
        admin, admin_token = await self.user("admin1")
        bob, bob_token = await self.user("bob")
        await self.create_room(admin_token)
        r = await self.request("POST", V3 + "/createRoom", {}, access_token=bob_token)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_forbidden_alias_names(self) -> None:
        _, token = await self.user("admin1")
        r = await self.request(
            "POST", V3 + "/createRoom", {"room_alias_name": "theadmins"}, access_token=token
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")


class RoomVersionsTests(RoomsTestCase):
    """Create, send, set and read state in rooms of several versions."""

    async def check_version(self, version: str) -> None:
        alice, at = await self.user("alice" + version)
        bob, bt = await self.user("bob" + version)
        room = await self.create_room(at, room_version=version, preset="public_chat", name="v" + version)
        create = (await self.hs.event_store.current_state_event(room, "m.room.create", ""))
        self.assertEqual(create.content["room_version"], version)
        if version in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"):
            self.assertEqual(create.content["creator"], alice)
            self.assertTrue(room.endswith(":test"))
        await self.join(bt, room)
        eid = await self.send_ok(bt, room, {"msgtype": "m.text", "body": "hi " + version})
        r = await self.get_event(at, room, eid)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["content"]["body"], "hi " + version)
        if version in ("1", "2"):
            self.assertTrue(eid.endswith(":test"))
        r = await self.put_state(at, room, "m.room.topic", {"topic": "t" + version})
        self.assertEqual(r.code, 200, r.body)
        r = await self.get_state(bt, room, "m.room.topic")
        self.assertEqual(r.json, {"topic": "t" + version})
        # Bob (power 0) may not change state.
        r = await self.put_state(bt, room, "m.room.name", {"name": "x"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_v1(self) -> None:
        await self.check_version("1")

    async def test_v3(self) -> None:
        await self.check_version("3")

    async def test_v6(self) -> None:
        await self.check_version("6")

    async def test_v10(self) -> None:
        await self.check_version("10")

    async def test_v11(self) -> None:
        await self.check_version("11")

    async def test_v12(self) -> None:
        await self.check_version("12")
