"""
Receiving transactions (PUT /_matrix/federation/v1/send/{txnId}) and EDUs
both ways, on a real server: remote EDUs show up in a local user's /sync,
local typing, receipts, presence and events reach a remote server's
receiver (tests/federation/peer.py).

The remote user C{@bob:remote.example} is put into the room through the
normal persistence path (C{hs.events.send} of their join: signed by us,
not by their server, which is all these tests need until federated joins
exist). HTTP requests are X-Matrix signed with keys of an in-memory keyring
(tests/federation/keyring_stub.py).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

from conduit_tw.events.event_ids import compute_event_id
from conduit_tw.federation.xmatrix import sign_request
from conduit_tw.homeserver import HomeServer
from tests.api.rooms import V3, q
from tests.api.sync_helpers import SyncTestCase
from tests.federation.keyring_stub import MemoryKeyRing
from tests.federation.peer import Peer
from tests.server import Response

REMOTE = "remote.example"
BOB = "@bob:remote.example"
CAROL = "@carol:remote.example"
SEND = "/_matrix/federation/v1/send/"


class FederationTestCase(SyncTestCase):
    """Alice's public room with Bob of remote.example joined."""

    async def _start(self) -> None:
        await super()._start()
        self.alice, self.tok = await self.user("alice")
        self.room = await self.create_room(self.tok, preset="public_chat")
        await self.hs.events.send(self.room, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
        self.peer = Peer(self)
        self.hs.federation_sender.put_json = self.peer.put_json
        self._txn = 0
        self.keyring = MemoryKeyRing()
        self.hs.federation_auth.keyring = self.keyring
        self.keys: dict[str, Any] = {}

    async def transaction(
        self, edus: list[dict[str, Any]] = (), pdus: list[dict[str, Any]] = (),  # type: ignore[assignment]
        origin: str = REMOTE, txn_id: str | None = None,
    ) -> dict[str, Any]:
        """A transaction from C{origin}, straight to the handler."""
        if txn_id is None:
            self._txn += 1
            txn_id = str(self._txn)
        body = {"origin": origin, "origin_server_ts": 1, "pdus": list(pdus), "edus": list(edus)}
        return await self.hs.transactions.on_send(origin, txn_id, body)

    def put_send(
        self, txn_id: str, body: Any, origin: str | None = REMOTE, raw_body: bytes | None = None,
    ) -> Deferred[Response]:
        """PUT /send/{txnId} over HTTP, X-Matrix signed by C{origin} (None: unsigned)."""
        uri = SEND + q(txn_id)
        headers = {}
        if origin is not None:
            if origin not in self.keys:
                self.keys[origin] = self.keyring.add_server(origin)
            signed_body = body if raw_body is None else None
            headers["Authorization"] = sign_request(
                self.keys[origin], "ed25519:k1", origin, "test", "PUT", uri, signed_body
            ).decode()
        if raw_body is None:
            raw_body = json.dumps(body).encode()
        return self.request("PUT", uri, headers=headers, raw_body=raw_body)


def typing_edu(user_id: str, room_id: str, typing: bool = True) -> dict[str, Any]:
    return {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user_id, "typing": typing}}


def receipt_edu(user_id: str, room_id: str, event_id: str) -> dict[str, Any]:
    return {"edu_type": "m.receipt", "content": {room_id: {"m.read": {
        user_id: {"event_ids": [event_id], "data": {"ts": 1234}}}}}}


def presence_edu(user_id: str, presence: str = "online", **extra: Any) -> dict[str, Any]:
    return {"edu_type": "m.presence", "content": {"push": [
        {"user_id": user_id, "presence": presence, "last_active_ago": 5000, **extra}]}}


