"""Sending events, state, redactions, GET /event and history visibility."""

from __future__ import annotations

from conduit_tw.events.room_versions import get_room_version
from conduit_tw.events.redaction import redact_pdu
from tests.api.rooms import V3, RoomsTestCase, q


class SendTests(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")

    async def test_send_and_get(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        await self.join(self.bt, room)
        eid = await self.send_ok(self.at, room, {"msgtype": "m.text", "body": "hi"}, txn="abc")
        r = await self.get_event(self.at, room, eid)
        self.assertEqual(r.code, 200, r.body)
        ev = r.json
        self.assertEqual(
            {k: ev[k] for k in ("event_id", "type", "content", "sender", "room_id")},
            {"event_id": eid, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"},
             "sender": self.alice, "room_id": room},
        )
        self.assertEqual(ev["unsigned"]["transaction_id"], "abc")
        self.assertIsInstance(ev["unsigned"]["age"], int)
        self.assertNotIn("state_key", ev)
        # Another user does not see the transaction ID.
        r = await self.get_event(self.bt, room, eid)
        self.assertNotIn("transaction_id", r.json["unsigned"])
        # The event is built per the engine: prev_events = the previous event.
        stored = await self.hs.event_store.get_event(eid)
        latest = await self.hs.event_store.latest_events(room, 2)
        self.assertEqual(latest[0].event_id, eid)
        self.assertEqual(stored.prev_event_ids(), [latest[1].event_id])
        self.assertEqual(stored.depth, latest[1].depth + 1)

    async def test_non_member_send_refused(self) -> None:
        room = await self.create_room(self.at)
        r = await self.send(self.bt, room)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIn("not in the room", r.json["error"])

    async def test_unknown_room(self) -> None:
        r = await self.send(self.at, "!nope:test")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_power_level_to_send(self) -> None:
        room = await self.create_room(
            self.at, preset="public_chat", power_level_content_override={"events_default": 10}
        )
        await self.join(self.bt, room)
        r = await self.send(self.bt, room)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIn("Insufficient power level", r.json["error"])

    async def test_txn_replay(self) -> None:
        room = await self.create_room(self.at)
        first = await self.send_ok(self.at, room, txn="same")
        again = await self.send_ok(self.at, room, {"body": "different"}, txn="same")
        self.assertEqual(first, again)
        self.assertEqual(len(await self.hs.event_store.latest_events(room, 100)), 7)
        # Another device of the same user has its own transaction IDs.
        r = await self.login("alice")
        other = await self.send_ok(r.json["access_token"], room, txn="same")
        self.assertNotEqual(other, first)
        # ... and the mapping survives a restart.
        await self.restart()
        self.assertEqual(await self.send_ok(self.at, room, txn="same"), first)
        r = await self.get_event(self.at, room, first)
        self.assertEqual(r.json["unsigned"]["transaction_id"], "same")

    async def test_state_put_get(self) -> None:
        room = await self.create_room(self.at)
        r = await self.put_state(self.at, room, "org.example.s", {"v": 1}, state_key="k/with/slash")
        self.assertEqual(r.code, 200, r.body)
        eid = r.json["event_id"]
        r = await self.get_state(self.at, room, "org.example.s", "k/with/slash")
        self.assertEqual(r.json, {"v": 1})
        r = await self.request(
            "GET", f"{V3}/rooms/{q(room)}/state/org.example.s/{q('k/with/slash')}?format=event",
            access_token=self.at,
        )
        self.assertEqual((r.json["event_id"], r.json["state_key"]), (eid, "k/with/slash"))
        # Empty state key, with and without a trailing slash.
        r = await self.request(
            "PUT", f"{V3}/rooms/{q(room)}/state/m.room.name", {"name": "A"}, access_token=self.at
        )
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", f"{V3}/rooms/{q(room)}/state/m.room.name/", access_token=self.at)
        self.assertEqual(r.json, {"name": "A"})
        r = await self.put_state(self.at, room, "m.room.name", {"name": "B"})
        name_b = r.json["event_id"]
        r = await self.get_event(self.at, room, name_b)
        self.assertEqual(r.json["unsigned"]["prev_content"], {"name": "A"})
        self.assertIn("replaces_state", r.json["unsigned"])
        # Same content again: no new event.
        r = await self.put_state(self.at, room, "m.room.name", {"name": "B"})
        self.assertEqual(r.json["event_id"], name_b)
        r = await self.get_state(self.at, room, "m.room.nothing")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # Non-members cannot read state of a shared room.
        r = await self.get_state(self.bt, room, "m.room.name")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", f"{V3}/rooms/{q(room)}/state", access_token=self.bt)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        # m.room.member goes through the auth rules (own join event: allowed);
        # a state key that is not a local user ID is refused.
        r = await self.put_state(self.at, room, "m.room.member", {"membership": "join"}, self.alice)
        self.assertEqual(r.code, 200, r.body)
        r = await self.put_state(self.at, room, "m.room.member", {"membership": "join"}, "nobody")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_state_after_leaving_is_frozen(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", name="one")
        await self.join(self.bt, room)
        await self.member_action(self.bt, room, "leave")
        await self.put_state(self.at, room, "m.room.name", {"name": "two"})
        r = await self.get_state(self.bt, room, "m.room.name")
        self.assertEqual(r.json, {"name": "one"})

    async def test_world_readable_state(self) -> None:
        room = await self.create_room(
            self.at, name="wr",
            initial_state=[{"type": "m.room.history_visibility",
                            "content": {"history_visibility": "world_readable"}}],
        )
        r = await self.get_state(self.bt, room, "m.room.name")
        self.assertEqual(r.json, {"name": "wr"})

    async def test_canonical_alias_checked(self) -> None:
        room = await self.create_room(self.at, room_alias_name="mine")
        other = await self.create_room(self.at)
        r = await self.put_state(self.at, other, "m.room.canonical_alias", {"alias": "#mine:test"})
        self.assertMatrixError(r, 400, "M_BAD_ALIAS")
        r = await self.put_state(self.at, room, "m.room.canonical_alias", {"alias": "#mine:test"})
        self.assertEqual(r.code, 200, r.body)


class RedactionTests(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")

    async def redact(self, token: str, room: str, event_id: str, txn: str = "r1", **body):
        return await self.request(
            "PUT", f"{V3}/rooms/{q(room)}/redact/{q(event_id)}/{txn}", body, access_token=token
        )

    async def check_redaction(self, version: str) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version=version)
        await self.join(self.bt, room)
        eid = await self.send_ok(self.bt, room, {"msgtype": "m.text", "body": "secret"})
        original = (await self.hs.event_store.get_event(eid)).pdu
        r = await self.redact(self.bt, room, eid, reason="oops")
        self.assertEqual(r.code, 200, r.body)
        rid = r.json["event_id"]
        # Idempotent per txn ID.
        r = await self.redact(self.bt, room, eid)
        self.assertEqual(r.json["event_id"], rid)
        r = await self.get_event(self.at, room, eid)
        self.assertEqual(r.json["content"], {})
        because = r.json["unsigned"]["redacted_because"]
        self.assertEqual(because["event_id"], rid)
        self.assertEqual(because["redacts"], eid)
        self.assertEqual(because["content"]["reason"], "oops")
        stored = await self.hs.event_store.get_event(eid)
        self.assertEqual(stored.pdu, redact_pdu(original, get_room_version(version)))
        redaction = await self.hs.event_store.get_event(rid)
        if version in ("11", "12"):
            self.assertEqual(redaction.content["redacts"], eid)
        else:
            self.assertEqual(redaction.pdu["redacts"], eid)
        r = await self.get_event(self.at, room, rid)
        self.assertEqual(r.json["redacts"], eid)

    async def test_redaction_v1(self) -> None:
        await self.check_redaction("1")

    async def test_redaction_v6(self) -> None:
        await self.check_redaction("6")

    async def test_redaction_v10(self) -> None:
        await self.check_redaction("10")

    async def test_redaction_v11(self) -> None:
        await self.check_redaction("11")

    async def test_redaction_v12(self) -> None:
        await self.check_redaction("12")

    async def test_redaction_keeps_state_keys(self) -> None:
        room = await self.create_room(self.at, room_version="11")
        r = await self.put_state(self.at, room, "m.room.join_rules", {"join_rule": "public", "x": 1})
        eid = r.json["event_id"]
        r = await self.redact(self.at, room, eid)
        self.assertEqual(r.code, 200, r.body)
        r = await self.get_state(self.at, room, "m.room.join_rules")
        self.assertEqual(r.json, {"join_rule": "public"})
        # The redacted state still authorises: bob can join the public room.
        await self.join(self.bt, room)

    async def test_redacting_others_needs_power(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        await self.join(self.bt, room)
        eid = await self.send_ok(self.at, room)
        r = await self.redact(self.bt, room, eid)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        bob_msg = await self.send_ok(self.bt, room)
        r = await self.redact(self.at, room, bob_msg, txn="r2")
        self.assertEqual(r.code, 200, r.body)
        r = await self.redact(self.at, room, "$unknown", txn="r3")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_legacy_post_redact(self) -> None:
        room = await self.create_room(self.at)
        eid = await self.send_ok(self.at, room)
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/redact/{q(eid)}", {}, access_token=self.at
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual((await self.get_event(self.at, room, eid)).json["content"], {})


class HistoryVisibilityTests(RoomsTestCase):
    """GET /event per history visibility (one test per value)."""

    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")
        self.eve, self.et = await self.user("eve")

    async def room_with(self, visibility: str) -> str:
        return await self.create_room(
            self.at, preset="public_chat",
            initial_state=[{"type": "m.room.history_visibility",
                            "content": {"history_visibility": visibility}}],
        )

    async def visible(self, token: str, room: str, eid: str) -> bool:
        r = await self.get_event(token, room, eid)
        if r.code == 404:
            self.assertEqual(r.json["errcode"], "M_NOT_FOUND")
            return False
        self.assertEqual(r.code, 200, r.body)
        return True

    async def test_world_readable(self) -> None:
        room = await self.room_with("world_readable")
        eid = await self.send_ok(self.at, room)
        self.assertTrue(await self.visible(self.et, room, eid))

    async def test_shared(self) -> None:
        room = await self.room_with("shared")
        before = await self.send_ok(self.at, room)
        self.assertFalse(await self.visible(self.bt, room, before))
        await self.join(self.bt, room)
        self.assertTrue(await self.visible(self.bt, room, before))
        await self.member_action(self.bt, room, "leave")
        after_leave = await self.send_ok(self.at, room)
        self.assertFalse(await self.visible(self.bt, room, after_leave))
        self.assertTrue(await self.visible(self.bt, room, before))
        self.assertFalse(await self.visible(self.et, room, before))

    async def test_invited(self) -> None:
        room = await self.room_with("invited")
        before = await self.send_ok(self.at, room)
        await self.invite(self.at, room, self.bob)
        while_invited = await self.send_ok(self.at, room)
        await self.join(self.bt, room)
        joined = await self.send_ok(self.at, room)
        self.assertFalse(await self.visible(self.bt, room, before))
        self.assertTrue(await self.visible(self.bt, room, while_invited))
        self.assertTrue(await self.visible(self.bt, room, joined))

    async def test_joined(self) -> None:
        room = await self.room_with("joined")
        before = await self.send_ok(self.at, room)
        await self.invite(self.at, room, self.bob)
        while_invited = await self.send_ok(self.at, room)
        await self.join(self.bt, room)
        joined = await self.send_ok(self.at, room)
        self.assertFalse(await self.visible(self.bt, room, before))
        self.assertFalse(await self.visible(self.bt, room, while_invited))
        self.assertTrue(await self.visible(self.bt, room, joined))
        # Own membership events are visible (state before or after).
        invite = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertTrue(await self.visible(self.bt, room, invite.event_id))

    async def test_history_visibility_event_itself(self) -> None:
        room = await self.room_with("joined")
        r = await self.put_state(
            self.at, room, "m.room.history_visibility", {"history_visibility": "world_readable"}
        )
        # Visible to outsiders because the state after it allows it.
        self.assertTrue(await self.visible(self.et, room, r.json["event_id"]))

    async def test_filter_events_for_user(self) -> None:
        room = await self.room_with("joined")
        hidden = await self.send_ok(self.at, room)
        await self.join(self.bt, room)
        mine = await self.send_ok(self.at, room)
        events = await self.hs.event_store.latest_events(room, 100)
        seen = [e.event_id for e in await self.hs.visibility.filter_events_for_user(self.bob, events)]
        self.assertEqual(seen[0], mine)
        self.assertNotIn(hidden, seen)
        join = await self.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(seen[1], join.event_id)
        # The events before m.room.history_visibility was set were "shared"
        # (the default), so a member who joined later sees them.
        hv = await self.hs.event_store.current_state_event(room, "m.room.history_visibility", "")
        self.assertEqual(seen[2], hv.event_id)
        self.assertEqual(events[-1].type, "m.room.create")
        self.assertEqual(seen[-1], events[-1].event_id)

    async def test_wrong_room_or_unknown_event(self) -> None:
        room = await self.room_with("shared")
        other = await self.room_with("shared")
        eid = await self.send_ok(self.at, room)
        r = await self.get_event(self.at, other, eid)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get_event(self.at, room, "$nope")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")


class NotifierTests(RoomsTestCase):
    async def test_send_wakes_room_and_member_waiters(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        notifier = self.hs.notifier
        by_room = notifier.wait("@someone:test", [room], 30)
        by_user = notifier.wait(bob, [], 30)
        eid = await self.send_ok(at, room)
        self.assertEqual(self.successResultOf(by_room), True)
        self.assertNoResult(by_user)
        await self.join(bt, room)
        self.assertEqual(self.successResultOf(by_user), True)
        event = await self.hs.event_store.get_event(eid)
        self.assertGreaterEqual(notifier.position, event.position)
