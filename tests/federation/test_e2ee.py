"""
End-to-end encryption over federation (federation/e2ee.py,
api/federation/user_keys.py): the three EDUs' acceptance rules both ways,
device list gaps resynced through C{GET /user/devices/{userId}}, remote
users' keys for our clients from the cache or their server, and our users'
keys served to other servers. The remote server is simulated
(L{FederatedRoomTestCase}: C{@bob:remote.example} joins over federation);
its answers to our requests come from a L{FakeFederationClient}.
"""

from __future__ import annotations

from typing import Any

from conduit_tw.federation.errors import NotReachable
from tests.api.e2ee_helpers import Device, E2EETestCase, cross_signing_key
from tests.api.rooms import q
from tests.federation.rooms import BOB, REMOTE, FederatedRoomTestCase
from tests.federation.test_event_serving import StandInFederationAuth

DEVICES = "/_matrix/federation/v1/user/devices/" + q(BOB)
QUERY = "/_matrix/federation/v1/user/keys/query"
CLAIM = "/_matrix/federation/v1/user/keys/claim"
V1 = "/_matrix/federation/v1"


class FederatedE2EETestCase(FederatedRoomTestCase, E2EETestCase):
    """Bob (remote) and carol (ours, with device keys) are joined to the room."""

    async def setUp(self) -> None:
        await super().setUp()
        self.carol = await self.device("carol")
        await self.upload_device_keys(self.carol, otks=2)
        r = await self.join(self.carol.token, self.room_id)
        self.assertEqual(r.code, 200, r.body)
        await self.teach()
        await self.join_bob()
        self.bob1 = Device(BOB, "BOB1", "")
        self.bob2 = Device(BOB, "BOB2", "")

    def devices_answer(self, stream_id: int, *devices: Device, **extra: Any) -> dict[str, Any]:
        return dict({
            "user_id": BOB, "stream_id": stream_id,
            "devices": [{"device_id": d.device_id, "keys": d.device_keys()} for d in devices],
        }, **extra)

    def update(self, stream_id: int, prev: list[int], device: Device, **extra: Any) -> dict[str, Any]:
        return dict({
            "user_id": BOB, "device_id": device.device_id, "stream_id": stream_id,
            "prev_id": prev, "keys": device.device_keys(),
        }, **extra)

    def asked(self, path: str) -> int:
        return sum(1 for r in self.federation.requests if r[2] == path)

    async def edus(self, edu_type: str) -> list[dict[str, Any]]:
        await self.hs.federation_sender.wait_idle()
        return [
            edu["content"] for dest, _, body in self.sent if dest == REMOTE
            for edu in body.get("edus", []) if edu["edu_type"] == edu_type
        ]

    async def bob_devices(self) -> dict[str, Any]:
        got = await self.query(self.carol, {BOB: []})
        self.assertEqual(got["failures"], {})
        return got["device_keys"].get(BOB, {})


class DeviceListUpdateTests(FederatedE2EETestCase):
    async def test_first_update_resyncs_then_incremental(self) -> None:
        since = (await self.sync(self.carol.token))["next_batch"]
        self.federation.answers[DEVICES] = self.devices_answer(5, self.bob1)
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(5, [4], self.bob1))
        self.assertEqual(self.asked(DEVICES), 1)
        body = await self.sync(self.carol.token, since=since)
        self.assertIn(BOB, body["device_lists"]["changed"])
        # Served from the cache: no keys/query to the remote.
        self.assertEqual(list(await self.bob_devices()), ["BOB1"])
        self.assertEqual(self.asked(QUERY), 0)
        # The next update follows on: applied without a request.
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(6, [5], self.bob2))
        self.assertEqual(self.asked(DEVICES), 1)
        self.assertEqual(sorted(await self.bob_devices()), ["BOB1", "BOB2"])
        # A repeat changes nothing; a deletion removes the device.
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(6, [5], self.bob2))
        await self.hs.federation_e2ee.on_device_list_update(
            REMOTE, {"user_id": BOB, "device_id": "BOB1", "stream_id": 7, "prev_id": [6], "deleted": True}
        )
        self.assertEqual(list(await self.bob_devices()), ["BOB2"])
        self.assertEqual(self.asked(DEVICES), 1)

    async def test_gap_resyncs(self) -> None:
        self.federation.answers[DEVICES] = self.devices_answer(5, self.bob1)
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(5, [], self.bob1))
        self.federation.answers[DEVICES] = self.devices_answer(9, self.bob2)
        # prev_id 8 was never seen: an update was lost.
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(9, [8], self.bob2))
        self.assertEqual(self.asked(DEVICES), 2)
        self.assertEqual(list(await self.bob_devices()), ["BOB2"])
        # And the chain continues from the resynced stream ID.
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(10, [9], self.bob1))
        self.assertEqual(self.asked(DEVICES), 2)
        self.assertEqual(sorted(await self.bob_devices()), ["BOB1", "BOB2"])

    async def test_refused_updates(self) -> None:
        self.federation.answers[DEVICES] = self.devices_answer(5, self.bob1)
        # Another server does not speak for bob.
        await self.hs.federation_e2ee.on_device_list_update("evil.example", self.update(5, [], self.bob1))
        # A user sharing no room with ours is not tracked.
        stranger = Device("@stranger:remote.example", "S", "")
        content = dict(self.update(5, [], stranger), user_id=stranger.user_id)
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, content)
        # Malformed.
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, dict(self.update(5, [], self.bob1), stream_id="5"))
        self.assertEqual(self.federation.requests, [])

    async def test_invalid_keys_in_resync_dropped(self) -> None:
        forged = self.bob2.device_keys()
        forged["keys"]["curve25519:BOB2"] = "tampered"
        answer = self.devices_answer(5, self.bob1)
        answer["devices"].append({"device_id": "BOB2", "keys": forged})
        self.federation.answers[DEVICES] = answer
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(5, [], self.bob1))
        self.assertEqual(list(await self.bob_devices()), ["BOB1"])

    async def test_through_a_transaction(self) -> None:
        self.federation.answers[DEVICES] = self.devices_answer(5, self.bob1)
        await self.hs.transactions.on_send(REMOTE, "t1", {
            "origin": REMOTE, "origin_server_ts": 0, "pdus": [],
            "edus": [{"edu_type": "m.device_list_update", "content": self.update(5, [], self.bob1)}],
        })
        self.assertEqual(self.asked(DEVICES), 1)