class SendEndpointTests(FederationTestCase):
    """The HTTP endpoint: authentication, bodies, limits, PDU results, de-duplication."""

    async def test_unauthenticated(self) -> None:
        """A request without a valid X-Matrix signature: 401."""
        r = await self.put_send("1", {"pdus": []}, origin=None)
        self.assertMatrixError(r, 401, "M_UNAUTHORIZED")

    async def test_bad_bodies(self) -> None:
        """Wrong shapes are 400 M_BAD_JSON, too much or a wrong origin 400 M_INVALID_PARAM."""
        cases = [
            ([], "M_BAD_JSON"),
            ({}, "M_BAD_JSON"),
            ({"pdus": {}}, "M_BAD_JSON"),
            ({"pdus": [1]}, "M_BAD_JSON"),
            ({"pdus": [], "edus": [[]]}, "M_BAD_JSON"),
            ({"pdus": [], "origin_server_ts": "now"}, "M_BAD_JSON"),
            ({"pdus": [{}] * 51}, "M_INVALID_PARAM"),
            ({"pdus": [], "edus": [{}] * 101}, "M_INVALID_PARAM"),
            ({"pdus": [], "origin": "other.example"}, "M_INVALID_PARAM"),
        ]
        for i, (body, errcode) in enumerate(cases):
            r = await self.put_send(f"bad{i}", body)
            self.assertMatrixError(r, 400, errcode)
        r = await self.put_send("x", None, raw_body=b"{not json")
        self.assertMatrixError(r, 400, "M_NOT_JSON")
        # The limits themselves are fine.
        r = await self.put_send("full", {"pdus": [{}] * 50, "edus": [{}] * 100})
        self.assertEqual((r.code, r.json), (200, {"pdus": {}}))

    async def test_pdu_results(self) -> None:
        """Every nameable PDU gets a result from the inbound pipeline; never a 500."""
        known = {
            "room_id": self.room, "type": "m.room.message", "sender": BOB,
            "content": {"body": "hi"}, "origin_server_ts": 1, "depth": 5,
            "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"},
        }
        version = (await self.hs.event_store.get_room(self.room)).version
        known_id = compute_event_id(known, version)
        unknown = {"room_id": "!nowhere:remote.example", "event_id": "$v1:remote.example", "type": "x"}
        unnamed = {"room_id": "!nowhere:remote.example", "type": "x"}
        odd = {"room_id": 5, "event_id": 7, "content": float("inf")}
        r = await self.put_send("p1", {"origin": REMOTE, "origin_server_ts": 1,
                                       "pdus": [known, unknown, unnamed]})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"pdus": {
            known_id: {"error": "Invalid event: missing required key 'signatures'"},
            "$v1:remote.example": {"error": "Unknown room"},
        }})
        # A PDU of a known room that can't even be hashed.
        response = await self.transaction(pdus=[dict(known, depth=float("inf")), odd])
        self.assertEqual(response, {"pdus": {}})

    async def test_deduplicated(self) -> None:
        """A repeated transaction ID gets the stored response and is not processed again."""
        r = await self.put_send("same", {"pdus": [], "edus": [typing_edu(BOB, self.room)]})
        self.assertEqual((r.code, r.json), (200, {"pdus": {}}))
        self.assertEqual(self.hs.typing.typing_users(self.room), [BOB])
        # Same ID, other content: answered from the record, the EDU is ignored.
        r = await self.put_send("same", {"pdus": [], "edus": [typing_edu(BOB, self.room, False)]})
        self.assertEqual((r.code, r.json), (200, {"pdus": {}}))
        self.assertEqual(self.hs.typing.typing_users(self.room), [BOB])
        # Another origin may use the same ID.
        await self.transaction([typing_edu("@dan:other.example", self.room)], origin="other.example",
                               txn_id="same")
        # A new ID is processed.
        r = await self.put_send("next", {"pdus": [], "edus": [typing_edu(BOB, self.room, False)]})
        self.assertEqual(r.code, 200)
        self.assertEqual(self.hs.typing.typing_users(self.room), [])

    async def test_contact_retries_sender(self) -> None:
        """A transaction from a server we are backing off from retries it at once."""
        self.peer.down = True
        await self.send_ok(self.tok, self.room)
        await self.hs.federation_sender.wait_idle()
        self.assertTrue(self.hs.federation_sender.backing_off(REMOTE))
        self.peer.down = False
        r = await self.put_send("hello", {"pdus": []})
        self.assertEqual(r.code, 200)
        await self.hs.federation_sender.wait_idle()
        self.assertFalse(self.hs.federation_sender.backing_off(REMOTE))
        self.assertEqual(len(self.peer.pdus), 1)


