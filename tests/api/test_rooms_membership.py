"""Join, invite, leave, forget, kick, ban, unban, knock, restricted joins, hooks."""

from __future__ import annotations

from tests.api.rooms import V3, RoomsTestCase, q


class MembershipTests(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")
        self.carol, self.ct = await self.user("carol")

    async def membership(self, user: str, room: str) -> str | None:
        return await self.hs.event_store.membership(user, room)

    async def test_join_public_room_and_joined_rooms(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        r = await self.join(self.bt, room)
        self.assertEqual(r.json, {"room_id": room})
        self.assertEqual(await self.membership(self.bob, room), "join")
        r = await self.request("GET", V3 + "/joined_rooms", access_token=self.bt)
        self.assertEqual(r.json, {"joined_rooms": [room]})
        self.assertEqual(
            sorted(await self.hs.event_store.members(room)), sorted([self.alice, self.bob])
        )
        member = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(member.content["displayname"], "bob")
        # Joining again is a no-op.
        before = await self.hs.event_store.current_statehash(room)
        await self.join(self.bt, room)
        self.assertEqual(await self.hs.event_store.current_statehash(room), before)

    async def test_join_via_rooms_path_and_alias(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_alias_name="hall")
        r = await self.member_action(self.bt, room, "join")
        self.assertEqual(r.code, 200, r.body)
        r = await self.join(self.ct, "#hall:test")
        self.assertEqual(r.json["room_id"], room)
        r = await self.join(self.ct, "#nope:test", expect=404)
        self.assertEqual(r.json["errcode"], "M_NOT_FOUND")

    async def test_remote_rooms_without_federation(self) -> None:
        """With federation off (no remote membership), other servers' rooms are 404."""
        self.hs.membership.remote = None
        for target in ("!abc:elsewhere", "#room:elsewhere"):
            r = await self.join(self.bt, target, expect=404)
            self.assertEqual(r.json["errcode"], "M_NOT_FOUND")
            self.assertIn("federation", r.json["error"])

    async def test_invite_only(self) -> None:
        room = await self.create_room(self.at)
        r = await self.join(self.bt, room, expect=403)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        self.assertIn("not invited", r.json["error"])
        await self.invite(self.at, room, self.bob)
        self.assertEqual(await self.membership(self.bob, room), "invite")
        invite = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(invite.sender, self.alice)
        await self.join(self.bt, room)
        self.assertEqual(await self.membership(self.bob, room), "join")

    async def test_invite_with_reason_and_refusals(self) -> None:
        room = await self.create_room(self.at)
        r = await self.member_action(self.at, room, "invite", {"user_id": self.bob, "reason": "come"})
        self.assertEqual(r.code, 200, r.body)
        invite = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(invite.content["reason"], "come")
        # Carol is not in the room: she may not invite.
        r = await self.member_action(self.ct, room, "invite", {"user_id": self.bob})
        self.assertEqual(r.code, 200)  # already invited: no-op
        r = await self.member_action(self.ct, room, "invite", {"user_id": "@dave:test"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.hs.membership.remote = None  # federation off; see tests/federation
        r = await self.member_action(self.at, room, "invite", {"user_id": "@x:remote"})
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.member_action(self.at, room, "invite", {})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")

    async def test_leave_reject_and_forget(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        await self.join(self.bt, room)
        r = await self.member_action(self.bt, room, "forget")
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.member_action(self.bt, room, "leave", {"reason": "bye"})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.membership(self.bob, room), "leave")
        leave = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(leave.content, {"membership": "leave", "reason": "bye"})
        r = await self.request("GET", V3 + "/joined_rooms", access_token=self.bt)
        self.assertEqual(r.json["joined_rooms"], [])
        recs = await self.hs.event_store.rooms_for_user(self.bob, None)
        self.assertEqual([x.room_id for x in recs], [room])
        r = await self.member_action(self.bt, room, "forget")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.hs.event_store.rooms_for_user(self.bob, None), [])
        # Rejecting an invite is a leave.
        room2 = await self.create_room(self.at, invite=[self.carol])
        r = await self.member_action(self.ct, room2, "leave")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.membership(self.carol, room2), "leave")

    async def test_kick(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        await self.join(self.bt, room)
        await self.join(self.ct, room)
        r = await self.member_action(self.bt, room, "kick", {"user_id": self.carol})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIn("power level", r.json["error"])
        r = await self.member_action(self.at, room, "kick", {"user_id": self.carol, "reason": "spam"})
        self.assertEqual(r.code, 200, r.body)
        ev = await self.hs.event_store.current_state_event(room, "m.room.member", self.carol)
        self.assertEqual(
            (ev.sender, ev.content), (self.alice, {"membership": "leave", "reason": "spam"})
        )
        # Kicked users may rejoin a public room.
        await self.join(self.ct, room)
        r = await self.member_action(self.at, room, "kick", {"user_id": "@nobody:test"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_ban_unban(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        await self.join(self.bt, room)
        r = await self.member_action(self.bt, room, "ban", {"user_id": self.alice})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.member_action(self.at, room, "ban", {"user_id": self.bob, "reason": "r"})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.membership(self.bob, room), "ban")
        r = await self.join(self.bt, room, expect=403)
        self.assertIn("banned", r.json["error"])
        # Banning someone who never joined works too.
        r = await self.member_action(self.at, room, "ban", {"user_id": self.carol})
        self.assertEqual(r.code, 200, r.body)
        r = await self.join(self.ct, room, expect=403)
        r = await self.member_action(self.at, room, "unban", {"user_id": self.bob})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.membership(self.bob, room), "leave")
        await self.join(self.bt, room)
        r = await self.member_action(self.at, room, "unban", {"user_id": self.bob})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_knock(self) -> None:
        room = await self.create_room(
            self.at, room_version="7",
            initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        )
        r = await self.request("POST", f"{V3}/knock/{q(room)}", {"reason": "let me in"}, access_token=self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"room_id": room})
        self.assertEqual(await self.membership(self.bob, room), "knock")
        # Accept the knock with an invite, then join.
        await self.invite(self.at, room, self.bob)
        await self.join(self.bt, room)
        self.assertEqual(await self.membership(self.bob, room), "join")
        # A room with another join rule refuses knocks.
        room2 = await self.create_room(self.at, room_version="7")
        r = await self.request("POST", f"{V3}/knock/{q(room2)}", {}, access_token=self.ct)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_knock_refused_before_v7(self) -> None:
        room = await self.create_room(
            self.at, room_version="6",
            initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        )
        r = await self.request("POST", f"{V3}/knock/{q(room)}", {}, access_token=self.bt)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIsNone(await self.membership(self.bob, room))

    async def restricted_room(self, version: str = "10") -> tuple[str, str]:
        space = await self.create_room(self.at, preset="public_chat")
        room = await self.create_room(
            self.at, room_version=version,
            initial_state=[{
                "type": "m.room.join_rules",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }],
        )
        return space, room

    async def test_restricted_join_allowed(self) -> None:
        space, room = await self.restricted_room()
        await self.join(self.bt, space)
        await self.join(self.bt, room)
        ev = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(ev.content["membership"], "join")
        self.assertEqual(ev.content["join_authorised_via_users_server"], self.alice)

    async def test_restricted_join_refused(self) -> None:
        space, room = await self.restricted_room()
        r = await self.join(self.bt, room, expect=403)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        self.assertIsNone(await self.membership(self.bob, room))

    async def test_restricted_join_v12(self) -> None:
        space, room = await self.restricted_room("12")
        await self.join(self.ct, space)
        await self.join(self.ct, room)
        self.assertEqual(await self.membership(self.carol, room), "join")

    async def test_membership_changes_since(self) -> None:
        store = self.hs.event_store
        start = await self.hs.globals.current_position()
        room = await self.create_room(self.at, preset="public_chat")
        await self.join(self.bt, room)
        await self.member_action(self.bt, room, "leave")
        changes = await store.membership_changes_since(self.bob, start)
        self.assertEqual([(r, m) for _, r, m in changes], [(room, "join"), (room, "leave")])
        later = await store.membership_changes_since(self.bob, changes[0][0])
        self.assertEqual([m for _, _, m in later], ["leave"])
        self.assertEqual(await store.rooms_changed_since([room], start), [room])
        self.assertEqual(await store.rooms_changed_since([room], changes[-1][0]), [])

    async def test_member_counts(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", invite=[self.carol])
        await self.join(self.bt, room)
        info = await self.hs.event_store.get_room(room)
        head = await self.hs.event_store.head(info)
        self.assertEqual((head.joined, head.invited), (2, 1))
        await self.join(self.ct, room)
        head = await self.hs.event_store.head(info)
        self.assertEqual((head.joined, head.invited), (3, 0))


class ProfileAndDeactivationHooksTests(RoomsTestCase):
    async def test_displayname_change_updates_rooms(self) -> None:
        alice, at = await self.user("alice")
        room1 = await self.create_room(at)
        room2 = await self.create_room(at)
        r = await self.request(
            "PUT", f"{V3}/profile/{q(alice)}/displayname", {"displayname": "Alice A."}, access_token=at
        )
        self.assertEqual(r.code, 200, r.body)
        for room in (room1, room2):
            ev = await self.hs.event_store.current_state_event(room, "m.room.member", alice)
            self.assertEqual(ev.content, {"membership": "join", "displayname": "Alice A."})
            self.assertIn("rs", ev.extras)

    async def test_deactivation_leaves_rooms(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat", invite=[bob])
        room2 = await self.create_room(at, preset="public_chat")
        await self.join(bt, room2)
        await self.hs.account.deactivate(bob)
        self.assertEqual(await self.hs.event_store.membership(bob, room), "leave")
        self.assertEqual(await self.hs.event_store.membership(bob, room2), "leave")
        self.assertEqual(await self.hs.event_store.members(room2), [alice])


class GuestTests(RoomsTestCase):
    config_overrides = dict(RoomsTestCase.config_overrides, allow_guest_registration=True)

    async def test_guest_join_needs_can_join(self) -> None:
        alice, at = await self.user("alice")
        r = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        gt = r.json["access_token"]
        closed = await self.create_room(at, preset="public_chat")  # guest_access forbidden
        r = await self.join(gt, closed, expect=403)
        self.assertEqual(r.json["errcode"], "M_GUEST_ACCESS_FORBIDDEN")
        open_room = await self.create_room(
            at, preset="public_chat",
            initial_state=[{"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}],
        )
        await self.join(gt, open_room)
        await self.send_ok(gt, open_room)
        r = await self.request("POST", V3 + "/createRoom", {}, access_token=gt)
        self.assertEqual(r.code, 403)


class MemberStateTests(RoomsTestCase):
    """m.room.member through PUT /state and custom content on /join."""

    async def test_own_member_event_through_state(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        # A per-room display name and avatar on one's own join event.
        content = {"membership": "join", "displayname": "Bobby", "avatar_url": "mxc://test/b"}
        r = await self.put_state(bt, room, "m.room.member", content, bob)
        self.assertEqual(r.code, 200, r.body)
        member = await self.hs.event_store.current_state_event(room, "m.room.member", bob)
        self.assertEqual(member.content, content)
        self.assertEqual(member.event_id, r.json["event_id"])
        # Other changes follow the auth rules: bob (PL 0) cannot kick alice
        # nor set her display name, and cannot join himself to a private room.
        r = await self.put_state(bt, room, "m.room.member", {"membership": "join", "displayname": "x"}, alice)
        self.assertEqual(r.code, 403, r.body)
        r = await self.put_state(bt, room, "m.room.member", {"membership": "leave"}, alice)
        self.assertEqual(r.code, 403, r.body)
        private = await self.create_room(at, preset="private_chat")
        r = await self.put_state(bt, private, "m.room.member", {"membership": "join"}, bob)
        self.assertEqual(r.code, 403, r.body)
        # Alice (PL 100) may kick bob through /state; bob may leave himself.
        r = await self.put_state(at, room, "m.room.member", {"membership": "leave"}, bob)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.hs.event_store.membership(bob, room), "leave")
        r = await self.put_state(bt, room, "m.room.member", {"displayname": "no membership"}, bob)
        self.assertEqual(r.code, 400, r.body)
        self.assertEqual(r.json["errcode"], "M_BAD_JSON")

    async def test_join_reason_in_member_event(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        room = await self.create_room(at, preset="public_chat")
        r = await self.request(
            "POST", f"{V3}/join/{q(room)}", {"reason": "hello there"}, access_token=bt
        )
        self.assertEqual(r.code, 200, r.body)
        member = await self.hs.event_store.current_state_event(room, "m.room.member", bob)
        self.assertEqual(member.content.get("reason"), "hello there")
        r = await self.member_action(ct, room, "join", {"reason": "me too"})
        self.assertEqual(r.code, 200, r.body)
        member = await self.hs.event_store.current_state_event(room, "m.room.member", carol)
        self.assertEqual(member.content.get("reason"), "me too")
        self.assertEqual(member.content.get("membership"), "join")

    async def test_join_keeps_custom_content(self) -> None:
        """Custom keys of the join body reach the member event; reserved ones do not."""
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        body = {"reason": "hi", "com.example.tag": {"x": 1}, "membership": "leave", "displayname": "Evil"}
        r = await self.request("POST", f"{V3}/join/{q(room)}", body, access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        member = await self.hs.event_store.current_state_event(room, "m.room.member", bob)
        self.assertEqual(member.content["com.example.tag"], {"x": 1})
        self.assertEqual(member.content["membership"], "join")
        self.assertEqual(member.content["reason"], "hi")
        self.assertEqual(member.content.get("displayname"), "bob")


class GuestAccessChangeTests(RoomsTestCase):
    config_overrides = dict(RoomsTestCase.config_overrides, allow_guest_registration=True)

    async def test_guests_leave_when_guest_access_forbidden(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        r = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        guest, gt = r.json["user_id"], r.json["access_token"]
        room = await self.create_room(
            at, preset="public_chat",
            initial_state=[{"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}],
        )
        await self.join(gt, room)
        await self.join(bt, room)
        r = await self.put_state(at, room, "m.room.guest_access", {"guest_access": "forbidden"})
        self.assertEqual(r.code, 200, r.body)
        store = self.hs.event_store
        self.assertEqual(await store.membership(guest, room), "leave")
        self.assertEqual(await store.membership(bob, room), "join")
        self.assertEqual(await store.membership(alice, room), "join")
        leave = await store.current_state_event(room, "m.room.member", guest)
        self.assertEqual(leave.sender, guest)
