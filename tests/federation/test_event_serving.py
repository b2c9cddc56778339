"""
The event retrieval endpoints (federation/event_serving.py,
api/federation/events.py): only to servers that have (had) users in the
room, events filtered by what the server's users could see, ACLs, and
rejected events never served.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from conduit_tw.errors import MatrixError
from conduit_tw.federation.pdu_checks import PduRejected
from tests.federation.rooms import BOB, MALLORY, REMOTE, FederatedRoomTestCase

MSG = {"msgtype": "m.text", "body": "hi"}
V1 = "/_matrix/federation/v1"


def q(s: str) -> str:
    return quote(s, safe="")


class ServingTests(FederatedRoomTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.serving = self.hs.federation_serving

    async def assertRefused(self, d: Any, code: int = 403) -> MatrixError:
        with self.assertRaises(MatrixError) as caught:
            await d
        self.assertEqual(caught.exception.code, code)
        return caught.exception

    async def test_server_without_members_refused(self) -> None:
        msg = await self.local(content=MSG)
        await self.assertRefused(self.serving.get_event(REMOTE, msg))
        await self.assertRefused(self.serving.get_state_ids(REMOTE, self.room_id, msg))
        await self.assertRefused(self.serving.backfill(REMOTE, self.room_id, [msg], 10))
        await self.assertRefused(self.serving.get_missing_events(
            REMOTE, self.room_id, {"earliest_events": [], "latest_events": [msg]}))
        await self.assertRefused(self.serving.get_event_auth(REMOTE, self.room_id, msg))

    async def test_member_server_served(self) -> None:
        join = await self.join_bob()
        msg = await self.local(content=MSG)
        answer = await self.serving.get_event(REMOTE, msg)
        self.assertEqual(answer["origin"], "test")
        self.assertEqual(len(answer["pdus"]), 1)
        pdu = answer["pdus"][0]
        self.assertEqual(pdu["content"], MSG)
        self.assertNotIn("unsigned", pdu)
        self.assertIn("signatures", pdu)
        self.assertEqual(pdu, self.remote.events[msg])  # exactly what was signed

        ids = await self.serving.get_state_ids(REMOTE, self.room_id, msg)
        self.assertIn(join, ids["pdu_ids"])
        expected = await self.store.state_ids((await self.stored(msg)).state_before)
        self.assertEqual(sorted(ids["pdu_ids"]), sorted(expected.values()))
        self.assertLessEqual(set(ids["auth_chain_ids"]), set(self.remote.events))
        full = await self.serving.get_state(REMOTE, self.room_id, msg)
        self.assertEqual(
            sorted(self.remote.events[i]["type"] for i in ids["pdu_ids"]),
            sorted(p["type"] for p in full["pdus"]),
        )
        self.assertEqual(len(full["auth_chain"]), len(ids["auth_chain_ids"]))

        auth = await self.serving.get_event_auth(REMOTE, self.room_id, msg)
        chain = {p["type"] for p in auth["auth_chain"]}
        self.assertIn("m.room.power_levels", chain)
        room = await self.store.get_room(self.room_id)
        if room.version.create_event_in_auth_events:  # v12: implied by the room ID
            self.assertIn("m.room.create", chain)

    async def test_backfill_and_missing_events(self) -> None:
        join = await self.join_bob()
        sent = [await self.local(content={"msgtype": "m.text", "body": str(i)}) for i in range(5)]
        answer = await self.serving.backfill(REMOTE, self.room_id, [sent[-1]], 3)
        self.assertEqual(
            [p["content"]["body"] for p in answer["pdus"]], ["4", "3", "2"]
        )
        missing = await self.serving.get_missing_events(
            REMOTE, self.room_id,
            {"earliest_events": [join], "latest_events": [sent[-1]], "limit": 10},
        )
        self.assertEqual([p["content"]["body"] for p in missing["events"]], ["0", "1", "2", "3"])
        # Defaults: limit 10, min_depth 0; min_depth cuts older events.
        depth = self.remote.events[sent[2]]["depth"]
        cut = await self.serving.get_missing_events(
            REMOTE, self.room_id,
            {"earliest_events": [], "latest_events": [sent[-1]], "min_depth": depth},
        )
        self.assertEqual([p["content"]["body"] for p in cut["events"]], ["2", "3"])

    async def test_get_missing_events_bad_body(self) -> None:
        await self.join_bob()
        for body in ({}, {"earliest_events": [], "latest_events": "x"},
                     {"earliest_events": [], "latest_events": [], "limit": "5"}, []):
            error = await self.assertRefused(
                self.serving.get_missing_events(REMOTE, self.room_id, body), 400
            )
            self.assertEqual(error.errcode, "M_BAD_JSON")

    async def test_events_after_the_server_left_not_served(self) -> None:
        await self.join_bob()
        before = await self.local(content={"msgtype": "m.text", "body": "before"})
        leave, pdu = self.remote.make(
            BOB, "m.room.member", {"membership": "leave"}, [before], state_key=BOB
        )
        await self.receive(pdu)
        await self.teach()
        after = await self.local(content={"msgtype": "m.text", "body": "after"})
        served = await self.serving.get_event(REMOTE, before)
        self.assertEqual(served["pdus"], [self.remote.events[before]])
        await self.assertRefused(self.serving.get_event(REMOTE, after))
        await self.assertRefused(self.serving.get_state_ids(REMOTE, self.room_id, after))
        answer = await self.serving.backfill(REMOTE, self.room_id, [after], 10)
        bodies = [p["content"].get("body") for p in answer["pdus"]]
        self.assertNotIn("after", bodies)
        self.assertIn("before", bodies)
        missing = await self.serving.get_missing_events(
            REMOTE, self.room_id, {"earliest_events": [], "latest_events": [after], "limit": 50}
        )
        self.assertNotIn("after", [p["content"].get("body") for p in missing["events"]])
        # A room made world readable is readable again.
        await self.local("m.room.history_visibility", {"history_visibility": "world_readable"}, "")
        later = await self.local(content={"msgtype": "m.text", "body": "later"})
        self.assertEqual(len((await self.serving.get_event(REMOTE, later))["pdus"]), 1)

    async def test_acl_refused(self) -> None:
        await self.join_bob()
        msg = await self.local(content=MSG)
        await self.local("m.room.server_acl", {"allow": ["*"], "deny": ["*.example"]}, "")
        error = await self.assertRefused(self.serving.get_event(REMOTE, msg))
        self.assertEqual(error.errcode, "M_FORBIDDEN")
        self.assertIn("ACL", error.to_json()["error"])
        await self.assertRefused(self.serving.backfill(REMOTE, self.room_id, [msg], 10))
        await self.assertRefused(self.serving.get_state(REMOTE, self.room_id, msg))

    async def test_rejected_events_not_served(self) -> None:
        join = await self.join_bob()
        bad, pdu = self.remote.make(MALLORY, "m.room.message", MSG, [join])
        with self.assertRaises(PduRejected):
            await self.receive(pdu)
        await self.assertRefused(self.serving.get_event(REMOTE, bad), 404)
        answer = await self.serving.backfill(REMOTE, self.room_id, [bad, join], 10)
        self.assertNotIn(self.remote.events[bad], answer["pdus"])

    async def test_unknown_event_or_wrong_room(self) -> None:
        await self.join_bob()
        msg = await self.local(content=MSG)
        await self.assertRefused(self.serving.get_event(REMOTE, "$nope"), 404)
        await self.assertRefused(self.serving.get_event_auth(REMOTE, "!other:test", msg), 404)
        await self.assertRefused(self.serving.backfill(REMOTE, "!other:test", [msg], 5), 404)


class StandInFederationAuth:
    """Origin from a test header (the real X-Matrix check is federation/xmatrix.py's)."""

    async def authenticate(self, request: Any) -> str:
        origin = request.getHeader("X-Test-Origin")
        if origin is None:
            raise MatrixError(401, "M_UNAUTHORIZED", "no origin")
        return origin


class ServletTests(FederatedRoomTestCase):
    async def test_unauthenticated_without_federation_auth(self) -> None:
        msg = await self.local(content=MSG)
        r = await self.request("GET", f"{V1}/event/{q(msg)}")
        self.assertMatrixError(r, 401, "M_UNAUTHORIZED")

    async def test_endpoints(self) -> None:
        self.hs.federation_auth = StandInFederationAuth()  # type: ignore[attr-defined]
        join = await self.join_bob()
        msg = await self.local(content=MSG)
        h = {"X-Test-Origin": REMOTE}
        r = await self.request("GET", f"{V1}/event/{q(msg)}", headers=h)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["pdus"], [self.remote.events[msg]])
        r = await self.request("GET", f"{V1}/event/{q(msg)}", headers={"X-Test-Origin": "x.example"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", f"{V1}/state_ids/{q(self.room_id)}?event_id={q(msg)}", headers=h)
        self.assertEqual(r.code, 200, r.body)
        self.assertIn(join, r.json["pdu_ids"])
        r = await self.request("GET", f"{V1}/state_ids/{q(self.room_id)}", headers=h)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("GET", f"{V1}/state/{q(self.room_id)}?event_id={q(msg)}", headers=h)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", f"{V1}/event_auth/{q(self.room_id)}/{q(msg)}", headers=h)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request(
            "GET", f"{V1}/backfill/{q(self.room_id)}?v={q(msg)}&limit=2", headers=h
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(len(r.json["pdus"]), 2)
        r = await self.request("GET", f"{V1}/backfill/{q(self.room_id)}?v={q(msg)}", headers=h)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request(
            "POST", f"{V1}/get_missing_events/{q(self.room_id)}",
            {"earliest_events": [], "latest_events": [msg]}, headers=h,
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertIn(self.remote.events[join], r.json["events"])


class ServingTestsV10(ServingTests):
    room_version = "10"


class BodyTypeTests(FederatedRoomTestCase):
    """POST /get_missing_events: every body key of the wrong JSON type is 400 M_BAD_JSON."""

    async def test_wrong_types(self) -> None:
        self.hs.federation_auth = StandInFederationAuth()  # type: ignore[attr-defined]
        await self.join_bob()
        msg = await self.local(content=MSG)
        path = f"{V1}/get_missing_events/{q(self.room_id)}"
        h = {"X-Test-Origin": REMOTE}
        base = {"earliest_events": [], "latest_events": [msg], "limit": 5, "min_depth": 0}
        samples = {"string": "x", "integer": 7, "number": 1.5, "boolean": True, "null": None,
                   "array": ["x"], "object": {"a": 1}}
        types = {"earliest_events": "array", "latest_events": "array", "limit": "integer",
                 "min_depth": "integer"}
        for key, spec_type in types.items():
            for t, value in samples.items():
                if t == spec_type:
                    continue
                r = await self.request("POST", path, {**base, key: value}, headers=h)
                self.assertMatrixError(r, 400, "M_BAD_JSON")
        for body in ([], "x", 3, None):
            r = await self.request("POST", path, body, headers=h)
            self.assertEqual(r.code, 400, (body, r.body))
        r = await self.request("POST", path, base, headers=h)
        self.assertEqual(r.code, 200, r.body)