class SigningKeyUpdateTests(FederatedE2EETestCase):
    async def test_signing_key_update(self) -> None:
        master, _ = cross_signing_key(BOB, "master")
        self.federation.answers[DEVICES] = self.devices_answer(5, self.bob1, master_key=master)
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(5, [], self.bob1))
        got = await self.query(self.carol, {BOB: []})
        self.assertEqual(got["master_keys"][BOB], master)
        new_master, _ = cross_signing_key(BOB, "master")
        await self.hs.federation_e2ee.on_signing_key_update("evil.example", {"user_id": BOB, "master_key": new_master})
        self.assertEqual((await self.query(self.carol, {BOB: []}))["master_keys"][BOB], master)
        await self.hs.federation_e2ee.on_signing_key_update(REMOTE, {"user_id": BOB, "master_key": new_master})
        self.assertEqual((await self.query(self.carol, {BOB: []}))["master_keys"][BOB], new_master)


class DirectToDeviceTests(FederatedE2EETestCase):
    async def test_inbound(self) -> None:
        since = (await self.sync(self.carol.token))["next_batch"]
        edu = {
            "sender": BOB, "type": "m.room_key_request", "message_id": "m1",
            "messages": {self.carol.user_id: {"*": {"n": 1}}, "@x:elsewhere": {"D": {"n": 2}}},
        }
        await self.hs.federation_e2ee.on_direct_to_device(REMOTE, edu)
        await self.hs.federation_e2ee.on_direct_to_device(REMOTE, edu)  # a retry: once
        await self.hs.federation_e2ee.on_direct_to_device("evil.example", dict(edu, message_id="m2"))
        body = await self.sync(self.carol.token, since=since)
        self.assertEqual(body["to_device"]["events"], [
            {"sender": BOB, "type": "m.room_key_request", "content": {"n": 1}},
        ])

    async def test_outbound(self) -> None:
        r = await self.request(
            "PUT", f"/_matrix/client/v3/sendToDevice/m.test/t1",
            {"messages": {BOB: {"BOB1": {"n": 1}}}}, access_token=self.carol.token,
        )
        self.assertEqual(r.code, 200, r.body)
        (edu,) = await self.edus("m.direct_to_device")
        self.assertEqual(edu["sender"], self.carol.user_id)
        self.assertEqual(edu["type"], "m.test")
        self.assertEqual(edu["messages"], {BOB: {"BOB1": {"n": 1}}})
        self.assertTrue(edu["message_id"])


class OutgoingDeviceListTests(FederatedE2EETestCase):
    async def test_updates_chain(self) -> None:
        second = await self.device("carol", device_id="CAROL2")
        await self.upload_device_keys(second)
        r = await self.request(
            "DELETE", "/_matrix/client/v3/devices/CAROL2",
            {"auth": {"type": "m.login.password", "password": "secret pw",
                      "identifier": {"type": "m.id.user", "user": "carol"}}},
            access_token=self.carol.token,
        )
        self.assertEqual(r.code, 200, r.body)
        updates = await self.edus("m.device_list_update")
        self.assertEqual(
            [(u["device_id"], u["stream_id"], u["prev_id"], u["deleted"]) for u in updates],
            [("CAROL2", 2, [1], False), ("CAROL2", 3, [2], True)],
        )
        self.assertEqual(updates[0]["keys"], second.device_keys())
        # GET /user/devices agrees with the stream.
        self.hs.federation_auth.authenticate = StandInFederationAuth().authenticate  # type: ignore[method-assign]
        h = {"X-Test-Origin": REMOTE}
        r = await self.request("GET", f"{V1}/user/devices/{q(self.carol.user_id)}", headers=h)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["stream_id"], 3)
        self.assertEqual(r.json["devices"], [{"device_id": "CAROL1", "keys": self.carol.device_keys()}])

    async def test_signing_key_update_sent(self) -> None:
        master, _ = cross_signing_key(self.carol.user_id, "master")
        r = await self.request(
            "POST", "/_matrix/client/v3/keys/device_signing/upload", {"master_key": master},
            access_token=self.carol.token,
        )
        self.assertEqual(r.code, 200, r.body)
        (edu,) = await self.edus("m.signing_key_update")
        self.assertEqual(edu, {"user_id": self.carol.user_id, "master_key": master})


