"""
The serving side of the membership handshakes
(L{conduit_tw.federation.membership_server.MembershipServlet}) and its
refusals, with events signed by a made-up remote server whose key the
test's keyring knows.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from nacl.signing import SigningKey
from signedjson.key import generate_signing_key

from conduit_tw.errors import MatrixError
from conduit_tw.events.event_ids import compute_event_id
from conduit_tw.events.room_versions import get_room_version
from conduit_tw.events.signing import hash_and_sign_event, verify_event_signatures
from conduit_tw.federation.errors import RemoteError
from conduit_tw.federation.event_checks import authorise_chain, parse_pdu
from conduit_tw.federation.membership_client import MAX_FAILING_SERVERS, MAX_UNSUPPORTED_VERSION_ANSWERS
from tests.api.rooms import RoomsTestCase
from tests.federation.fake_client import FakeFederationClient
from tests.federation.keyring_stub import MemoryKeyRing

REMOTE = "remote.test"
EVE = "@eve:" + REMOTE


class ServletTestCase(RoomsTestCase):
    """A server, a made-up remote server's key, and event-signing helpers."""

    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.bob, _ = await self.user("bob")
        self.keyring = MemoryKeyRing()
        self.remote_key = self.keyring.add_server(REMOTE)
        own = self.hs.server_keys
        self.keyring.keys[("test", own.key_id)] = own.signing_key.verify_key
        self.servlet = self.hs.federated_membership
        self.servlet.verify_event = self.verify_event

    async def verify_event(self, pdu: Any, version: Any) -> None:
        keys: dict[str, dict[str, Any]] = {}
        for (server, key_id), key in self.keyring.keys.items():
            keys.setdefault(server, {})[key_id] = key
        verify_event_signatures(pdu, version, keys)

    async def refused(self, coro: Any, code: int, errcode: str) -> MatrixError:
        with self.assertRaises(MatrixError) as e:
            await coro
        self.assertEqual((e.exception.code, e.exception.errcode), (code, errcode), e.exception.msg)
        return e.exception

    async def template(self, room: str, membership: str = "join", user: str = EVE) -> dict[str, Any]:
        answer = await self.servlet.make_membership(REMOTE, room, user, membership, ["10"])
        self.assertEqual(answer["room_version"], "10")
        self.assertNotIn("signatures", answer["event"])
        self.assertNotIn("hashes", answer["event"])
        return answer["event"]

    def complete(self, template: dict[str, Any], key: SigningKey | None = None) -> tuple[str, dict[str, Any]]:
        version = get_room_version("10")
        pdu = copy.deepcopy(template)
        pdu["origin"] = REMOTE
        hash_and_sign_event(pdu, version, key or self.remote_key, REMOTE)
        return compute_event_id(pdu, version), pdu