class InboundEduTests(FederationTestCase):
    """Typing, receipts and presence from remote.example in Alice's /sync."""

    async def sync_after(self, edus: list[dict[str, Any]], origin: str = REMOTE) -> dict[str, Any]:
        since = (await self.sync(self.tok))["next_batch"]
        await self.transaction(edus, origin=origin)
        return await self.sync(self.tok, since=since, timeout=0)

    def ephemeral(self, body: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
        room = self.joined(body, self.room) or {}
        return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]

    async def test_typing(self) -> None:
        body = await self.sync_after([typing_edu(BOB, self.room)])
        self.assertEqual(self.ephemeral(body, "m.typing"), [{"type": "m.typing", "content": {"user_ids": [BOB]}}])

    async def test_typing_refused(self) -> None:
        """Another server's user, a non-member, an unknown room: ignored."""
        await self.transaction([typing_edu(BOB, self.room)], origin="evil.example")
        await self.transaction([typing_edu(CAROL, self.room), typing_edu(BOB, "!other:test"),
                                typing_edu(self.alice, self.room)])
        self.assertEqual(self.hs.typing.typing_users(self.room), [])

    async def test_receipt(self) -> None:
        event_id = await self.send_ok(self.tok, self.room)
        body = await self.sync_after([receipt_edu(BOB, self.room, event_id)])
        [receipt] = self.ephemeral(body, "m.receipt")
        self.assertEqual(receipt["content"][event_id]["m.read"], {BOB: {"ts": 1234}})

    async def test_receipt_refused(self) -> None:
        """Wrong origin, non-member, unknown event, malformed: no receipt."""
        event_id = await self.send_ok(self.tok, self.room)
        since = (await self.sync(self.tok))["next_batch"]
        await self.transaction([receipt_edu(BOB, self.room, event_id)], origin="evil.example")
        await self.transaction([
            receipt_edu(CAROL, self.room, event_id),
            receipt_edu(BOB, self.room, "$unknown"),
            {"edu_type": "m.receipt", "content": {self.room: {"m.read": {BOB: {"event_ids": "x"}}}}},
            {"edu_type": "m.receipt", "content": {self.room: "x"}},
            {"edu_type": "m.receipt", "content": []},
        ])
        body = await self.sync(self.tok, since=since, timeout=0)
        self.assertEqual(self.ephemeral(body, "m.receipt"), [])

    async def test_presence(self) -> None:
        body = await self.sync_after([presence_edu(BOB, status_msg="away from keyboard")])
        events = [e for e in body.get("presence", {}).get("events", []) if e["sender"] == BOB]
        self.assertEqual(len(events), 1)
        content = events[0]["content"]
        self.assertEqual((content["presence"], content["status_msg"]), ("online", "away from keyboard"))
        self.assertGreaterEqual(content["last_active_ago"], 5000)

    async def test_presence_refused(self) -> None:
        """Another server's user, a user in no room with us, bad states: ignored."""
        await self.transaction([presence_edu(BOB)], origin="evil.example")
        await self.transaction([presence_edu(CAROL), presence_edu(BOB, "away"),
                                presence_edu(BOB, last_active_ago="x")])
        self.assertIsNone(await self.hs.presence.store.get(BOB))
        self.assertIsNone(await self.hs.presence.store.get(CAROL))

    async def test_unknown_and_malformed_edus(self) -> None:
        """Unknown types and bad EDUs are skipped, the transaction still succeeds."""
        response = await self.transaction([
            {"edu_type": "m.unknown", "content": {}}, {"edu_type": "m.typing"}, {"content": {}},
            {"edu_type": "m.direct_to_device", "content": {}}, typing_edu(BOB, self.room),
        ])
        self.assertEqual(response, {"pdus": {}})
        self.assertEqual(self.hs.typing.typing_users(self.room), [BOB])

    async def test_e2ee_hooks(self) -> None:
        """The end-to-end encryption EDUs are table entries others replace."""
        got = []

        async def to_device(origin: str, content: dict[str, Any]) -> None:
            got.append((origin, content))

        for name in ("m.direct_to_device", "m.device_list_update", "m.signing_key_update"):
            self.assertIn(name, self.hs.transactions.edu_handlers)
        self.hs.transactions.edu_handlers["m.direct_to_device"] = to_device
        await self.transaction([{"edu_type": "m.direct_to_device", "content": {"messages": {}}}])
        self.assertEqual(got, [(REMOTE, {"messages": {}})])


