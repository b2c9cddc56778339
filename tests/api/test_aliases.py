"""
Room aliases: C{PUT/GET/DELETE /directory/room/{alias}}, C{GET
/rooms/{id}/aliases} and the m.room.canonical_alias checks.
"""

from __future__ import annotations

from typing import Any

from conduit_tw.federation.errors import RemoteError
from conduit_tw.handlers.directory import is_valid_alias
from conduit_tw.handlers.remote_queries import QUERY_DIRECTORY
from tests.federation.fake_client import FakeFederationClient
from tests.api.rooms import V3, RoomsTestCase, q
from tests.server import Response


class AliasGrammarTests(RoomsTestCase):
    def test_valid(self) -> None:
        for alias in ("#a:test", "#ünïcødé:example.org", "#x:1.2.3.4:8448", "#y:[::1]:80",
                      "#with space:test", "#a#b:test", "#:test"):
            self.assertTrue(is_valid_alias(alias), alias)

    def test_invalid(self) -> None:
        for alias in ("a:test", "#nocolon", "#a\x00b:test", "#a:bad_server!", "#a:", None, 3,
                      "#" + "a" * 250 + ":test", "!room:test", "#a:test:99999"):
            self.assertFalse(is_valid_alias(alias), alias)


class AliasTestCase(RoomsTestCase):
    config_overrides: dict[str, Any] = dict(
        RoomsTestCase.config_overrides, forbidden_alias_names=["^#admin", "badword"]
    )

    async def setUp(self) -> None:
        await super().setUp()
        # The first account is the server admin.
        self.admin, self.admin_t = await self.user("admin")
        self.alice, self.at = await self.user("alice")
        self.bob, self.bt = await self.user("bob")
        self.room = await self.create_room(self.at, preset="public_chat")

    async def put_alias(self, token: str | None, alias: str, room_id: str | None = None,
                        body: Any = None) -> Response:
        if body is None:
            body = {"room_id": room_id or self.room}
        return await self.request("PUT", f"{V3}/directory/room/{q(alias)}", body, access_token=token)

    async def get_alias(self, alias: str, token: str | None = None) -> Response:
        return await self.request("GET", f"{V3}/directory/room/{q(alias)}", access_token=token)

    async def delete_alias(self, token: str | None, alias: str) -> Response:
        return await self.request("DELETE", f"{V3}/directory/room/{q(alias)}", access_token=token)

    async def local_aliases(self, token: str, room_id: str | None = None) -> Response:
        return await self.request(
            "GET", f"{V3}/rooms/{q(room_id or self.room)}/aliases", access_token=token
        )