class ServletTests(ServletTestCase):
    # -- make_join

    async def test_make_join_refusals(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        e = await self.refused(
            self.servlet.make_membership(REMOTE, room, EVE, "join", ["1", "2"]),
            400, "M_INCOMPATIBLE_ROOM_VERSION",
        )
        self.assertEqual(e.extra["room_version"], "10")
        await self.refused(
            self.servlet.make_membership("other.test", room, EVE, "join", ["10"]), 403, "M_FORBIDDEN"
        )
        await self.refused(
            self.servlet.make_membership(REMOTE, "!nope:test", EVE, "join", ["10"]), 404, "M_NOT_FOUND"
        )

    async def test_make_join_banned_and_invite_only(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        r = await self.member_action(self.at, room, "ban", {"user_id": EVE})
        self.assertEqual(r.code, 200, r.body)
        e = await self.refused(
            self.servlet.make_membership(REMOTE, room, EVE, "join", ["10"]), 403, "M_FORBIDDEN"
        )
        self.assertIn("banned", e.msg)
        private = await self.create_room(self.at, room_version="10")
        await self.refused(
            self.servlet.make_membership(REMOTE, private, EVE, "join", ["10"]), 403, "M_FORBIDDEN"
        )

    async def test_make_join_over_http_needs_x_matrix(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        r = await self.request(
            "GET", "/_matrix/federation/v1/make_join/%s/%s?ver=10" % (room, EVE)
        )
        self.assertMatrixError(r, 401, "M_UNAUTHORIZED")

    # -- send_join

    async def test_send_join(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", name="Hall", room_version="10")
        event_id, pdu = self.complete(await self.template(room))
        answer = await self.servlet.send_join(REMOTE, room, event_id, pdu)
        self.assertIs(answer["members_omitted"], False)
        self.assertIn("test", answer["event"]["signatures"])
        self.assertIn(REMOTE, answer["event"]["signatures"])
        state_types = {(e["type"], e.get("state_key")) for e in answer["state"]}
        self.assertIn(("m.room.name", ""), state_types)
        self.assertIn(("m.room.member", self.alice), state_types)
        self.assertNotIn(("m.room.member", EVE), state_types)
        self.assertIn("m.room.create", {e["type"] for e in answer["auth_chain"]})
        self.assertEqual(await self.hs.event_store.membership(EVE, room), "join")
        # Sending it again is answered the same way, nothing new stored.
        again = await self.servlet.send_join(REMOTE, room, event_id, pdu)
        self.assertEqual(again["event"], answer["event"])

    async def test_send_join_refusals(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        template = await self.template(room)
        # Signed by a key the remote server does not have.
        event_id, forged = self.complete(template, generate_signing_key("k1"))
        await self.refused(self.servlet.send_join(REMOTE, room, event_id, forged), 403, "M_FORBIDDEN")
        # Content changed after signing: the signature (over the redacted
        # event) still matches, the content hash does not.
        event_id, pdu = self.complete(template)
        pdu["content"]["displayname"] = "Mallory"
        event_id = compute_event_id(pdu, get_room_version("10"))
        e = await self.refused(self.servlet.send_join(REMOTE, room, event_id, pdu), 403, "M_FORBIDDEN")
        self.assertIn("hash", e.msg)
        # The event ID in the path must be the event's.
        event_id, pdu = self.complete(template)
        await self.refused(self.servlet.send_join(REMOTE, room, "$other", pdu), 400, "M_BAD_JSON")
        # Sent by another server than the sender's.
        await self.refused(self.servlet.send_join("other.test", room, event_id, pdu), 403, "M_FORBIDDEN")
        # A leave is not a join.
        leave_id, leave = self.complete(dict(template, content={"membership": "leave"}))
        await self.refused(self.servlet.send_join(REMOTE, room, leave_id, leave), 400, "M_BAD_JSON")
        self.assertIsNone(await self.hs.event_store.membership(EVE, room))

    async def test_send_join_after_ban_refused(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        event_id, pdu = self.complete(await self.template(room))
        await self.member_action(self.at, room, "ban", {"user_id": EVE})
        await self.refused(self.servlet.send_join(REMOTE, room, event_id, pdu), 403, "M_FORBIDDEN")
        self.assertEqual(await self.hs.event_store.membership(EVE, room), "ban")

    # -- leave, knock

    async def test_make_and_send_leave(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        event_id, pdu = self.complete(await self.template(room))
        await self.servlet.send_join(REMOTE, room, event_id, pdu)
        event_id, pdu = self.complete(await self.template(room, "leave"))
        self.assertEqual(await self.servlet.send_leave(REMOTE, room, event_id, pdu), {})
        self.assertEqual(await self.hs.event_store.membership(EVE, room), "leave")

    async def test_knock(self) -> None:
        room = await self.create_room(
            self.at, room_version="10", name="Door",
            initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        )
        event_id, pdu = self.complete(await self.template(room, "knock"))
        answer = await self.servlet.send_knock(REMOTE, room, event_id, pdu)
        names = [e for e in answer["knock_room_state"] if e["type"] == "m.room.name"]
        self.assertEqual(names[0]["content"], {"name": "Door"})
        self.assertIn("m.room.create", {e["type"] for e in answer["knock_room_state"]})
        self.assertEqual(await self.hs.event_store.membership(EVE, room), "knock")
        old = await self.create_room(self.at, room_version="6")
        await self.refused(
            self.servlet.make_membership(REMOTE, old, EVE, "knock", ["6"]),
            400, "M_INCOMPATIBLE_ROOM_VERSION",
        )

    # -- invite

    def remote_invite(self, room_id: str, target: str, version: str = "10") -> tuple[str, dict[str, Any]]:
        rv = get_room_version(version)
        pdu = {
            "room_id": room_id, "sender": EVE, "type": "m.room.member", "state_key": target,
            "content": {"membership": "invite"}, "origin_server_ts": 1, "depth": 5,
            "prev_events": ["$prev"], "auth_events": ["$auth"], "origin": REMOTE,
        }
        hash_and_sign_event(pdu, rv, self.remote_key, REMOTE)
        return compute_event_id(pdu, rv), pdu

    async def test_receive_invite(self) -> None:
        room = "!elsewhere:" + REMOTE
        event_id, pdu = self.remote_invite(room, self.bob)
        state = [{"type": "m.room.name", "state_key": "", "sender": EVE, "content": {"name": "R"}}]
        answer = await self.servlet.receive_invite(
            REMOTE, room, event_id,
            {"room_version": "10", "event": pdu, "invite_room_state": state},
        )
        self.assertIn("test", answer["event"]["signatures"])
        self.assertEqual(await self.hs.event_store.membership(self.bob, room), "invite")

    async def test_block_non_admin_invites(self) -> None:
        self.servlet.block_non_admin_invites = True
        room = "!elsewhere:" + REMOTE
        event_id, pdu = self.remote_invite(room, self.bob)
        await self.refused(
            self.servlet.receive_invite(REMOTE, room, event_id, {"room_version": "10", "event": pdu}),
            403, "M_FORBIDDEN",
        )
        self.assertIsNone(await self.hs.event_store.membership(self.bob, room))

    async def test_receive_invite_refusals(self) -> None:
        room = "!elsewhere:" + REMOTE
        event_id, pdu = self.remote_invite(room, self.bob)
        e = await self.refused(
            self.servlet.receive_invite(REMOTE, room, event_id, {"room_version": "99", "event": pdu}),
            400, "M_INCOMPATIBLE_ROOM_VERSION",
        )
        self.assertEqual(e.extra["room_version"], "99")
        nobody_id, nobody = self.remote_invite(room, "@nobody:test")
        await self.refused(
            self.servlet.receive_invite(REMOTE, room, nobody_id, {"room_version": "10", "event": nobody}),
            404, "M_NOT_FOUND",
        )
        await self.refused(
            self.servlet.receive_invite("other.test", room, event_id, {"room_version": "10", "event": pdu}),
            400, "M_INVALID_PARAM",
        )
        remote_id, remote_user = self.remote_invite(room, "@x:" + REMOTE)
        await self.refused(
            self.servlet.receive_invite(REMOTE, room, remote_id, {"room_version": "10", "event": remote_user}),
            400, "M_INVALID_PARAM",
        )
        # v12: the room state must hold a signed create event.
        v12_id, v12 = self.remote_invite(room, self.bob, "12")
        await self.refused(
            self.servlet.receive_invite(REMOTE, room, v12_id, {
                "room_version": "12", "event": v12,
                "invite_room_state": [{"type": "m.room.name", "state_key": "", "sender": EVE,
                                       "content": {"name": "x"}}],
            }),
            400, "M_INVALID_PARAM",
        )
        forged = copy.deepcopy(pdu)
        forged["signatures"][REMOTE] = {
            k: v[::-1] for k, v in forged["signatures"][REMOTE].items()
        }
        await self.refused(
            self.servlet.receive_invite(REMOTE, room, event_id, {"room_version": "10", "event": forged}),
            400, "M_INVALID_PARAM",
        )
        self.assertIsNone(await self.hs.event_store.membership(self.bob, room))

    async def test_send_join_not_built_on_the_room(self) -> None:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        template = await self.template(room)
        event_id, pdu = self.complete(dict(template, prev_events=["$unknown"]))
        await self.refused(self.servlet.send_join(REMOTE, room, event_id, pdu), 400, "M_BAD_JSON")
        event_id, pdu = self.complete(dict(template, depth=template["depth"] + 10))
        await self.refused(self.servlet.send_join(REMOTE, room, event_id, pdu), 400, "M_BAD_JSON")


class AuthoriseChainTests(ServletTestCase):
    """L{authorise_chain} over a real send_join answer."""

    async def answer_events(self) -> dict[str, Any]:
        room = await self.create_room(self.at, preset="public_chat", room_version="10")
        event_id, pdu = self.complete(await self.template(room))
        answer = await self.servlet.send_join(REMOTE, room, event_id, pdu)
        version = get_room_version("10")
        events = {}
        for p in answer["state"] + answer["auth_chain"]:
            ev = parse_pdu(copy.deepcopy(p), version)
            events[ev.event_id] = ev
        return events

    async def test_accepts_honest_chain(self) -> None:
        self.assertEqual(authorise_chain(await self.answer_events()), set())

    async def test_missing_create_rejects_everything(self) -> None:
        events = await self.answer_events()
        create = next(e for e in events.values() if e.type == "m.room.create")
        del events[create.event_id]
        self.assertEqual(authorise_chain(events), set(events))

    async def test_unauthorised_event_and_dependents_rejected(self) -> None:
        events = await self.answer_events()
        pl = next(e for e in events.values() if e.type == "m.room.power_levels")
        # The same power levels sent by a user who may not send them.
        pl.pdu["sender"] = EVE
        dependents = {e.event_id for e in events.values() if pl.event_id in e.auth_event_ids()}
        rejected = authorise_chain(events)
        self.assertIn(pl.event_id, rejected)
        self.assertTrue(dependents)
        self.assertLessEqual(dependents, rejected)



class JoinLimitTests(RoomsTestCase):
    """
    Joining through other servers gives up after conduwuit's limits
    (federation/membership_client.py): 15 servers that refuse our room
    versions, 50 servers that fail.
    """

    async def setUp(self) -> None:
        await super().setUp()
        self.alice, _ = await self.user("alice")
        self.fake = FakeFederationClient()
        self.hs.remote_membership.federation = lambda: self.fake
        self.room = "!far:elsewhere.test"
        self.make_join = "/_matrix/federation/v1/make_join/%s/%s" % (
            quote(self.room, safe=""), quote(self.alice, safe="")
        )

    async def join(self, servers: int) -> MatrixError:
        names = ["s%d.test" % i for i in range(servers)]
        with self.assertRaises(MatrixError) as e:
            await self.hs.remote_membership.join(self.alice, self.room, names)
        return e.exception

    def asked(self) -> list[str]:
        return [destination for _, destination, path, _, _ in self.fake.requests if path == self.make_join]

    async def test_unsupported_versions(self) -> None:
        self.fake.answers[self.make_join] = RemoteError(
            "x", 400, "M_INCOMPATIBLE_ROOM_VERSION", "Your homeserver does not support the features"
        )
        e = await self.join(30)
        self.assertEqual((e.code, e.errcode), (400, "M_INCOMPATIBLE_ROOM_VERSION"))
        self.assertEqual(self.asked(), ["s%d.test" % i for i in range(MAX_UNSUPPORTED_VERSION_ANSWERS)])
        self.assertEqual(MAX_UNSUPPORTED_VERSION_ANSWERS, 15)

    async def test_answer_in_a_version_we_lack_counts_as_unsupported(self) -> None:
        self.fake.answers[self.make_join] = {"room_version": "99", "event": {}}
        e = await self.join(20)
        self.assertEqual((e.code, e.errcode), (400, "M_INCOMPATIBLE_ROOM_VERSION"))
        self.assertEqual(len(self.asked()), MAX_UNSUPPORTED_VERSION_ANSWERS)

    async def test_failing_servers(self) -> None:
        self.fake.answers[self.make_join] = RemoteError("x", 502, "M_UNKNOWN", "Bad gateway")
        e = await self.join(80)
        self.assertEqual((e.code, e.errcode), (404, "M_NOT_FOUND"))
        self.assertEqual(len(self.asked()), MAX_FAILING_SERVERS)
        self.assertEqual(MAX_FAILING_SERVERS, 50)
        # Unusable answers count as failures too.
        self.fake.requests.clear()
        self.fake.answers[self.make_join] = {"room_version": "10", "event": "not a template"}
        e = await self.join(80)
        self.assertEqual(len(self.asked()), MAX_FAILING_SERVERS)

    async def test_refusal_is_passed_on(self) -> None:
        self.fake.answers[self.make_join] = RemoteError("x", 403, "M_FORBIDDEN", "You are not invited")
        e = await self.join(3)
        self.assertEqual((e.code, e.errcode, e.msg), (403, "M_FORBIDDEN", "You are not invited"))
        # Every candidate was asked: the via servers, then the room ID's server.
        self.assertEqual(self.asked(), ["s0.test", "s1.test", "s2.test", "elsewhere.test"])
