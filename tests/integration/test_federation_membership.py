"""
Joins, leaves, invites and rejections between two of our servers over
real federation: each server runs as a service with its TLS listener on a
loopback port (C{localhost:<port>}, certificates not verified, the real
keyring fetching the other's keys); clients talk to each server's client
API in-process (L{tests.server.FakeClient}).

Messages after the join need the federation sender and the inbound PDU
pipeline, which are not part of this branch: these tests check what the
membership handshakes alone deliver.
"""

from __future__ import annotations

import copy
from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial import unittest

from conduit_tw.api.resource import InFlightTracker, MatrixSite
from conduit_tw.events.room_versions import get_room_version
from conduit_tw.federation.errors import RemoteError
from conduit_tw.homeserver import HomeServer
from tests.api.rooms import V3, q
from tests.integration.federation import start_homeserver
from tests.server import FakeClient, Response


class Server:
    """One running server and a client for its client API."""

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        site = MatrixSite(hs.resource, max_request_size=hs.config.max_request_size, tracker=InFlightTracker())
        site.timeOut = None
        self.client = FakeClient(site)
        hs.passwords.hasher = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)

    @property
    def name(self) -> str:
        return self.hs.server_name

    async def request(self, method: str, path: str, content: Any = None, token: str | None = None) -> Response:
        return await self.client.request(method, path, content, access_token=token)

    async def user(self, name: str) -> tuple[str, str]:
        r = await self.request(
            "POST", V3 + "/register",
            {"auth": {"type": "m.login.dummy"}, "username": name, "password": "secret pw"},
        )
        assert r.code == 200, r.body
        return r.json["user_id"], r.json["access_token"]

    async def sync(self, token: str) -> dict[str, Any]:
        r = await self.request("GET", V3 + "/sync", token=token)
        assert r.code == 200, r.body
        return r.json


