"""GET /rooms/{roomId}/hierarchy and /room_summary (handlers/spaces.py, room_summary.py)."""

from __future__ import annotations

from typing import Any

from tests.api.rooms import RoomsTestCase, q

V1 = "/_matrix/client/v1"


class SpaceTestCase(RoomsTestCase):
    """Helpers: spaces and their children."""

    async def space(self, token: str, **body: Any) -> str:
        return await self.create_room(token, creation_content={"type": "m.space"}, **body)

    async def add_child(self, token: str, space: str, child: str, **content: Any) -> None:
        content.setdefault("via", [self.hs.server_name])
        r = await self.put_state(token, space, "m.space.child", content, child)
        self.assertEqual(r.code, 200, r.body)

    async def hierarchy(self, token: str, room_id: str, query: str = "", expect: int = 200):
        r = await self.request(
            "GET", f"{V1}/rooms/{q(room_id)}/hierarchy{query}", access_token=token
        )
        self.assertEqual(r.code, expect, r.body)
        return r


class HierarchyTests(SpaceTestCase):
    """Walking a space tree of local rooms."""

    async def _start(self) -> None:
        await super()._start()
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")
        at = self.at
        self.space_id = await self.space(at, preset="public_chat", name="Space")
        self.public = await self.create_room(at, preset="public_chat", name="Public")
        self.private = await self.create_room(at, name="Private")
        self.restricted = await self.create_room(
            at, room_version="10", initial_state=[{
                "type": "m.room.join_rules", "state_key": "",
                "content": {"join_rule": "restricted", "allow": [
                    {"type": "m.room_membership", "room_id": self.space_id}]},
            }],
        )
        self.sub = await self.space(at, preset="public_chat", name="Sub")
        self.deep = await self.create_room(
            at, initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                "content": {"history_visibility": "world_readable"}}],
        )
        await self.add_child(at, self.space_id, self.public, order="b")
        await self.add_child(at, self.space_id, self.private, order="c")
        await self.add_child(at, self.space_id, self.restricted, suggested=True)
        await self.add_child(at, self.space_id, self.sub, order="a", suggested=True)
        await self.add_child(at, self.sub, self.deep, order="a")
        await self.add_child(at, self.sub, self.space_id, order="b")  # a loop
        await self.join(self.bt, self.space_id)

    def ids(self, r: Any) -> list[str]:
        return [room["room_id"] for room in r.json["rooms"]]

    async def test_walk_and_visibility(self) -> None:
        r = await self.hierarchy(self.bt, self.space_id)
        # Depth first, "a" < "b" < "c" < no order; the private room is hidden.
        self.assertEqual(
            self.ids(r), [self.space_id, self.sub, self.deep, self.public, self.restricted]
        )
        self.assertNotIn("next_batch", r.json)
        root = r.json["rooms"][0]
        self.assertEqual(root["room_type"], "m.space")
        self.assertEqual(root["name"], "Space")
        self.assertEqual(root["num_joined_members"], 2)
        self.assertEqual(root["join_rule"], "public")
        children = [c["state_key"] for c in root["children_state"]]
        self.assertEqual(children, [self.sub, self.public, self.private, self.restricted])
        for c in root["children_state"]:
            self.assertEqual(c["type"], "m.space.child")
            self.assertEqual(c["sender"], self.alice)
            self.assertIsInstance(c["origin_server_ts"], int)
        restricted = r.json["rooms"][4]
        self.assertEqual(restricted["allowed_room_ids"], [self.space_id])
        self.assertEqual(restricted["room_version"], "10")
        self.assertEqual(restricted["children_state"], [])
        # Alice is in every room: she sees the private one too.
        r = await self.hierarchy(self.at, self.space_id)
        self.assertIn(self.private, self.ids(r))

    async def test_restricted_needs_allowed_membership(self) -> None:
        carol, ct = await self.user("carol")
        # Carol is in no room: the space is public, the restricted room is not for her.
        r = await self.hierarchy(ct, self.space_id)
        self.assertNotIn(self.restricted, self.ids(r))
        self.assertNotIn(self.private, self.ids(r))

    async def test_max_depth_and_suggested(self) -> None:
        r = await self.hierarchy(self.bt, self.space_id, "?max_depth=0")
        self.assertEqual(self.ids(r), [self.space_id])
        r = await self.hierarchy(self.bt, self.space_id, "?max_depth=1")
        self.assertEqual(self.ids(r), [self.space_id, self.sub, self.public, self.restricted])
        r = await self.hierarchy(self.bt, self.space_id, "?suggested_only=true")
        self.assertEqual(self.ids(r), [self.space_id, self.sub, self.restricted])

    async def test_pagination(self) -> None:
        full = self.ids(await self.hierarchy(self.bt, self.space_id))
        pages: list[str] = []
        token = None
        while True:
            query = "?limit=2" + ("&from=" + q(token) if token else "")
            r = await self.hierarchy(self.bt, self.space_id, query)
            self.assertLessEqual(len(r.json["rooms"]), 2)
            pages.extend(self.ids(r))
            token = r.json.get("next_batch")
            if token is None:
                break
        self.assertEqual(pages, full)
        r = await self.hierarchy(self.bt, self.space_id, "?limit=1&max_depth=1")
        token = r.json["next_batch"]
        r = await self.hierarchy(self.bt, self.space_id, "?from=%s&max_depth=2" % q(token), 400)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.hierarchy(self.bt, self.space_id, "?from=%s&suggested_only=true" % q(token), 400)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        # Omitted parameters come from the token.
        r = await self.hierarchy(self.bt, self.space_id, "?limit=10&from=%s" % q(token))
        self.assertEqual(self.ids(r), [self.sub, self.public, self.restricted])
        r = await self.hierarchy(self.bt, self.sub, "?from=%s" % q(token), 400)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.hierarchy(self.bt, self.space_id, "?from=garbage", 400)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_bad_parameters(self) -> None:
        for query in ("?limit=0", "?max_depth=-1", "?limit=x", "?suggested_only=maybe"):
            r = await self.hierarchy(self.bt, self.space_id, query, 400)
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_root_refused(self) -> None:
        r = await self.hierarchy(self.bt, self.private, expect=403)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.hierarchy(self.bt, "!unknown:" + self.hs.server_name, expect=403)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", f"{V1}/rooms/{q(self.space_id)}/hierarchy")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        # Banned from a public space.
        r = await self.member_action(self.at, self.space_id, "ban", {"user_id": self.bob})
        self.assertEqual(r.code, 200, r.body)
        r = await self.hierarchy(self.bt, self.space_id, expect=403)

    async def test_removed_child(self) -> None:
        r = await self.put_state(self.at, self.space_id, "m.space.child", {}, self.public)
        self.assertEqual(r.code, 200, r.body)
        r = await self.hierarchy(self.bt, self.space_id)
        self.assertNotIn(self.public, self.ids(r))
        children = [c["state_key"] for c in r.json["rooms"][0]["children_state"]]
        self.assertNotIn(self.public, children)

    async def test_remote_children(self) -> None:
        remote = "!remote:elsewhere.example"
        hidden = "!hidden:elsewhere.example"
        await self.add_child(self.at, self.sub, remote, via=["elsewhere.example"])
        await self.add_child(self.at, self.sub, hidden, via=["elsewhere.example"])
        # Without the federation hook (federation off) they are skipped.
        self.hs.spaces.remote_hierarchy = None
        r = await self.hierarchy(self.bt, self.sub)
        self.assertEqual(self.ids(r), [self.sub, self.deep, self.space_id, self.public, self.restricted])
        asked: list[tuple[str, list[str]]] = []

        async def remote_hierarchy(room_id: str, via: list[str]) -> dict[str, Any] | None:
            asked.append((room_id, via))
            if room_id == hidden:
                return {"room": {"room_id": hidden, "num_joined_members": 1, "join_rule": "invite",
                                 "world_readable": False, "guest_can_join": False,
                                 "children_state": []}, "children": []}
            return {"room": {"room_id": remote, "num_joined_members": 3, "name": "Far",
                             "join_rule": "public", "world_readable": False,
                             "guest_can_join": False, "children_state": []},
                    "children": []}

        self.hs.spaces.remote_hierarchy = remote_hierarchy
        r = await self.hierarchy(self.bt, self.sub)
        self.assertIn(remote, self.ids(r))
        self.assertNotIn(hidden, self.ids(r))
        self.assertIn((remote, ["elsewhere.example"]), asked)


