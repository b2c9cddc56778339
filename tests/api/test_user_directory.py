"""POST /user_directory/search and GET /mutual_rooms (handlers/{user_directory,mutual_rooms}.py)."""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, RoomsTestCase, q

SEARCH = V3 + "/user_directory/search"
MUTUAL = "/_matrix/client/v1/mutual_rooms"


class UserDirectoryTests(RoomsTestCase):
    """Who is found, in which order, with which profile."""

    async def search(self, token: str, term: Any, limit: Any = None, expect: int = 200):
        body: dict[str, Any] = {"search_term": term}
        if limit is not None:
            body["limit"] = limit
        r = await self.request("POST", SEARCH, body, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r

    def ids(self, r: Any) -> list[str]:
        return [u["user_id"] for u in r.json["results"]]

    async def set_name(self, user_id: str, token: str, name: str) -> None:
        r = await self.request(
            "PUT", f"{V3}/profile/{q(user_id)}/displayname", {"displayname": name},
            access_token=token,
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_scope(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        carol, ct = await self.user("carol")
        dave, dt = await self.user("dave")
        eve, et = await self.user("eve")
        # Bob shares a private room with Alice; Carol is in a public room;
        # Dave is in a private room of his own; Eve is in no room.
        private = await self.create_room(at)
        await self.invite(at, private, bob)
        await self.join(bt, private)
        await self.create_room(ct, preset="public_chat")
        await self.create_room(dt)
        for name in ("bob", "carol"):
            r = await self.search(at, name)
            self.assertEqual(self.ids(r), ["@%s:%s" % (name, self.hs.server_name)])
        for name in ("dave", "eve"):
            r = await self.search(at, name)
            self.assertEqual(r.json, {"results": [], "limited": False})
        # Eve finds Carol (public room) but not Bob (shares nothing with him).
        self.assertEqual(self.ids(await self.search(et, "carol")), [carol])
        self.assertEqual(self.ids(await self.search(et, "bob")), [])
        # Bob leaves: Alice no longer finds him.
        r = await self.member_action(bt, private, "leave")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(self.ids(await self.search(at, "bob")), [])

    async def test_world_readable_room(self) -> None:
        _, at = await self.user("alice")
        frank, ft = await self.user("frank")
        await self.create_room(ft, initial_state=[{
            "type": "m.room.history_visibility", "state_key": "",
            "content": {"history_visibility": "world_readable"}}])
        self.assertEqual(self.ids(await self.search(at, "fra")), [frank])

    async def test_profile_changes_and_ranking(self) -> None:
        _, at = await self.user("alice")
        room = await self.create_room(at, preset="public_chat")
        users = {}
        for name in ("xavier", "yolanda", "zed"):
            users[name], token = await self.user(name)
            await self.join(token, room)
            users[name + "_t"] = token
        await self.set_name(users["yolanda"], users["yolanda_t"], "Xander Smith")
        await self.set_name(users["zed"], users["zed_t"], "Big Xa")
        r = await self.search(at, "Xa")
        # Localpart/display name prefixes of the whole term first (by user
        # ID), then word prefixes.
        self.assertEqual(self.ids(r), [users["xavier"], users["yolanda"], users["zed"]])
        self.assertEqual(r.json["results"][1]["display_name"], "Xander Smith")
        # An exact match comes before prefixes.
        self.assertEqual(self.ids(await self.search(at, "xander smith"))[0], users["yolanda"])
        self.assertFalse(r.json["limited"])
        r = await self.search(at, "xa", limit=1)
        self.assertEqual((len(r.json["results"]), r.json["limited"]), (1, True))
        # Multi-word: every word must match.
        self.assertEqual(self.ids(await self.search(at, "xander smi")), [users["yolanda"]])
        self.assertEqual(self.ids(await self.search(at, "xander jones")), [])
        # A profile change is reflected at once.
        await self.set_name(users["yolanda"], users["yolanda_t"], "Yoli")
        self.assertEqual(self.ids(await self.search(at, "xander")), [])
        r = await self.search(at, "yoli")
        self.assertEqual(r.json["results"], [{"user_id": users["yolanda"], "display_name": "Yoli"}])
        # The full user ID.
        self.assertEqual(self.ids(await self.search(at, users["zed"])), [users["zed"]])

    async def test_bad_requests(self) -> None:
        _, at = await self.user("alice")
        r = await self.request("POST", SEARCH, {}, access_token=at)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.search(at, 5, expect=400)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.search(at, "a", limit="x", expect=400)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", SEARCH, {"search_term": "a"})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.search(at, "  !! ")
        self.assertEqual(r.json, {"results": [], "limited": False})


class MutualRoomsTests(RoomsTestCase):
    """GET /_matrix/client/v1/mutual_rooms."""

    async def test_mutual_rooms(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        shared = []
        for _ in range(3):
            room = await self.create_room(at, preset="public_chat")
            await self.join(bt, room)
            shared.append(room)
        await self.create_room(at)  # Alice's own
        self.patch(self.hs.mutual_rooms, "page_size", 2)
        r = await self.request("GET", f"{MUTUAL}?user_id={q(bob)}", access_token=at)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["count"], 3)
        self.assertEqual(len(r.json["joined"]), 2)
        token = r.json["next_batch"]
        r2 = await self.request(
            "GET", f"{MUTUAL}?user_id={q(bob)}&from={q(token)}", access_token=at
        )
        self.assertEqual(r2.code, 200, r2.body)
        self.assertNotIn("next_batch", r2.json)
        self.assertEqual(sorted(r.json["joined"] + r2.json["joined"]), sorted(shared))
        r = await self.request(
            "GET", f"{MUTUAL}?user_id={q('@carol:' + self.hs.server_name)}&from={q(token)}",
            access_token=at,
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request(
            "GET", f"{MUTUAL}?user_id={q('@nobody:' + self.hs.server_name)}", access_token=at
        )
        self.assertEqual(r.json, {"joined": [], "count": 0})
        for bad in ("", "?user_id=notauser", "?user_id=" + q(alice), "?user_id=%s&from=zz" % q(bob)):
            r = await self.request("GET", MUTUAL + bad, access_token=at)
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")
