"""
End-to-end encryption between two of our servers over real federation
(TLS on loopback, the real keyring, the real sender and /send): keys
query and claim across servers, to-device messages across servers in
/sync, a new device on one server in the other's C{device_lists.changed};
then matrix-nio clients (Olm/Megolm) on the two servers in an encrypted
room: Alice on A sends, Bob on B decrypts the exact plaintext.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.api.e2ee_helpers import Device
from tests.api.rooms import V3, q
from tests.integration.federation import start_homeserver
from tests.integration.nio_support import NIO_MISSING, E2EETestCase, nio
from tests.integration.process import ServerProcess
from tests.integration.test_federation_membership import Server
from tests.integration.test_nio_e2ee import ENCRYPTION_ENABLED, ENCRYPTION_STATE


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 15) -> Any:
    """Await C{check()} every 0.1 s until it returns something true."""
    for _ in range(int(seconds * 10)):
        result = await check()
        if result:
            return result
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"never: {what}")


async def _not_sharing(server: Server, user_id: str) -> bool:
    return not await server.hs.federation_e2ee.servers_sharing(user_id)


class FederatedE2EETests(unittest.TestCase):
    timeout = 120

    async def device(self, server: Server, name: str, device_id: str) -> Device:
        r = await server.request(
            "POST", V3 + "/register",
            {"auth": {"type": "m.login.dummy"}, "username": name, "password": "secret pw",
             "device_id": device_id},
        )
        assert r.code == 200, r.body
        return Device(r.json["user_id"], r.json["device_id"], r.json["access_token"])

    async def upload(self, server: Server, device: Device, otks: int = 0) -> None:
        body: dict[str, Any] = {"device_keys": device.device_keys()}
        if otks:
            body["one_time_keys"] = device.one_time_keys(otks)
        r = await server.request("POST", V3 + "/keys/upload", body, device.token)
        self.assertEqual(r.code, 200, r.body)

    async def new_device(self, server: Server, user: Device, device_id: str) -> Device:
        """Log C{user} in again as C{device_id} (password C{secret pw}) and upload its keys."""
        r = await server.request(
            "POST", V3 + "/login",
            {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
             "password": "secret pw", "device_id": device_id},
        )
        self.assertEqual(r.code, 200, r.body)
        device = Device(user.user_id, device_id, r.json["access_token"])
        await self.upload(server, device)
        return device

    async def _scenario(self) -> None:
        a = Server(await start_homeserver(self))
        b = Server(await start_homeserver(self))
        alice = await self.device(a, "alice", "ALICE1")
        bob = await self.device(b, "bob", "BOB1")
        await self.upload(a, alice, otks=2)
        r = await a.request("POST", V3 + "/createRoom", {"preset": "public_chat"}, alice.token)
        self.assertEqual(r.code, 200, r.body)
        room = r.json["room_id"]
        r = await b.request("POST", V3 + "/join/%s?via=%s" % (q(room), q(a.name)), {}, bob.token)
        self.assertEqual(r.code, 200, r.body)
        # Bob's keys uploaded after the join reach A as a device list update.
        since = (await a.sync(alice.token))["next_batch"]
        await self.upload(b, bob, otks=1)

        # Keys query and claim across servers, both ways.
        r = await b.request("POST", V3 + "/keys/query", {"device_keys": {alice.user_id: []}}, bob.token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["failures"], {})
        self.assertEqual(
            r.json["device_keys"][alice.user_id]["ALICE1"]["keys"], alice.device_keys()["keys"]
        )
        claim = {"one_time_keys": {alice.user_id: {"ALICE1": "signed_curve25519"}}}
        r = await b.request("POST", V3 + "/keys/claim", claim, bob.token)
        self.assertEqual(r.code, 200, r.body)
        (key,) = r.json["one_time_keys"][alice.user_id]["ALICE1"].values()
        self.assertIn(key["key"], ("otk1", "otk2"))

        async def alice_sees_bob_changed() -> Any:
            body = await a.request("GET", V3 + "/sync?timeout=0&since=" + q(since), token=alice.token)
            return bob.user_id in body.json.get("device_lists", {}).get("changed", [])

        await eventually(alice_sees_bob_changed, "bob's keys in alice's device_lists.changed")

        async def alice_has_bob_device(device_id: str) -> Any:
            r = await a.request("POST", V3 + "/keys/query", {"device_keys": {bob.user_id: []}}, alice.token)
            return device_id in r.json["device_keys"].get(bob.user_id, {})

        await eventually(lambda: alice_has_bob_device("BOB1"), "bob's device keys on A")

        # To-device from A to B.
        r = await a.request(
            "PUT", V3 + "/sendToDevice/m.test/t1",
            {"messages": {bob.user_id: {"*": {"hello": "bob"}}}}, alice.token,
        )
        self.assertEqual(r.code, 200, r.body)

        async def bob_got_it() -> Any:
            body = (await b.sync(bob.token)).get("to_device", {}).get("events", [])
            return [e for e in body if e["type"] == "m.test"]

        (event,) = await eventually(bob_got_it, "the to-device message on B")
        self.assertEqual(event, {"type": "m.test", "sender": alice.user_id, "content": {"hello": "bob"}})

        # A new device of bob's on B shows up in alice's device_lists.changed.
        since = (await a.sync(alice.token))["next_batch"]
        await self.new_device(b, bob, "BOB2")
        await eventually(alice_sees_bob_changed, "bob's new device in alice's device_lists.changed")
        await eventually(lambda: alice_has_bob_device("BOB2"), "bob's new device keys on A")
        # A tracks bob's list through the EDUs (the cache answers alice now).
        cached = await a.hs.federation_e2ee.store.remote_user(bob.user_id)
        self.assertEqual(sorted(cached["devices"]), ["BOB1", "BOB2"])

    def test_keys_to_device_and_device_lists(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._scenario())

    async def _joined_remote_room(self) -> None:
        a = Server(await start_homeserver(self))
        b = Server(await start_homeserver(self))
        alice = await self.device(a, "alice", "ALICE1")
        bob = await self.device(b, "bob", "BOB1")
        await self.upload(b, bob)
        r = await b.request("POST", V3 + "/createRoom", {"preset": "public_chat"}, bob.token)
        self.assertEqual(r.code, 200, r.body)
        room = r.json["room_id"]
        # Something asked A about bob's rooms before the join (none then).
        self.assertFalse(await a.hs.federation_e2ee.shared_with_us(bob.user_id))
        since = (await a.sync(alice.token))["next_batch"]
        r = await a.request("POST", V3 + "/join/%s?via=%s" % (q(room), q(b.name)), {}, alice.token)
        self.assertEqual(r.code, 200, r.body)
        # Alice now shares a room with bob: he is "changed" for her.
        body = await a.request("GET", V3 + "/sync?timeout=0&since=" + q(since), token=alice.token)
        self.assertIn(bob.user_id, body.json.get("device_lists", {}).get("changed", []))
        # A learnt bob's membership from the send_join state: bob's device
        # list updates are tracked, and a new device is seen by alice.
        self.assertTrue(await a.hs.federation_e2ee.shared_with_us(bob.user_id))
        since = (await a.sync(alice.token))["next_batch"]
        await self.new_device(b, bob, "BOB2")

        async def alice_sees_bob_changed() -> Any:
            body = await a.request("GET", V3 + "/sync?timeout=0&since=" + q(since), token=alice.token)
            return bob.user_id in body.json.get("device_lists", {}).get("changed", [])

        await eventually(alice_sees_bob_changed, "bob's new device in alice's device_lists.changed")
        cached = await a.hs.federation_e2ee.store.remote_user(bob.user_id)
        self.assertEqual(sorted(cached["devices"]), ["BOB1", "BOB2"])

    def test_device_lists_of_remote_room_members(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._joined_remote_room())

    async def _stale_list_after_rejoin(self) -> None:
        a = Server(await start_homeserver(self))
        b = Server(await start_homeserver(self))
        alice = await self.device(a, "alice", "ALICE1")
        bob = await self.device(b, "bob", "BOB1")
        await self.upload(b, bob)

        async def bobs_devices_on_a() -> list[str]:
            r = await a.request("POST", V3 + "/keys/query", {"device_keys": {bob.user_id: []}}, alice.token)
            return sorted(r.json["device_keys"].get(bob.user_id, {}))

        async def room_of_bob() -> str:
            r = await b.request("POST", V3 + "/createRoom", {"preset": "public_chat"}, bob.token)
            self.assertEqual(r.code, 200, r.body)
            return r.json["room_id"]

        first, second = await room_of_bob(), await room_of_bob()
        r = await a.request("POST", V3 + "/join/%s?via=%s" % (q(first), q(b.name)), {}, alice.token)
        self.assertEqual(r.code, 200, r.body)
        # A tracks bob's list while they share a room (a new device of his
        # makes B send an update, and A caches the list).
        await self.new_device(b, bob, "BOB2")
        await eventually(
            lambda: a.hs.federation_e2ee.store.remote_user(bob.user_id), "bob's list cached on A"
        )
        # Alice leaves: B stops telling A about bob's devices.
        r = await a.request("POST", V3 + "/rooms/%s/leave" % q(first), {}, alice.token)
        self.assertEqual(r.code, 200, r.body)
        await eventually(lambda: _not_sharing(b, bob.user_id), "B no longer sharing bob with A")
        await self.new_device(b, bob, "BOB3")
        # Alice joins bob's other room: A must not answer from the list it
        # kept from before, which lacks BOB3.
        r = await a.request("POST", V3 + "/join/%s?via=%s" % (q(second), q(b.name)), {}, alice.token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await bobs_devices_on_a(), ["BOB1", "BOB2", "BOB3"])

    def test_no_stale_device_list_after_joining_again(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stale_list_after_rejoin())


class NioFederatedE2EETests(E2EETestCase):
    """matrix-nio on two of our servers (each a real C{twistd -n conduit} over TLS)."""

    skip = NIO_MISSING or (None if ENCRYPTION_ENABLED else "matrix-nio has no e2e support")

    def test_encrypted_message_across_servers(self) -> None:
        a = self._federating_server()
        b = self._federating_server()
        self._run_async(self._session(a, b))

    async def _session(self, a: ServerProcess, b: ServerProcess) -> None:
        alice = self._client(a.base_url, "alice", ssl=False)
        bob = self._client(b.base_url, "bob", ssl=False)
        try:
            await self._register(alice, bob)
            created = await alice.room_create(name="Secret", initial_state=[ENCRYPTION_STATE])
            self.assertIsInstance(created, nio.RoomCreateResponse, repr(created))
            room = created.room_id
            invited = await alice.room_invite(room, bob.user_id)
            self.assertIsInstance(invited, nio.RoomInviteResponse, repr(invited))
            await self._until(bob, lambda: room in bob.invited_rooms, "bob's invite", rounds=40)
            joined = await bob.join(room)
            self.assertIsInstance(joined, nio.JoinResponse, repr(joined))
            await self._sync(bob)
            await self._until(
                alice,
                lambda: bob.user_id in alice.rooms[room].users
                and bob.device_id in alice.device_store[bob.user_id],
                "alice knows bob's device", rounds=40,
            )
            self.assertTrue(alice.rooms[room].encrypted)
            sent = await alice.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "across the federation"},
                ignore_unverified_devices=True,
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, repr(sent))
            got = await self._receive(bob, room, "across the federation", rounds=40)
            self.assertTrue(got.decrypted)
            self.assertEqual(got.sender, alice.user_id)
            self.assertEqual(got.event_id, sent.event_id)
        finally:
            for client in (alice, bob):
                await client.close()
