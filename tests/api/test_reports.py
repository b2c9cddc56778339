"""Reporting content (handlers/reports.py)."""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, RoomsTestCase, q


class ReportTests(RoomsTestCase):
    async def report(self, token: str, path: str, body: Any, expect: int = 200) -> Any:
        r = await self.request("POST", V3 + path, body, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def test_report_event(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        await self.join(bt, room)
        event_id = await self.send_ok(bt, room, {"msgtype": "m.text", "body": "rude"})
        body = await self.report(
            at, f"/rooms/{q(room)}/report/{q(event_id)}", {"reason": "rude", "score": -100}
        )
        self.assertEqual(body, {})
        # Without a reason (optional for events).
        await self.report(at, f"/rooms/{q(room)}/report/{q(event_id)}", {})
        reports = await self.hs.reports.store.recent()
        self.assertEqual(len(reports), 2)
        newest = reports[1][1]
        self.assertEqual(
            {k: newest[k] for k in ("kind", "reporter", "room_id", "event_id", "user_id", "reason")},
            {"kind": "event", "reporter": alice, "room_id": room, "event_id": event_id,
             "user_id": bob, "reason": "rude"},
        )
        self.assertNotIn("score", newest)

    async def test_report_event_refusals(self) -> None:
        alice, at = await self.user("alice")
        eve, et = await self.user("eve")
        room = await self.create_room(at)
        other = await self.create_room(at)
        event_id = await self.send_ok(at, room)
        # Not joined: 404, like an unknown event.
        body = await self.report(et, f"/rooms/{q(room)}/report/{q(event_id)}", {"reason": "x"}, 404)
        self.assertEqual(body["errcode"], "M_NOT_FOUND")
        # The event is in another room.
        await self.report(at, f"/rooms/{q(other)}/report/{q(event_id)}", {"reason": "x"}, 404)
        await self.report(at, f"/rooms/{q(room)}/report/{q('$nope')}", {"reason": "x"}, 404)
        body = await self.report(
            at, f"/rooms/{q(room)}/report/{q(event_id)}", {"reason": "x" * 1001}, 400
        )
        self.assertEqual(body["errcode"], "M_BAD_JSON")
        await self.report(at, f"/rooms/{q(room)}/report/{q(event_id)}", {"reason": 5}, 400)
        await self.report(at, f"/rooms/{q(room)}/report/{q(event_id)}", {"reason": "x" * 1000})

    async def test_report_event_not_visible(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(
            at, preset="public_chat", initial_state=[{
                "type": "m.room.history_visibility", "content": {"history_visibility": "joined"},
            }],
        )
        hidden = await self.send_ok(at, room)
        await self.join(bt, room)
        await self.report(bt, f"/rooms/{q(room)}/report/{q(hidden)}", {"reason": "x"}, 404)

    async def test_report_room(self) -> None:
        alice, at = await self.user("alice")
        eve, et = await self.user("eve")
        room = await self.create_room(at)
        # No membership needed (v1.13).
        await self.report(et, f"/rooms/{q(room)}/report", {"reason": "bad room"})
        await self.report(et, f"/rooms/{q(room)}/report", {"reason": ""})
        await self.report(et, f"/rooms/{q('!nope:test')}/report", {"reason": "x"}, 404)
        body = await self.report(et, f"/rooms/{q(room)}/report", {}, 400)
        self.assertEqual(body["errcode"], "M_MISSING_PARAM")
        await self.report(et, f"/rooms/{q(room)}/report", {"reason": "y" * 1001}, 400)
        (_, report), = (await self.hs.reports.store.recent(limit=1))
        self.assertEqual((report["kind"], report["room_id"], report["reporter"]), ("room", room, eve))

    async def test_report_user(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        await self.report(at, f"/users/{q(bob)}/report", {"reason": "spammer"})
        await self.report(at, f"/users/{q('@ghost:test')}/report", {"reason": "x"}, 404)
        await self.report(at, f"/users/{q(bob)}/report", {}, 400)
        (_, report), = (await self.hs.reports.store.recent(limit=1))
        self.assertEqual((report["kind"], report["user_id"]), ("user", bob))

    async def test_requires_auth(self) -> None:
        r = await self.request("POST", f"{V3}/rooms/{q('!x:test')}/report", {"reason": "x"})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")


class ReportLmdbTests(ReportTests):
    backend = "lmdb"