class ServingTests(FederatedE2EETestCase):
    async def test_query_claim_devices(self) -> None:
        self.hs.federation_auth.authenticate = StandInFederationAuth().authenticate  # type: ignore[method-assign]
        h = {"X-Test-Origin": REMOTE}
        carol = self.carol.user_id
        r = await self.request("POST", f"{V1}/user/keys/query", {"device_keys": {carol: [], BOB: []}}, headers=h)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(list(r.json["device_keys"]), [carol])
        self.assertEqual(r.json["device_keys"][carol]["CAROL1"]["keys"], self.carol.device_keys()["keys"])
        want = {"one_time_keys": {carol: {"CAROL1": "signed_curve25519"}}}
        got = set()
        for _ in range(3):
            r = await self.request("POST", f"{V1}/user/keys/claim", want, headers=h)
            self.assertEqual(r.code, 200, r.body)
            got.update(r.json["one_time_keys"].get(carol, {}).get("CAROL1", {}))
        self.assertEqual(len(got), 2)  # two keys, each given once, then none
        r = await self.request("POST", f"{V1}/user/keys/query", {"device_keys": []}, headers=h)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("GET", f"{V1}/user/devices/{q(BOB)}", headers=h)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("POST", f"{V1}/user/keys/query", {"device_keys": {}})
        self.assertMatrixError(r, 401, "M_UNAUTHORIZED")


class ClientQueryTests(FederatedE2EETestCase):
    async def test_uncached_users_asked_with_timeout(self) -> None:
        self.federation.answers[QUERY] = {
            "device_keys": {BOB: {"BOB1": self.bob1.device_keys()}, "@eve:test": {"X": {}}},
        }
        r = await self.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {BOB: []}, "timeout": 2500},
            access_token=self.carol.token,
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(list(r.json["device_keys"]), [BOB])
        self.assertEqual(self.asked(QUERY), 1)
        self.assertEqual(self.federation.requests[-1][4], {"device_keys": {BOB: []}})

    async def test_failures_per_server(self) -> None:
        self.federation.answers[QUERY] = NotReachable(REMOTE, "down")
        self.federation.answers[CLAIM] = NotReachable(REMOTE, "down")
        got = await self.query(self.carol, {BOB: [], "@x:other.example": []})
        self.assertEqual(sorted(got["failures"]), ["other.example", REMOTE])
        got = await self.claim(self.carol, {BOB: {"BOB1": "signed_curve25519"}})
        self.assertEqual(list(got["failures"]), [REMOTE])

    async def test_claim(self) -> None:
        key = self.bob1.one_time_keys(1)
        self.federation.answers[CLAIM] = {"one_time_keys": {BOB: {"BOB1": key}}}
        got = await self.claim(self.carol, {BOB: {"BOB1": "signed_curve25519"}})
        self.assertEqual(got["one_time_keys"], {BOB: {"BOB1": key}})
        self.assertEqual(got["failures"], {})


class CacheLifetimeTests(FederatedE2EETestCase):
    async def test_rejoin_drops_the_cache(self) -> None:
        self.federation.answers[DEVICES] = self.devices_answer(5, self.bob1)
        await self.hs.federation_e2ee.on_device_list_update(REMOTE, self.update(5, [], self.bob1))
        self.assertIsNotNone(await self.hs.federation_e2ee.store.remote_user(BOB))
        for membership in ("leave", "join"):
            _, pdu = self.remote.make(
                BOB, "m.room.member", {"membership": membership}, [await self.last()], state_key=BOB
            )
            await self.receive(pdu)
        # Updates sent while bob shared no room with us were lost: ask his server.
        self.assertIsNone(await self.hs.federation_e2ee.store.remote_user(BOB))
        self.federation.answers[QUERY] = {"device_keys": {BOB: {"BOB2": self.bob2.device_keys()}}}
        self.assertEqual(list(await self.bob_devices()), ["BOB2"])
        self.assertEqual(self.asked(QUERY), 1)


class DeviceNameTests(FederatedE2EETestCase):
    config_overrides = dict(E2EETestCase.config_overrides, allow_device_name_federation=True)

    async def test_rename_announced_with_name(self) -> None:
        r = await self.request(
            "PUT", "/_matrix/client/v3/devices/CAROL1", {"display_name": "phone"},
            access_token=self.carol.token,
        )
        self.assertEqual(r.code, 200, r.body)
        updates = await self.edus("m.device_list_update")
        self.assertEqual(updates[-1]["device_display_name"], "phone")
        self.assertEqual(updates[-1]["prev_id"], [updates[-1]["stream_id"] - 1])
