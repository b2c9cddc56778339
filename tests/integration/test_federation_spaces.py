"""
Spaces of another server through the client API, over real federation
(client-server-api "Spaces", room_summary.yaml; server-server-api
"Spaces"): Alice on A joins Bob's space on B; A holds the space but none of
its children, so A's C{GET /rooms/{space}/hierarchy} asks B's
C{/_matrix/federation/v1/hierarchy} for each child (and a subspace's
answer gives its own children); C{GET /room_summary} of a room of B that A
is not in comes from the same federation endpoint.
"""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, q
from tests.integration.test_federation_membership import Server
from tests.integration.test_federation_rooms import TwoServers, wait_for

V1 = "/_matrix/client/v1"


class RemoteSpaceTests(TwoServers):

    async def on_b(self, **body: Any) -> str:
        r = await self.b.request("POST", V3 + "/createRoom", body, self.bt)
        self.assertEqual(r.code, 200, r.body)
        return r.json["room_id"]

    async def space_on_b(self, name: str, **body: Any) -> str:
        return await self.on_b(
            preset="public_chat", name=name, creation_content={"type": "m.space"}, **body
        )

    async def add_child(self, space: str, child: str, **content: Any) -> None:
        r = await self.b.request(
            "PUT", V3 + "/rooms/%s/state/m.space.child/%s" % (q(space), q(child)),
            {"via": [self.b.name], **content}, self.bt,
        )
        self.assertEqual(r.code, 200, r.body)

    async def get(self, server: Server, path: str, token: str) -> Any:
        r = await server.request("GET", path, token=token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_hierarchy_and_summary_of_a_remote_space(self) -> None:
        space = await self.space_on_b("Team", room_alias_name="team")
        general = await self.on_b(preset="public_chat", name="General", topic="All of us",
                                  room_alias_name="general")
        random = await self.on_b(preset="public_chat", name="Random")
        secret = await self.on_b(preset="private_chat", name="Secret")
        sub = await self.space_on_b("Projects")
        deep = await self.on_b(preset="public_chat", name="Deep")
        await self.add_child(space, general, order="a", suggested=True)
        await self.add_child(space, random, order="b")
        await self.add_child(space, secret, order="c")
        await self.add_child(space, sub, order="d")
        await self.add_child(sub, deep)

        # Alice joins the space only (by its alias on B).
        self.assertEqual(await self.join_by_alias("#team:" + self.b.name, self.a, self.at), space)
        for child in (general, random, secret, sub, deep):
            self.assertFalse(await self.a.hs.event_store.room_exists(child))

        body = await self.get(self.a, V1 + "/rooms/%s/hierarchy" % q(space), self.at)
        rooms = {r["room_id"]: r for r in body["rooms"]}
        # Depth first in the spec's order; the private room is left out.
        self.assertEqual([r["room_id"] for r in body["rooms"]], [space, general, random, sub, deep])
        self.assertEqual(rooms[general]["name"], "General")
        self.assertEqual(rooms[general]["topic"], "All of us")
        self.assertEqual(rooms[general]["canonical_alias"], "#general:" + self.b.name)
        self.assertEqual(rooms[general]["num_joined_members"], 1)
        self.assertEqual(rooms[general]["join_rule"], "public")
        self.assertEqual(rooms[sub]["room_type"], "m.space")
        self.assertEqual([c["state_key"] for c in rooms[sub]["children_state"]], [deep])
        self.assertEqual(rooms[space]["num_joined_members"], 2)
        # Options apply to remote children too.
        body = await self.get(self.a, V1 + "/rooms/%s/hierarchy?suggested_only=true" % q(space), self.at)
        self.assertEqual([r["room_id"] for r in body["rooms"]], [space, general])
        body = await self.get(self.a, V1 + "/rooms/%s/hierarchy?max_depth=1" % q(space), self.at)
        self.assertEqual([r["room_id"] for r in body["rooms"]], [space, general, random, sub])
        body = await self.get(self.a, V1 + "/rooms/%s/hierarchy?limit=2" % q(space), self.at)
        self.assertEqual([r["room_id"] for r in body["rooms"]], [space, general])
        body = await self.get(
            self.a, V1 + "/rooms/%s/hierarchy?limit=2&from=%s" % (q(space), q(body["next_batch"])), self.at
        )
        self.assertEqual([r["room_id"] for r in body["rooms"]], [random, sub])

        # The summary of a room of B that A is not in: by ID with via, and by alias.
        summary = await self.get(
            self.a, V1 + "/room_summary/%s?via=%s" % (q(general), q(self.b.name)), self.at
        )
        self.assertEqual(
            {k: summary[k] for k in ("room_id", "name", "topic", "join_rule", "num_joined_members", "membership")},
            {"room_id": general, "name": "General", "topic": "All of us", "join_rule": "public",
             "num_joined_members": 1, "membership": "leave"},
        )
        summary = await self.get(self.a, V1 + "/room_summary/%s" % q("#general:" + self.b.name), self.at)
        self.assertEqual(summary["room_id"], general)
        # A private room of B is not found (nothing leaks).
        r = await self.a.request(
            "GET", V1 + "/room_summary/%s?via=%s" % (q(secret), q(self.b.name)), token=self.at
        )
        self.assertEqual(r.code, 404, r.body)

        # Once Alice joins a child, A answers for it from its own state.
        r = await self.a.request("POST", V3 + "/join/%s?via=%s" % (q(general), q(self.b.name)), {}, self.at)
        self.assertEqual(r.code, 200, r.body)
        await wait_for(lambda: self.a.hs.event_store.room_exists(general), what="general on A")
        summary = await self.get(self.a, V1 + "/room_summary/%s" % q(general), self.at)
        self.assertEqual((summary["membership"], summary["num_joined_members"]), ("join", 2))
        body = await self.get(self.a, V1 + "/rooms/%s/hierarchy" % q(space), self.at)
        self.assertEqual([r["room_id"] for r in body["rooms"]], [space, general, random, sub, deep])