class CreateAliasTests(AliasTestCase):
    async def test_create_get_delete(self) -> None:
        r = await self.put_alias(self.at, "#hello:test")
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.get_alias("#hello:test", self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"room_id": self.room, "servers": ["test"]})
        # Resolving needs no token (directory.yaml has no security for GET).
        r = await self.get_alias("#hello:test")
        self.assertEqual(r.json["room_id"], self.room)
        # And the alias joins.
        await self.join(self.bt, "#hello:test")
        r = await self.delete_alias(self.at, "#hello:test")
        self.assertEqual((r.code, r.json), (200, {}))
        self.assertMatrixError(await self.get_alias("#hello:test"), 404, "M_NOT_FOUND")
        self.assertMatrixError(await self.delete_alias(self.at, "#hello:test"), 404, "M_NOT_FOUND")
        self.assertEqual(await self.hs.aliases_store.aliases_for_room(self.room), [])

    async def test_r0_path(self) -> None:
        r = await self.request(
            "PUT", f"/_matrix/client/r0/directory/room/{q('#r0:test')}", {"room_id": self.room},
            access_token=self.at,
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_taken(self) -> None:
        self.assertEqual((await self.put_alias(self.at, "#taken:test")).code, 200)
        other = await self.create_room(self.at)
        r = await self.put_alias(self.at, "#taken:test", other)
        self.assertMatrixError(r, 409, "M_UNKNOWN")
        # Also when it points to the same room, and for a room_alias_name.
        self.assertMatrixError(await self.put_alias(self.at, "#taken:test"), 409, "M_UNKNOWN")
        r = await self.request(
            "POST", V3 + "/createRoom", {"room_alias_name": "taken"}, access_token=self.at
        )
        self.assertMatrixError(r, 400, "M_ROOM_IN_USE")
        r = await self.get_alias("#taken:test")
        self.assertEqual(r.json["room_id"], self.room)

    async def test_invalid(self) -> None:
        for alias in ("nohash:test", "#nocolon", "#a:bad_server!", "#" + "x" * 260 + ":test",
                      "#nul\x00:test"):
            self.assertMatrixError(await self.put_alias(self.at, alias), 400, "M_INVALID_PARAM")
            self.assertMatrixError(await self.get_alias(alias), 400, "M_INVALID_PARAM")
            self.assertMatrixError(await self.delete_alias(self.at, alias), 400, "M_INVALID_PARAM")

    async def test_other_server(self) -> None:
        r = await self.put_alias(self.at, "#a:elsewhere.example")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.delete_alias(self.at, "#a:elsewhere.example")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        # Resolving asks the alias's server (federation queries).
        client = FakeFederationClient(
            {QUERY_DIRECTORY: RemoteError("elsewhere.example", 404, "M_NOT_FOUND", "Not found")}
        )
        self.hs.remote_queries.client = client
        r = await self.get_alias("#a:elsewhere.example")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertEqual(client.requests[0][1:3], ("elsewhere.example", QUERY_DIRECTORY))

    async def test_body(self) -> None:
        r = await self.put_alias(self.at, "#b:test", body={})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.put_alias(self.at, "#b:test", body={"room_id": 5})
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.put_alias(self.at, "#b:test", "!unknown:test")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.put_alias(self.at, "#b:test", "#notaroom:test")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_needs_token(self) -> None:
        self.assertMatrixError(await self.put_alias(None, "#c:test"), 401, "M_MISSING_TOKEN")
        self.assertMatrixError(await self.delete_alias(None, "#c:test"), 401, "M_MISSING_TOKEN")

    async def test_must_be_member(self) -> None:
        r = await self.put_alias(self.bt, "#bobs:test")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        await self.join(self.bt, self.room)
        self.assertEqual((await self.put_alias(self.bt, "#bobs:test")).code, 200)
        # A server admin need not be in the room.
        self.assertEqual((await self.put_alias(self.admin_t, "#admin-team:test")).code, 200)

    async def test_forbidden_names(self) -> None:
        await self.join(self.bt, self.room)
        for alias in ("#admins:test", "#has-badword-in:test"):
            self.assertMatrixError(await self.put_alias(self.bt, alias), 400, "M_INVALID_PARAM")
        # Not anchored at the start: only a search in the alias.
        self.assertEqual((await self.put_alias(self.bt, "#notadmin:test")).code, 200)
        # Server admins are not bound by it (the names are reserved for them).
        self.assertEqual((await self.put_alias(self.admin_t, "#admin-room:test")).code, 200)

    async def test_servers_lists_members_servers(self) -> None:
        await self.put_alias(self.at, "#srv:test")
        r = await self.get_alias("#srv:test")
        self.assertEqual(r.json["servers"], ["test"])
        # servers_in_room counts remote members' servers from the membership index.
        real = self.hs.event_store.members

        async def members(room_id: str, membership: str = "join") -> list[str]:
            return await real(room_id, membership) + [
                "@x:b.example", "@y:a.example", "@z:b.example"
            ]

        self.patch(self.hs.event_store, "members", members)
        r = await self.get_alias("#srv:test")
        self.assertEqual(r.json["servers"], ["test", "b.example", "a.example"])

    async def test_concurrent_create(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred, gatherResults
        from twisted.internet.task import deferLater

        # A slow database: the existence checks of both requests are
        # pending at once, so only the in-memory reservation tells them apart.
        store = self.hs.aliases_store
        real_get = store.get_alias

        async def slow_get(alias: str) -> Any:
            value = await real_get(alias)
            await deferLater(reactor, 0.01, lambda: None)
            return value

        self.patch(store, "get_alias", slow_get)
        rs = await gatherResults([
            Deferred.fromCoroutine(self.put_alias(self.at, "#race:test")),
            Deferred.fromCoroutine(self.put_alias(self.at, "#race:test")),
        ])
        self.assertEqual(sorted(r.code for r in rs), [200, 409])

    async def test_survives_restart(self) -> None:
        await self.put_alias(self.at, "#kept:test")
        await self.restart()
        r = await self.get_alias("#kept:test")
        self.assertEqual(r.json["room_id"], self.room)


class DeleteAliasTests(AliasTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        await self.join(self.bt, self.room)
        self.carol, self.ct = await self.user("carol")
        await self.join(self.ct, self.room)
        # Bob creates the alias; Carol is a plain member.
        r = await self.put_alias(self.bt, "#bob:test")
        self.assertEqual(r.code, 200, r.body)

    async def test_non_owner_non_moderator_refused(self) -> None:
        r = await self.delete_alias(self.ct, "#bob:test")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.get_alias("#bob:test")
        self.assertEqual(r.code, 200)

    async def test_outsider_refused(self) -> None:
        dave, dt = await self.user("dave")
        self.assertMatrixError(await self.delete_alias(dt, "#bob:test"), 403, "M_FORBIDDEN")

    async def test_creator_may_delete(self) -> None:
        self.assertEqual((await self.delete_alias(self.bt, "#bob:test")).code, 200)

    async def test_creator_may_delete_after_leaving(self) -> None:
        await self.member_action(self.bt, self.room, "leave")
        self.assertEqual((await self.delete_alias(self.bt, "#bob:test")).code, 200)

    async def test_moderator_may_delete(self) -> None:
        # Alice created the room: power 100 >= 50 for m.room.canonical_alias.
        self.assertEqual((await self.delete_alias(self.at, "#bob:test")).code, 200)

    async def test_moderator_by_power_levels(self) -> None:
        r = await self.get_state(self.at, self.room, "m.room.power_levels")
        pl = r.json
        pl["events"]["m.room.canonical_alias"] = 10
        pl["users"][self.carol] = 10
        self.assertEqual((await self.put_state(self.at, self.room, "m.room.power_levels", pl)).code, 200)
        self.assertEqual((await self.delete_alias(self.ct, "#bob:test")).code, 200)

    async def test_admin_may_delete(self) -> None:
        # The admin is not even in the room.
        self.assertEqual((await self.delete_alias(self.admin_t, "#bob:test")).code, 200)
        self.assertMatrixError(await self.get_alias("#bob:test"), 404, "M_NOT_FOUND")

    async def test_deleting_updates_canonical_alias(self) -> None:
        await self.put_alias(self.at, "#main:test")
        await self.put_alias(self.at, "#alt:test")
        content = {"alias": "#main:test", "alt_aliases": ["#alt:test", "#bob:test"]}
        r = await self.put_state(self.at, self.room, "m.room.canonical_alias", content)
        self.assertEqual(r.code, 200, r.body)

        self.assertEqual((await self.delete_alias(self.at, "#main:test")).code, 200)
        r = await self.get_state(self.at, self.room, "m.room.canonical_alias")
        self.assertEqual(r.json, {"alt_aliases": ["#alt:test", "#bob:test"]})

        self.assertEqual((await self.delete_alias(self.at, "#alt:test")).code, 200)
        r = await self.get_state(self.at, self.room, "m.room.canonical_alias")
        self.assertEqual(r.json, {"alt_aliases": ["#bob:test"]})

        # Bob (power 0) may delete his alias but not change the event: the
        # alias goes, the event stays (the spec's recommendation).
        self.assertEqual((await self.delete_alias(self.bt, "#bob:test")).code, 200)
        self.assertMatrixError(await self.get_alias("#bob:test"), 404, "M_NOT_FOUND")
        r = await self.get_state(self.at, self.room, "m.room.canonical_alias")
        self.assertEqual(r.json, {"alt_aliases": ["#bob:test"]})

        # Since the stale alias is already in the event, editing the rest
        # of the event still works.
        r = await self.put_state(
            self.at, self.room, "m.room.canonical_alias", {"alt_aliases": ["#bob:test"], "x": 1}
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_unrelated_canonical_alias_untouched(self) -> None:
        await self.put_alias(self.at, "#main:test")
        await self.put_state(self.at, self.room, "m.room.canonical_alias", {"alias": "#main:test"})
        before = await self.hs.event_store.current_state_event(self.room, "m.room.canonical_alias")
        self.assertEqual((await self.delete_alias(self.bt, "#bob:test")).code, 200)
        after = await self.hs.event_store.current_state_event(self.room, "m.room.canonical_alias")
        self.assertEqual(before.event_id, after.event_id)


class LocalAliasesTests(AliasTestCase):
    async def test_members_see_aliases(self) -> None:
        await self.put_alias(self.at, "#b1:test")
        await self.put_alias(self.at, "#a1:test")
        r = await self.local_aliases(self.at)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(sorted(r.json["aliases"]), ["#a1:test", "#b1:test"])

    async def test_empty(self) -> None:
        r = await self.local_aliases(self.at)
        self.assertEqual(r.json, {"aliases": []})

    async def test_non_member_refused(self) -> None:
        self.assertMatrixError(await self.local_aliases(self.bt), 403, "M_FORBIDDEN")
        # An unknown room looks the same (nothing is revealed).
        r = await self.local_aliases(self.bt, "!nope:test")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.local_aliases(self.bt, "not-a-room")
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_former_member_refused(self) -> None:
        await self.join(self.bt, self.room)
        self.assertEqual((await self.local_aliases(self.bt)).code, 200)
        await self.member_action(self.bt, self.room, "leave")
        self.assertMatrixError(await self.local_aliases(self.bt), 403, "M_FORBIDDEN")

    async def test_world_readable(self) -> None:
        r = await self.put_state(
            self.at, self.room, "m.room.history_visibility", {"history_visibility": "world_readable"}
        )
        self.assertEqual(r.code, 200, r.body)
        await self.put_alias(self.at, "#wr:test")
        r = await self.local_aliases(self.bt)
        self.assertEqual(r.json, {"aliases": ["#wr:test"]})

    async def test_admin(self) -> None:
        await self.put_alias(self.at, "#adm:test")
        r = await self.local_aliases(self.admin_t)
        self.assertEqual(r.json, {"aliases": ["#adm:test"]})


class CanonicalAliasTests(AliasTestCase):
    async def put_canonical(self, content: dict[str, Any], room: str | None = None,
                            token: str | None = None) -> Response:
        return await self.put_state(
            token or self.at, room or self.room, "m.room.canonical_alias", content
        )

    async def test_pointing_elsewhere_refused(self) -> None:
        other = await self.create_room(self.at)
        await self.put_alias(self.at, "#other:test", other)
        self.assertMatrixError(await self.put_canonical({"alias": "#other:test"}), 400, "M_BAD_ALIAS")
        self.assertMatrixError(
            await self.put_canonical({"alt_aliases": ["#other:test"]}), 400, "M_BAD_ALIAS"
        )
        self.assertMatrixError(await self.put_canonical({"alias": "#none:test"}), 400, "M_BAD_ALIAS")
        self.assertEqual((await self.put_canonical({"alias": "#other:test"}, other)).code, 200)

    async def test_remote_alias_refused(self) -> None:
        r = await self.put_canonical({"alias": "#x:elsewhere.example"})
        self.assertMatrixError(r, 400, "M_BAD_ALIAS")
        self.assertIn("federation", r.json["error"])

    async def test_invalid_syntax(self) -> None:
        for content in ({"alias": "nohash:test"}, {"alias": 5}, {"alt_aliases": "#a:test"},
                        {"alt_aliases": ["#ok:test", 3]}, {"alt_aliases": ["#nocolon"]}):
            self.assertMatrixError(await self.put_canonical(content), 400, "M_INVALID_PARAM")

    async def test_valid(self) -> None:
        await self.put_alias(self.at, "#one:test")
        await self.put_alias(self.at, "#two:test")
        r = await self.put_canonical({"alias": "#one:test", "alt_aliases": ["#two:test"]})
        self.assertEqual(r.code, 200, r.body)
        # Unsetting is always allowed.
        for content in ({}, {"alias": None}, {"alias": ""}, {"alt_aliases": []}):
            self.assertEqual((await self.put_canonical(content)).code, 200, content)

    async def test_needs_power_first(self) -> None:
        """A user without the power gets 403, not a hint about the aliases."""
        await self.join(self.bt, self.room)
        r = await self.put_canonical({"alias": "#nope:test"}, token=self.bt)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_room_alias_name_at_creation(self) -> None:
        room = await self.create_room(self.at, room_alias_name="made")
        r = await self.get_state(self.at, room, "m.room.canonical_alias")
        self.assertEqual(r.json, {"alias": "#made:test"})
        r = await self.local_aliases(self.at, room)
        self.assertEqual(r.json, {"aliases": ["#made:test"]})
        # The creator owns it.
        self.assertEqual((await self.delete_alias(self.at, "#made:test")).code, 200)
        r = await self.get_state(self.at, room, "m.room.canonical_alias")
        self.assertEqual(r.json, {})


class DeleteAliasLMDBTests(DeleteAliasTests):
    backend = "lmdb"
