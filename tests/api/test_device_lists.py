"""
Device list tracking (client-server-api "Tracking the device list for a
user"): C{device_lists.changed/left} in incremental /sync and
C{/keys/changes}.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tests.api.e2ee_helpers import E2EETestCase
from tests.api.rooms import V3


def lists(body: dict) -> tuple[list[str], list[str]]:
    d = body.get("device_lists", {})
    return d.get("changed", []), d.get("left", [])


class DeviceListTests(E2EETestCase):
    async def pair(self):
        alice = await self.device("alice")
        bob = await self.device("bob")
        room = await self.create_room(alice.token, preset="public_chat")
        await self.join(bob.token, room)
        return alice, bob, room

    async def test_new_device_keys_seen_by_room_members(self) -> None:
        alice, bob, _ = await self.pair()
        carol = await self.device("carol")  # shares no room
        since_a = (await self.sync(alice.token))["next_batch"]
        since_c = (await self.sync(carol.token))["next_batch"]
        since_b = (await self.sync(bob.token))["next_batch"]
        await self.upload_device_keys(bob)
        body = await self.sync(alice.token, since=since_a)
        self.assertEqual(lists(body), ([bob.user_id], []))
        self.assertEqual(lists(await self.sync(carol.token, since=since_c)), ([], []))
        # The user's own devices hear of it too.
        self.assertEqual(lists(await self.sync(bob.token, since=since_b)), ([bob.user_id], []))
        # Not repeated.
        self.assertEqual(lists(await self.sync(alice.token, since=body["next_batch"])), ([], []))
        r = await self.request(
            "GET", f"{V3}/keys/changes?from={since_a}&to={body['next_batch']}", access_token=alice.token
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"changed": [bob.user_id], "left": []})
        r = await self.request(
            "GET", f"{V3}/keys/changes?from={since_c}&to={body['next_batch']}", access_token=carol.token
        )
        self.assertEqual(r.json, {"changed": [], "left": []})

    async def test_device_deletion_and_new_device(self) -> None:
        alice, bob, _ = await self.pair()
        await self.upload_device_keys(bob)
        since = (await self.sync(alice.token))["next_batch"]
        second = await self.device("bob", device_id="BOB2")
        # A device without keys is no change yet; its keys are.
        self.assertEqual(lists(await self.sync(alice.token, since=since)), ([], []))
        await self.upload_device_keys(second)
        body = await self.sync(alice.token, since=since)
        self.assertEqual(lists(body), ([bob.user_id], []))
        since = body["next_batch"]
        r = await self.request(
            "DELETE", V3 + "/devices/BOB2", {"auth": self.password_auth("bob")}, access_token=bob.token
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(lists(await self.sync(alice.token, since=since)), ([bob.user_id], []))

    async def test_join_and_leave(self) -> None:
        alice, bob, room = await self.pair()
        carol = await self.device("carol")
        since_a = (await self.sync(alice.token))["next_batch"]
        since_c = (await self.sync(carol.token))["next_batch"]
        await self.join(carol.token, room)
        body_a = await self.sync(alice.token, since=since_a)
        self.assertEqual(lists(body_a), ([carol.user_id], []))
        body_c = await self.sync(carol.token, since=since_c)
        self.assertEqual(lists(body_c), ([alice.user_id, bob.user_id], []))
        # Carol leaves: they no longer share a room.
        r = await self.request("POST", f"{V3}/rooms/{room}/leave", {}, access_token=carol.token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(lists(await self.sync(alice.token, since=body_a["next_batch"])), ([], [carol.user_id]))
        self.assertEqual(
            lists(await self.sync(carol.token, since=body_c["next_batch"])), ([], [alice.user_id, bob.user_id])
        )

    async def test_leave_while_still_sharing_another_room(self) -> None:
        alice, bob, room = await self.pair()
        other = await self.create_room(alice.token, preset="public_chat")
        await self.join(bob.token, other)
        since = (await self.sync(alice.token))["next_batch"]
        r = await self.request("POST", f"{V3}/rooms/{room}/leave", {}, access_token=bob.token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(lists(await self.sync(alice.token, since=since)), ([], []))

    async def test_long_poll_wakes_on_key_change(self) -> None:
        alice, bob, _ = await self.pair()
        since = (await self.sync(alice.token))["next_batch"]
        pending = Deferred.fromCoroutine(self.sync(alice.token, since=since, timeout=10000))
        await deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(pending.called)
        await self.upload_device_keys(bob)
        self.assertEqual(lists(await pending), ([bob.user_id], []))

    async def test_changes_refusals(self) -> None:
        alice = await self.device("alice")
        r = await self.request("GET", f"{V3}/keys/changes?from=s1_0", access_token=alice.token)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("GET", f"{V3}/keys/changes?from=bad&to=s1_0", access_token=alice.token)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("GET", f"{V3}/keys/changes?from=s0_0&to=s1_0")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
