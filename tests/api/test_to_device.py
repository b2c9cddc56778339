"""
Send-to-device messaging (client-server-api "Send-to-Device messaging"):
delivery in /sync, deletion once a later sync confirms receipt,
idempotency per transaction ID, C{*}, remote users, long-poll wake-up.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tests.api.e2ee_helpers import E2EETestCase


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def events(body: dict) -> list[dict]:
    return body.get("to_device", {}).get("events", [])


class ToDeviceTests(E2EETestCase):
    async def test_delivered_until_confirmed(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        first = (await self.sync(bob.token))["next_batch"]
        await self.send_to_device(alice, {bob.user_id: {bob.device_id: {"n": 1}}}, event_type="m.x")
        body = await self.sync(bob.token, since=first)
        self.assertEqual(events(body), [{"type": "m.x", "sender": alice.user_id, "content": {"n": 1}}])
        # The same token again (the response was lost): delivered again.
        self.assertEqual(events(await self.sync(bob.token, since=first)), events(body))
        # A token past it confirms receipt: gone for good.
        after = (await self.sync(bob.token, since=body["next_batch"]))
        self.assertEqual(events(after), [])
        self.assertEqual(events(await self.sync(bob.token, since=first)), [])
        self.assertEqual(events(await self.sync(bob.token)), [])

    async def test_initial_sync_delivers_and_keeps(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        await self.send_to_device(alice, {bob.user_id: {bob.device_id: {"n": 1}}})
        self.assertEqual(len(events(await self.sync(bob.token))), 1)
        self.assertEqual(len(events(await self.sync(bob.token))), 1)

    async def test_star_and_unknown_devices(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        bob2 = await self.device("bob", device_id="BOB2")
        await self.send_to_device(alice, {bob.user_id: {"*": {"all": True}, "NOPE": {"x": 1}}})
        await self.send_to_device(alice, {bob.user_id: {"BOB2": {"only": 2}}})
        self.assertEqual([e["content"] for e in events(await self.sync(bob.token))], [{"all": True}])
        self.assertEqual(
            [e["content"] for e in events(await self.sync(bob2.token))], [{"all": True}, {"only": 2}]
        )

    async def test_idempotent_per_device_and_txn(self) -> None:
        alice = await self.device("alice")
        alice2 = await self.device("alice", device_id="ALICE2")
        bob = await self.device("bob")
        msg = {bob.user_id: {bob.device_id: {"n": 1}}}
        await self.send_to_device(alice, msg, txn="same")
        await self.send_to_device(alice, msg, txn="same")
        self.assertEqual(len(events(await self.sync(bob.token))), 1)
        # Another device of the same user has its own transaction IDs.
        await self.send_to_device(alice2, msg, txn="same")
        self.assertEqual(len(events(await self.sync(bob.token))), 2)

    async def test_deleted_device_inbox_dropped(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        await self.device("bob", device_id="GONE")
        await self.send_to_device(alice, {bob.user_id: {"GONE": {"n": 1}}})
        r = await self.request(
            "DELETE", "/_matrix/client/v3/devices/GONE", {"auth": self.password_auth("bob")},
            access_token=bob.token,
        )
        self.assertEqual(r.code, 200, r.body)
        again = await self.device("bob", device_id="GONE")
        self.assertEqual(events(await self.sync(again.token)), [])

    async def test_refusals(self) -> None:
        alice = await self.device("alice")
        r = await self.send_to_device(alice, {"bob": {"D": {}}}, expect=400)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.send_to_device(alice, {"@bob:test": {"D": "text"}}, expect=400)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request(
            "PUT", "/_matrix/client/v3/sendToDevice/m.x/t1", {}, access_token=alice.token
        )
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("PUT", "/_matrix/client/v3/sendToDevice/m.x/t1", {"messages": {}})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_remote_users_go_to_the_federation_hook(self) -> None:
        alice = await self.device("alice")
        sent = []
        self.hs.to_device.remote_senders.append(lambda *args: sent.append(args))
        await self.send_to_device(
            alice, {"@bob:remote.example": {"D": {"n": 1}}}, event_type="m.room_key_request"
        )
        ((destination, sender, event_type, message_id, messages),) = sent
        self.assertEqual(
            (destination, sender, event_type, messages),
            ("remote.example", alice.user_id, "m.room_key_request", {"@bob:remote.example": {"D": {"n": 1}}}),
        )
        self.assertTrue(message_id)

    async def test_long_poll_wakes(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        since = (await self.sync(bob.token))["next_batch"]
        pending = Deferred.fromCoroutine(self.sync(bob.token, since=since, timeout=10000))
        await sleep(0.01)
        self.assertFalse(pending.called)
        await self.send_to_device(alice, {bob.user_id: {bob.device_id: {"wake": 1}}})
        body = await pending
        self.assertEqual([e["content"] for e in events(body)], [{"wake": 1}])