class FederatedMembershipTests(unittest.TestCase):
    timeout = 120

    async def start(self) -> Server:
        return Server(await start_homeserver(self))

    async def _start_both(self) -> None:
        self.a = await self.start()
        self.b = await self.start()
        self.alice, self.at = await self.a.user("alice")
        self.bob, self.bt = await self.b.user("bob")

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start_both())

    async def create_room(self, **body: Any) -> str:
        r = await self.a.request("POST", V3 + "/createRoom", body, self.at)
        self.assertEqual(r.code, 200, r.body)
        return r.json["room_id"]

    async def test_join_by_room_id_with_via_then_leave(self) -> None:
        room = await self.create_room(preset="public_chat", name="Hall", room_version="10")
        r = await self.b.request(
            "POST", V3 + "/join/%s?via=%s" % (q(room), q(self.a.name)), {}, self.bt
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"room_id": room})
        # Both servers have the join in the current state.
        for server in (self.a, self.b):
            store = server.hs.event_store
            self.assertEqual(await store.membership(self.bob, room), "join")
            self.assertEqual(await store.membership(self.alice, room), "join")
        # Bob's sync on B shows the room with its state and his join.
        rooms = (await self.b.sync(self.bt))["rooms"]["join"]
        self.assertIn(room, rooms)
        entry = rooms[room]
        events = entry["state"]["events"] + entry["timeline"]["events"]
        types = {(e["type"], e.get("state_key")) for e in events}
        self.assertIn(("m.room.create", ""), types)
        self.assertIn(("m.room.name", ""), types)
        self.assertIn(("m.room.member", self.bob), types)
        # The state is readable on B through the client API.
        r = await self.b.request("GET", V3 + "/rooms/%s/state/m.room.name" % q(room), token=self.bt)
        self.assertEqual(r.json, {"name": "Hall"})
        # Bob leaves: a local event on B (sending it to A is the sender's job).
        r = await self.b.request("POST", V3 + "/rooms/%s/leave" % q(room), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.b.hs.event_store.membership(self.bob, room), "leave")

    async def test_join_v12_room_by_alias(self) -> None:
        """A v12 room (no server in its ID) found through an alias resolver."""
        room = await self.create_room(preset="public_chat", room_alias_name="lobby", room_version="12")
        alias = "#lobby:" + self.a.name
        resolved = []

        async def resolve(name: str) -> tuple[str, list[str]]:
            resolved.append(name)
            room_id = await self.a.hs.aliases_store.get_room_for_alias(name)
            assert room_id is not None
            return room_id, [self.a.name]

        self.b.hs.remote_membership.resolve_alias = resolve
        r = await self.b.request("POST", V3 + "/join/%s" % q(alias), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"room_id": room})
        self.assertEqual(resolved, [alias])
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, room), "join")
        self.assertEqual(await self.b.hs.event_store.membership(self.bob, room), "join")

    async def test_invite_seen_in_sync_then_join(self) -> None:
        room = await self.create_room(name="Private")
        r = await self.a.request("POST", V3 + "/rooms/%s/invite" % q(room), {"user_id": self.bob}, self.at)
        self.assertEqual(r.code, 200, r.body)
        # A stored the invite with B's signature added.
        invite = await self.a.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertIn(self.b.name, invite.pdu["signatures"])
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, room), "invite")
        # Bob sees the invite with the stripped state.
        invites = (await self.b.sync(self.bt))["rooms"]["invite"]
        self.assertIn(room, invites)
        stripped = invites[room]["invite_state"]["events"]
        self.assertIn({"type": "m.room.name", "state_key": "", "sender": self.alice,
                       "content": {"name": "Private"}}, stripped)
        self.assertIn("invite", [e["content"].get("membership") for e in stripped
                                 if e["type"] == "m.room.member"])
        # Bob joins through the inviter's server (no via needed).
        r = await self.b.request("POST", V3 + "/rooms/%s/join" % q(room), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, room), "join")
        sync = await self.b.sync(self.bt)
        self.assertIn(room, sync["rooms"]["join"])
        self.assertNotIn(room, sync["rooms"].get("invite", {}))

    async def test_reject_invite(self) -> None:
        room = await self.create_room()
        r = await self.a.request("POST", V3 + "/rooms/%s/invite" % q(room), {"user_id": self.bob}, self.at)
        self.assertEqual(r.code, 200, r.body)
        self.assertIn(room, (await self.b.sync(self.bt))["rooms"]["invite"])
        r = await self.b.request("POST", V3 + "/rooms/%s/leave" % q(room), {"reason": "no"}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        # A got the leave through make_leave/send_leave.
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, room), "leave")
        leave = await self.a.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(leave.content, {"membership": "leave", "reason": "no"})
        self.assertEqual(await self.b.hs.event_store.membership(self.bob, room), "leave")
        self.assertNotIn(room, (await self.b.sync(self.bt)).get("rooms", {}).get("invite", {}))

    async def test_invite_only_room_refuses_join(self) -> None:
        room = await self.create_room()
        r = await self.b.request(
            "POST", V3 + "/join/%s?via=%s" % (q(room), q(self.a.name)), {}, self.bt
        )
        self.assertEqual((r.code, r.json["errcode"]), (403, "M_FORBIDDEN"), r.body)
        self.assertIsNone(await self.b.hs.event_store.get_room(room))

    def tamper_send_join(self, change: Any) -> None:
        """Make A's send_join answers pass through C{change(answer)}."""
        servlet = self.a.hs.federated_membership
        original = servlet.send_join

        async def send_join(*args: Any) -> dict[str, Any]:
            answer = copy.deepcopy(await original(*args))
            change(answer)
            return answer

        servlet.send_join = send_join  # type: ignore[method-assign]

    async def test_bad_hash_in_returned_state_dropped(self) -> None:
        """An event whose content does not match its hash is not taken into B's state."""
        room = await self.create_room(preset="public_chat", name="Hall", topic="t", room_version="10")

        def change(answer: dict[str, Any]) -> None:
            for pdu in answer["state"]:
                if pdu["type"] == "m.room.topic":
                    pdu["content"] = {"topic": "forged"}  # signature intact (redacted), hash not

        self.tamper_send_join(change)
        r = await self.b.request("POST", V3 + "/join/%s?via=%s" % (q(room), q(self.a.name)), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        store = self.b.hs.event_store
        self.assertIsNone(await store.current_state_event(room, "m.room.topic", ""))
        name = await store.current_state_event(room, "m.room.name", "")
        self.assertEqual(name.content, {"name": "Hall"})

    async def test_forged_create_event_fails_the_join(self) -> None:
        room = await self.create_room(preset="public_chat", room_version="10")

        def change(answer: dict[str, Any]) -> None:
            for pdu in answer["state"] + answer["auth_chain"]:
                if pdu["type"] == "m.room.create":
                    sigs = pdu["signatures"][self.a.name]
                    for key_id in sigs:
                        sigs[key_id] = "A" * len(sigs[key_id])

        self.tamper_send_join(change)
        r = await self.b.request("POST", V3 + "/join/%s?via=%s" % (q(room), q(self.a.name)), {}, self.bt)
        self.assertEqual((r.code, r.json["errcode"]), (404, "M_NOT_FOUND"), r.body)
        self.assertFalse(await self.b.hs.event_store.room_exists(room))

    async def test_restricted_join_authorised_by_resident_server(self) -> None:
        """Room v10 restricted join: A's user authorises, both servers sign."""
        space = await self.create_room(preset="public_chat", room_version="10")
        r = await self.b.request("POST", V3 + "/join/%s?via=%s" % (q(space), q(self.a.name)), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        room = await self.create_room(
            room_version="10",
            initial_state=[{
                "type": "m.room.join_rules",
                "content": {"join_rule": "restricted",
                            "allow": [{"type": "m.room_membership", "room_id": space}]},
            }],
        )
        r = await self.b.request("POST", V3 + "/join/%s?via=%s" % (q(room), q(self.a.name)), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        join = await self.a.hs.event_store.current_state_event(room, "m.room.member", self.bob)
        self.assertEqual(join.content["join_authorised_via_users_server"], self.alice)
        self.assertEqual(set(join.pdu["signatures"]), {self.a.name, self.b.name})
        on_b = await self.b.hs.event_store.get_event(join.event_id)
        self.assertEqual(set(on_b.pdu["signatures"]), {self.a.name, self.b.name})

    async def test_invite_to_v12_room_and_knock(self) -> None:
        room = await self.create_room(name="New", room_version="12")
        r = await self.a.request("POST", V3 + "/rooms/%s/invite" % q(room), {"user_id": self.bob}, self.at)
        self.assertEqual(r.code, 200, r.body)
        stripped = (await self.b.sync(self.bt))["rooms"]["invite"][room]["invite_state"]["events"]
        self.assertEqual(
            {e["type"] for e in stripped}, {"m.room.create", "m.room.name", "m.room.join_rules",
                                            "m.room.member"},
        )
        # Knocking on a knockable room of A.
        door = await self.create_room(
            room_version="10", name="Door",
            initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        )
        r = await self.b.request("POST", V3 + "/knock/%s?via=%s" % (q(door), q(self.a.name)), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, door), "knock")
        knock = (await self.b.sync(self.bt))["rooms"]["knock"][door]["knock_state"]["events"]
        self.assertIn({"name": "Door"}, [e["content"] for e in knock if e["type"] == "m.room.name"])
        # Withdrawing the knock goes through make_leave/send_leave.
        r = await self.b.request("POST", V3 + "/rooms/%s/leave" % q(door), {}, self.bt)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, door), "leave")

    async def test_make_join_without_ver_and_send_join_v1(self) -> None:
        """C{ver} defaults to ["1"]; send_join v1 answers C{[200, body]}."""
        room = await self.create_room(preset="public_chat", room_version="10")
        client = self.b.hs.federation_client
        path = "/_matrix/federation/v1/make_join/%s/%s" % (q(room), q(self.bob))
        with self.assertRaises(RemoteError) as e:
            await client.get_json(self.a.name, path)
        self.assertEqual((e.exception.code, e.exception.errcode), (400, "M_INCOMPATIBLE_ROOM_VERSION"))
        self.assertEqual(e.exception.body["room_version"], "10")
        answer = await client.get_json(self.a.name, path, {"ver": ["9", "10"]})
        remote = self.b.hs.remote_membership
        event = remote.event_from_template(
            answer["event"], get_room_version("10"), room, self.bob, "join"
        )
        result = await client.put_json(
            self.a.name, "/_matrix/federation/v1/send_join/%s/%s" % (q(room), q(event.event_id)),
            event.pdu,
        )
        self.assertEqual(result[0], 200)
        self.assertEqual(set(result[1]), {"origin", "state", "auth_chain", "event"})
        self.assertEqual(await self.a.hs.event_store.membership(self.bob, room), "join")

    async def test_two_users_join_concurrently(self) -> None:
        """Both joins end in B's state (the second does not replace the first's)."""
        carol, ct = await self.b.user("carol")
        room = await self.create_room(preset="public_chat", room_version="10")
        path = V3 + "/join/%s?via=%s" % (q(room), q(self.a.name))
        results = await gatherResults([
            Deferred.fromCoroutine(self.b.request("POST", path, {}, token))
            for token in (self.bt, ct)
        ])
        self.assertEqual([r.code for r in results], [200, 200])
        store = self.b.hs.event_store
        self.assertEqual(await store.membership(self.bob, room), "join")
        self.assertEqual(await store.membership(carol, room), "join")