class NoIncomingPresenceTests(FederationTestCase):
    config_overrides = dict(FederationTestCase.config_overrides, allow_incoming_presence=False)

    async def test_ignored(self) -> None:
        await self.transaction([presence_edu(BOB)])
        self.assertIsNone(await self.hs.presence.store.get(BOB))


class NoIncomingTypingOrReceiptsTests(FederationTestCase):
    config_overrides = dict(
        FederationTestCase.config_overrides,
        allow_incoming_typing=False, allow_incoming_read_receipts=False,
    )

    async def test_ignored(self) -> None:
        event_id = await self.send_ok(self.tok, self.room)
        since = (await self.sync(self.tok))["next_batch"]
        await self.transaction([typing_edu(BOB, self.room), receipt_edu(BOB, self.room, event_id)])
        self.assertEqual(self.hs.typing.typing_users(self.room), [])
        body = await self.sync(self.tok, since=since, timeout=0)
        room = self.joined(body, self.room) or {}
        types = [e["type"] for e in room.get("ephemeral", {}).get("events", [])]
        self.assertNotIn("m.receipt", types)


class OutgoingTests(FederationTestCase):
    """Alice's typing, receipts, presence and events reach remote.example."""

    def edus(self, edu_type: str) -> list[dict[str, Any]]:
        return [e["content"] for e in self.peer.edus if e["edu_type"] == edu_type]

    async def settle(self) -> None:
        await self.hs.federation_sender.wait_idle()

    async def test_typing(self) -> None:
        r = await self.request("PUT", f"{V3}/rooms/{q(self.room)}/typing/{q(self.alice)}",
                               {"typing": True, "timeout": 20000}, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)
        await self.settle()
        self.assertEqual(self.edus("m.typing"), [{"room_id": self.room, "user_id": self.alice, "typing": True}])
        self.assertEqual({c[0] for c in self.peer.calls}, {REMOTE})

    async def test_receipt(self) -> None:
        event_id = await self.send_ok(self.tok, self.room)
        await self.receipt(self.tok, self.room, event_id)
        await self.receipt(self.tok, self.room, event_id, "m.read.private")
        await self.settle()
        [content] = self.edus("m.receipt")
        read = content[self.room]["m.read"][self.alice]
        self.assertEqual(read["event_ids"], [event_id])
        self.assertIsInstance(read["data"]["ts"], int)

    async def test_presence(self) -> None:
        r = await self.request("PUT", f"{V3}/presence/{q(self.alice)}/status",
                               {"presence": "online", "status_msg": "here"}, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)
        await self.settle()
        pushes = [p for c in self.edus("m.presence") for p in c["push"]]
        self.assertEqual(pushes[-1]["user_id"], self.alice)
        self.assertEqual((pushes[-1]["presence"], pushes[-1]["status_msg"]), ("online", "here"))
        self.assertIsInstance(pushes[-1]["last_active_ago"], int)

    async def test_events(self) -> None:
        """Our users' new events go to the room's other servers, remote users' ones do not."""
        event_id = await self.send_ok(self.tok, self.room, {"msgtype": "m.text", "body": "to bob"})
        await self.hs.events.send(self.room, BOB, "m.room.message", {"msgtype": "m.text", "body": "x"})
        await self.settle()
        self.assertEqual([p["content"].get("body") for p in self.peer.pdus], ["to bob"])
        stored = await self.hs.event_store.get_event(event_id)
        self.assertEqual(self.peer.pdus[0], stored.pdu)

    async def test_no_remote_members(self) -> None:
        """A room with only local members sends nothing."""
        room = await self.create_room(self.tok)
        await self.send_ok(self.tok, room)
        r = await self.request("PUT", f"{V3}/rooms/{q(room)}/typing/{q(self.alice)}",
                               {"typing": True}, access_token=self.tok)
        self.assertEqual(r.code, 200)
        await self.settle()
        self.assertEqual(self.peer.calls, [])