class SummaryTests(SpaceTestCase):
    """GET /room_summary/{roomIdOrAlias} and the unstable MSC3266 path."""

    async def test_summary(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        public = await self.create_room(
            at, preset="public_chat", name="Pub", topic="Talk", room_alias_name="pub",
            room_version="11",
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
        )
        private = await self.create_room(at, name="Secret")
        r = await self.request("GET", f"{V1}/room_summary/{q(public)}", access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["room_id"], public)
        self.assertEqual(r.json["name"], "Pub")
        self.assertEqual(r.json["topic"], "Talk")
        self.assertEqual(r.json["room_version"], "11")
        self.assertEqual(r.json["encryption"], "m.megolm.v1.aes-sha2")
        self.assertEqual(r.json["canonical_alias"], "#pub:" + self.hs.server_name)
        self.assertEqual(r.json["num_joined_members"], 1)
        self.assertEqual(r.json["membership"], "leave")
        # By alias, unauthenticated, and at the unstable path.
        alias = q("#pub:" + self.hs.server_name)
        r = await self.request("GET", f"{V1}/room_summary/{alias}")
        self.assertEqual(r.code, 200, r.body)
        self.assertNotIn("membership", r.json)
        r = await self.request(
            "GET", f"/_matrix/client/unstable/im.nheko.summary/rooms/{alias}/summary",
            access_token=at,
        )
        self.assertEqual((r.code, r.json.get("membership")), (200, "join"), r.body)
        # Private: members and invitees only; 404 for everyone else.
        for token in (bt, None):
            r = await self.request("GET", f"{V1}/room_summary/{q(private)}", access_token=token)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")
        await self.invite(at, private, bob)
        r = await self.request("GET", f"{V1}/room_summary/{q(private)}", access_token=bt)
        self.assertEqual((r.code, r.json.get("membership")), (200, "invite"), r.body)
        r = await self.request("GET", f"{V1}/room_summary/{q('!nope:' + self.hs.server_name)}")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", f"{V1}/room_summary/{q('#nope:' + self.hs.server_name)}")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", f"{V1}/room_summary/nothing")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("GET", f"{V1}/room_summary/{q(public)}", access_token="bad")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_knock_room(self) -> None:
        _, at = await self.user("alice")
        _, bt = await self.user("bob")
        knock = await self.create_room(
            at, room_version="7", initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                  "content": {"join_rule": "knock"}}],
        )
        r = await self.request("GET", f"{V1}/room_summary/{q(knock)}", access_token=bt)
        self.assertEqual((r.code, r.json.get("join_rule")), (200, "knock"), r.body)
        old = await self.create_room(
            at, room_version="6", initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                  "content": {"join_rule": "knock"}}],
        )
        r = await self.request("GET", f"{V1}/room_summary/{q(old)}", access_token=bt)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
