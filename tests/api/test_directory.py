"""
The published room directory: C{GET/PUT /directory/list/room/{id}},
C{createRoom} with C{visibility}, C{GET/POST /publicRooms}.
"""

from __future__ import annotations

from typing import Any

from conduit_tw.handlers.remote_queries import PUBLIC_ROOMS
from tests.api.rooms import V3, RoomsTestCase, q
from tests.federation.fake_client import FakeFederationClient
from tests.server import Response


class DirectoryTestCase(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        # The first account is the server admin.
        self.admin, self.admin_t = await self.user("admin")
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")

    async def visibility(self, room_id: str, token: str | None = None) -> Response:
        return await self.request(
            "GET", f"{V3}/directory/list/room/{q(room_id)}", access_token=token
        )

    async def set_visibility(self, token: str | None, room_id: str, visibility: Any = "public",
                             body: Any = None) -> Response:
        if body is None:
            body = {"visibility": visibility}
        return await self.request(
            "PUT", f"{V3}/directory/list/room/{q(room_id)}", body, access_token=token
        )

    async def public_rooms(self, token: str | None = None, method: str = "GET",
                           expect: int | None = 200, **args: Any) -> Response:
        if method == "GET":
            query = "&".join(f"{k}={q(str(v))}" for k, v in args.items())
            path = f"{V3}/publicRooms" + ("?" + query if query else "")
            r = await self.request("GET", path, access_token=token)
        else:
            server = args.pop("server", None)
            path = f"{V3}/publicRooms" + (f"?server={q(server)}" if server else "")
            r = await self.request("POST", path, args, access_token=token)
        if expect is not None:
            self.assertEqual(r.code, expect, r.body)
        return r


class VisibilityTests(DirectoryTestCase):
    async def test_create_public_publishes(self) -> None:
        pub = await self.create_room(self.at, visibility="public")
        priv = await self.create_room(self.at, preset="public_chat")
        self.assertEqual((await self.visibility(pub)).json, {"visibility": "public"})
        self.assertEqual((await self.visibility(priv)).json, {"visibility": "private"})
        # No token needed to read it.
        r = await self.visibility(pub, self.bt)
        self.assertEqual(r.json, {"visibility": "public"})

    async def test_unknown_room(self) -> None:
        self.assertMatrixError(await self.visibility("!nope:test"), 404, "M_NOT_FOUND")
        r = await self.set_visibility(self.admin_t, "!nope:test")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_publish_unpublish(self) -> None:
        room = await self.create_room(self.at)
        r = await self.set_visibility(self.at, room, "public")
        self.assertEqual((r.code, r.json), (200, {}))
        self.assertEqual((await self.visibility(room)).json, {"visibility": "public"})
        # Idempotent.
        self.assertEqual((await self.set_visibility(self.at, room, "public")).code, 200)
        r = await self.set_visibility(self.at, room, "private")
        self.assertEqual(r.code, 200)
        self.assertEqual((await self.visibility(room)).json, {"visibility": "private"})

    async def test_default_is_public(self) -> None:
        room = await self.create_room(self.at)
        self.assertEqual((await self.set_visibility(self.at, room, body={})).code, 200)
        self.assertEqual((await self.visibility(room)).json, {"visibility": "public"})

    async def test_bad_visibility(self) -> None:
        room = await self.create_room(self.at)
        for v in ("secret", 1, None):
            r = await self.set_visibility(self.at, room, v)
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_permissions(self) -> None:
        room = await self.create_room(self.at, preset="public_chat")
        # Not in the room.
        self.assertMatrixError(await self.set_visibility(self.bt, room), 403, "M_FORBIDDEN")
        # In the room without the power to change the canonical alias.
        await self.join(self.bt, room)
        self.assertMatrixError(await self.set_visibility(self.bt, room), 403, "M_FORBIDDEN")
        self.assertEqual((await self.visibility(room)).json, {"visibility": "private"})
        # With it.
        pl = (await self.get_state(self.at, room, "m.room.power_levels")).json
        pl["users"][self.bob] = 50
        self.assertEqual((await self.put_state(self.at, room, "m.room.power_levels", pl)).code, 200)
        self.assertEqual((await self.set_visibility(self.bt, room)).code, 200)
        # A server admin, not in the room.
        self.assertEqual((await self.set_visibility(self.admin_t, room, "private")).code, 200)
        self.assertEqual((await self.visibility(room)).json, {"visibility": "private"})

    async def test_needs_token(self) -> None:
        room = await self.create_room(self.at)
        self.assertMatrixError(await self.set_visibility(None, room), 401, "M_MISSING_TOKEN")

    async def test_survives_restart(self) -> None:
        room = await self.create_room(self.at, visibility="public")
        await self.restart()
        self.assertEqual((await self.visibility(room)).json, {"visibility": "public"})
        r = await self.public_rooms(self.at)
        self.assertEqual([c["room_id"] for c in r.json["chunk"]], [room])


class LockdownTests(DirectoryTestCase):
    config_overrides = dict(RoomsTestCase.config_overrides, lockdown_public_room_directory=True)

    async def test_only_admins_publish(self) -> None:
        room = await self.create_room(self.at)
        r = await self.set_visibility(self.at, room, "public")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIn("admin", r.json["error"])
        self.assertEqual((await self.visibility(room)).json, {"visibility": "private"})
        # The admin may publish it, and the room's moderator may take it down.
        self.assertEqual((await self.set_visibility(self.admin_t, room, "public")).code, 200)
        self.assertEqual((await self.set_visibility(self.at, room, "private")).code, 200)

    async def test_create_public_refused_before_creating(self) -> None:
        before = await self.hs.event_store.joined_room_ids(self.alice)
        r = await self.request(
            "POST", V3 + "/createRoom", {"visibility": "public"}, access_token=self.at
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertEqual(await self.hs.event_store.joined_room_ids(self.alice), before)
        # Private rooms are fine, and admins may create public ones.
        await self.create_room(self.at, visibility="private")
        room = await self.create_room(self.admin_t, visibility="public")
        self.assertEqual((await self.visibility(room)).json, {"visibility": "public"})


class PublicRoomsAuthTests(DirectoryTestCase):
    config_overrides = dict(RoomsTestCase.config_overrides, allow_guest_registration=True)

    async def test_token_required_by_default(self) -> None:
        r = await self.public_rooms(None, expect=None)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.public_rooms(None, method="POST", expect=None)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        await self.public_rooms(self.at)
        await self.public_rooms(self.at, method="POST")

    async def test_guests_may_list(self) -> None:
        r = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        await self.public_rooms(r.json["access_token"])


class PublicRoomsWithoutAuthTests(DirectoryTestCase):
    config_overrides = dict(
        RoomsTestCase.config_overrides, allow_public_room_directory_without_auth=True
    )

    async def test_no_token_needed(self) -> None:
        room = await self.create_room(self.at, visibility="public")
        for method in ("GET", "POST"):
            r = await self.public_rooms(None, method=method)
            self.assertEqual([c["room_id"] for c in r.json["chunk"]], [room])

    async def test_bad_token_still_refused(self) -> None:
        r = await self.public_rooms("nonsense", expect=None)
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")


class PublicRoomsTests(DirectoryTestCase):
    async def test_empty(self) -> None:
        r = await self.public_rooms(self.at)
        self.assertEqual(r.json, {"chunk": [], "total_room_count_estimate": 0})

    async def test_fields(self) -> None:
        room = await self.create_room(
            self.at, visibility="public", preset="public_chat", name="Cheese", topic="Tasty",
            room_alias_name="cheese",
            initial_state=[
                {"type": "m.room.avatar", "content": {"url": "mxc://test/abc"}},
                {"type": "m.room.history_visibility",
                 "content": {"history_visibility": "world_readable"}},
                {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
            ],
        )
        await self.join(self.bt, room)
        r = await self.public_rooms(self.bt)
        self.assertEqual(r.json["total_room_count_estimate"], 1)
        self.assertEqual(r.json["chunk"], [{
            "room_id": room,
            "num_joined_members": 2,
            "name": "Cheese",
            "topic": "Tasty",
            "avatar_url": "mxc://test/abc",
            "canonical_alias": "#cheese:test",
            "join_rule": "public",
            "world_readable": True,
            "guest_can_join": True,
        }])
        self.assertNotIn("next_batch", r.json)
        self.assertNotIn("prev_batch", r.json)

    async def test_fields_follow_state(self) -> None:
        room = await self.create_room(self.at, visibility="public", preset="private_chat")
        chunk = (await self.public_rooms(self.at)).json["chunk"][0]
        self.assertEqual(chunk, {
            "room_id": room, "num_joined_members": 1, "join_rule": "invite",
            "world_readable": False, "guest_can_join": True,
        })
        await self.put_state(self.at, room, "m.room.name", {"name": "Later"})
        await self.put_state(self.at, room, "m.room.join_rules", {"join_rule": "knock"})
        await self.put_state(
            self.at, room, "m.room.topic",
            {"topic": "", "m.topic": {"m.text": [
                {"mimetype": "text/html", "body": "<b>rich</b>"}, {"body": "plain"},
            ]}},
        )
        chunk = (await self.public_rooms(self.at)).json["chunk"][0]
        self.assertEqual(
            (chunk["name"], chunk["join_rule"], chunk["topic"]), ("Later", "knock", "plain")
        )

    async def test_room_type(self) -> None:
        space = await self.create_room(
            self.at, visibility="public", name="A space", creation_content={"type": "m.space"}
        )
        chunk = (await self.public_rooms(self.at)).json["chunk"][0]
        self.assertEqual((chunk["room_id"], chunk["room_type"]), (space, "m.space"))

    async def test_only_published_rooms_with_members(self) -> None:
        pub = await self.create_room(self.at, visibility="public")
        await self.create_room(self.at, preset="public_chat")
        left = await self.create_room(self.bt, visibility="public")
        await self.member_action(self.bt, left, "leave")
        r = await self.public_rooms(self.at)
        self.assertEqual([c["room_id"] for c in r.json["chunk"]], [pub])
        self.assertEqual(r.json["total_room_count_estimate"], 1)

    async def test_ordered_by_members(self) -> None:
        small = await self.create_room(self.at, visibility="public", preset="public_chat")
        big = await self.create_room(self.at, visibility="public", preset="public_chat")
        await self.join(self.bt, big)
        r = await self.public_rooms(self.at)
        self.assertEqual([c["room_id"] for c in r.json["chunk"]], [big, small])
        self.assertEqual([c["num_joined_members"] for c in r.json["chunk"]], [2, 1])

    async def test_other_server(self) -> None:
        # Another server's directory is asked of it (federation queries).
        listing = {"chunk": [{"room_id": "!r:elsewhere.example", "num_joined_members": 3}]}
        client = FakeFederationClient({PUBLIC_ROOMS: listing})
        self.hs.remote_queries.client = client
        r = await self.public_rooms(self.at, server="elsewhere.example")
        self.assertEqual(r.json, listing)
        r = await self.public_rooms(
            self.at, method="POST", server="elsewhere.example", filter={"generic_search_term": "x"}
        )
        self.assertEqual(r.json, listing)
        self.assertEqual([req[:3] for req in client.requests], [
            ("GET", "elsewhere.example", PUBLIC_ROOMS), ("POST", "elsewhere.example", PUBLIC_ROOMS),
        ])
        r = await self.public_rooms(self.at, expect=None, server="not a server")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        # Our own name is the local directory.
        await self.public_rooms(self.at, server="test")
        await self.public_rooms(self.at, method="POST", server="test")

    async def test_networks(self) -> None:
        await self.create_room(self.at, visibility="public")
        r = await self.public_rooms(self.at, method="POST", include_all_networks=True)
        self.assertEqual(len(r.json["chunk"]), 1)
        r = await self.public_rooms(self.at, method="POST", third_party_instance_id="irc")
        self.assertEqual(r.json["chunk"], [])
        r = await self.public_rooms(
            self.at, method="POST", expect=None, include_all_networks=True,
            third_party_instance_id="irc",
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_bad_arguments(self) -> None:
        for body in ({"limit": "x"}, {"limit": -1}, {"limit": True}, {"since": 5},
                     {"filter": []}, {"filter": {"generic_search_term": 5}},
                     {"filter": {"room_types": "m.space"}}, {"filter": {"room_types": [1]}},
                     {"include_all_networks": "yes"}, {"third_party_instance_id": 1}):
            r = await self.public_rooms(self.at, method="POST", expect=None, **body)
            self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.public_rooms(self.at, expect=None, limit="x")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.public_rooms(self.at, expect=None, since="garbage!")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_search(self) -> None:
        a = await self.create_room(self.at, visibility="public", name="Cheese Lovers")
        b = await self.create_room(self.at, visibility="public", topic="all about CHEESE")
        c = await self.create_room(self.at, visibility="public", room_alias_name="cheeseboard")
        await self.create_room(self.at, visibility="public", name="Wine")

        async def search(term: str) -> set[str]:
            r = await self.public_rooms(
                self.at, method="POST", filter={"generic_search_term": term}
            )
            return {ch["room_id"] for ch in r.json["chunk"]}

        self.assertEqual(await search("cheese"), {a, b, c})
        self.assertEqual(await search("LOVERS"), {a})
        self.assertEqual(await search("#cheeseboard:test"), {c})
        self.assertEqual(await search("beer"), set())
        self.assertEqual(len(await search("")), 4)

    async def test_room_types_filter(self) -> None:
        plain = await self.create_room(self.at, visibility="public")
        space = await self.create_room(
            self.at, visibility="public", creation_content={"type": "m.space"}
        )
        other = await self.create_room(
            self.at, visibility="public", creation_content={"type": "org.example.custom"}
        )

        async def listed(types: Any) -> set[str]:
            r = await self.public_rooms(self.at, method="POST", filter={"room_types": types})
            return {ch["room_id"] for ch in r.json["chunk"]}

        self.assertEqual(await listed([None]), {plain})
        self.assertEqual(await listed(["m.space"]), {space})
        self.assertEqual(await listed([None, "m.space"]), {plain, space})
        self.assertEqual(await listed([]), {plain, space, other})
        self.assertEqual(await listed(None), {plain, space, other})

    async def test_limit_zero(self) -> None:
        await self.create_room(self.at, visibility="public")
        r = await self.public_rooms(self.at, limit=0)
        self.assertEqual(r.json, {"chunk": [], "total_room_count_estimate": 1})


class PaginationTests(DirectoryTestCase):
    """25 published rooms, 1 to 3 members each."""

    async def setUp(self) -> None:
        await super().setUp()
        self.carol, self.ct = await self.user("carol")
        self.rooms: list[str] = []
        for i in range(25):
            room = await self.create_room(
                self.at, visibility="public", preset="public_chat",
                name="room %02d" % i + (" even" if i % 2 == 0 else " odd"),
            )
            if i % 3 == 0:
                await self.join(self.bt, room)
                await self.join(self.ct, room)
            elif i % 3 == 1:
                await self.join(self.bt, room)
            self.rooms.append(room)
        counts = {r: 3 - (i % 3) for i, r in enumerate(self.rooms)}
        self.expected = sorted(self.rooms, key=lambda r: (-counts[r], r))

    async def walk(self, method: str, **args: Any) -> tuple[list[list[str]], list[dict[str, Any]]]:
        """Page forward from the start; the room IDs of each page and the bodies."""
        pages, bodies = [], []
        since = None
        while True:
            extra = dict(args)
            if since is not None:
                extra["since"] = since
            body = (await self.public_rooms(self.at, method=method, **extra)).json
            pages.append([c["room_id"] for c in body["chunk"]])
            bodies.append(body)
            since = body.get("next_batch")
            if since is None:
                return pages, bodies

    async def test_forward_and_back(self) -> None:
        for method in ("GET", "POST"):
            pages, bodies = await self.walk(method, limit=10)
            self.assertEqual([len(p) for p in pages], [10, 10, 5])
            self.assertEqual(sum(pages, []), self.expected)
            self.assertEqual(bodies[0]["total_room_count_estimate"], 25)
            self.assertNotIn("prev_batch", bodies[0])
            self.assertIn("prev_batch", bodies[1])
            self.assertIn("prev_batch", bodies[2])
            self.assertNotIn("next_batch", bodies[2])
            # Back from the last page: the second, then the first.
            body = (await self.public_rooms(
                self.at, method=method, limit=10, since=bodies[2]["prev_batch"]
            )).json
            self.assertEqual([c["room_id"] for c in body["chunk"]], pages[1])
            self.assertIn("next_batch", body)
            body = (await self.public_rooms(
                self.at, method=method, limit=10, since=body["prev_batch"]
            )).json
            self.assertEqual([c["room_id"] for c in body["chunk"]], pages[0])
            self.assertNotIn("prev_batch", body)
            # And forward again from there.
            body = (await self.public_rooms(
                self.at, method=method, limit=10, since=body["next_batch"]
            )).json
            self.assertEqual([c["room_id"] for c in body["chunk"]], pages[1])

    async def test_exact_multiple(self) -> None:
        pages, bodies = await self.walk("GET", limit=5)
        self.assertEqual([len(p) for p in pages], [5] * 5)
        self.assertEqual(sum(pages, []), self.expected)

    async def test_without_limit(self) -> None:
        body = (await self.public_rooms(self.at)).json
        self.assertEqual([c["room_id"] for c in body["chunk"]], self.expected)
        self.assertNotIn("next_batch", body)

    async def test_with_search(self) -> None:
        pages, bodies = await self.walk("POST", limit=4, filter={"generic_search_term": "EVEN"})
        even = [r for i, r in enumerate(self.rooms) if i % 2 == 0]
        self.assertEqual(sum(pages, []), [r for r in self.expected if r in even])
        self.assertEqual([len(p) for p in pages], [4, 4, 4, 1])
        # Back from the last page.
        body = (await self.public_rooms(
            self.at, method="POST", limit=4, since=bodies[-1]["prev_batch"],
            filter={"generic_search_term": "even"},
        )).json
        self.assertEqual([c["room_id"] for c in body["chunk"]], pages[-2])


class VisibilityLMDBTests(VisibilityTests):
    backend = "lmdb"


class PaginationLMDBTests(PaginationTests):
    backend = "lmdb"