class NoOutgoingPresenceTests(FederationTestCase):
    config_overrides = dict(FederationTestCase.config_overrides, allow_outgoing_presence=False)

    async def test_not_sent(self) -> None:
        r = await self.request("PUT", f"{V3}/presence/{q(self.alice)}/status",
                               {"presence": "online"}, access_token=self.tok)
        self.assertEqual(r.code, 200)
        await self.hs.federation_sender.wait_idle()
        self.assertEqual([e for e in self.peer.edus if e["edu_type"] == "m.presence"], [])


class NoOutgoingTypingOrReceiptsTests(FederationTestCase):
    config_overrides = dict(
        FederationTestCase.config_overrides,
        allow_outgoing_typing=False, allow_outgoing_read_receipts=False,
    )

    async def test_not_sent(self) -> None:
        r = await self.request("PUT", f"{V3}/rooms/{q(self.room)}/typing/{q(self.alice)}",
                               {"typing": True, "timeout": 20000}, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)
        event_id = await self.send_ok(self.tok, self.room)
        await self.receipt(self.tok, self.room, event_id)
        await self.hs.federation_sender.wait_idle()
        sent = {e["edu_type"] for e in self.peer.edus}
        self.assertNotIn("m.typing", sent)
        self.assertNotIn("m.receipt", sent)
        self.assertEqual(len(self.peer.pdus), 1)  # the message itself still goes


class RestartTests(FederationTestCase):
    """A new HomeServer on the same database sends what was queued."""

    async def test_queue_survives_restart(self) -> None:
        from twisted.internet import reactor

        self.peer.down = True
        event_id = await self.send_ok(self.tok, self.room, {"msgtype": "m.text", "body": "queued"})
        await self.receipt(self.tok, self.room, event_id)
        await self.hs.federation_sender.wait_idle()
        self.assertTrue(self.hs.federation_sender.backing_off(REMOTE))
        self.assertEqual(self.peer.delivered, [])
        await self.hs.close()

        self.peer.down = False
        self.hs = HomeServer(self.config, reactor)
        self.addCleanup(self.hs.close)
        self.hs.federation_sender.put_json = self.peer.put_json
        await self.hs.setup()
        await self.hs.federation_sender.wait_idle()
        self.assertEqual([p["content"]["body"] for p in self.peer.pdus], ["queued"])
        [receipt] = [e["content"] for e in self.peer.edus if e["edu_type"] == "m.receipt"]
        self.assertEqual(receipt[self.room]["m.read"][self.alice]["event_ids"], [event_id])


class AclOnSendTests(FederationTestCase):
    """A denied server's typing, receipts and PDUs are ignored."""

    async def test_denied(self) -> None:
        event_id = await self.send_ok(self.tok, self.room)
        r = await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{self.room}/state/m.room.server_acl/",
            {"allow": ["*"], "deny": ["remote.example"]}, access_token=self.tok,
        )
        self.assertEqual(r.code, 200, r.body)
        pdu = {"room_id": self.room, "event_id": "$x:remote.example", "type": "m.room.message"}
        response = await self.transaction(
            [typing_edu(BOB, self.room), receipt_edu(BOB, self.room, event_id)], [pdu]
        )
        self.assertEqual(self.hs.typing.typing_users(self.room), [])
        room = await self.hs.event_store.get_room(self.room)
        receipts = await self.hs.receipts.store.user_receipts(BOB, room.short)
        self.assertEqual(receipts, ())
        [result] = response["pdus"].values()
        self.assertIn("ACL", result["error"])
        # Allowed again: accepted.
        await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{self.room}/state/m.room.server_acl/",
            {"allow": ["*"]}, access_token=self.tok,
        )
        await self.transaction([typing_edu(BOB, self.room)])
        self.assertEqual(self.hs.typing.typing_users(self.room), [BOB])
