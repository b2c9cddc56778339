"""
Device, one-time and fallback keys: C{/keys/upload}, C{/keys/query},
C{/keys/claim}, the key counts of /sync, and keys dropped with their
device (client-server-api "End-to-End Encryption"; keys.yaml).
"""

from __future__ import annotations

from tests.api.e2ee_helpers import Device, E2EETestCase
from tests.api.rooms import V3


class UploadTests(E2EETestCase):
    async def test_upload_and_query(self) -> None:
        alice = await self.device("alice")
        body = await self.upload_device_keys(alice, otks=3, fallback=True)
        self.assertEqual(body, {"one_time_key_counts": {"signed_curve25519": 3}})
        bob = await self.device("bob")
        got = await self.query(bob, {alice.user_id: []})
        keys = got["device_keys"][alice.user_id][alice.device_id]
        expected = alice.device_keys()
        self.assertEqual(keys["keys"], expected["keys"])
        self.assertEqual(keys["signatures"], expected["signatures"])
        self.assertIn("unsigned", keys)
        self.assertEqual(got["failures"], {})
        # Asking for one device, an unknown device, a user without keys.
        got = await self.query(bob, {alice.user_id: [alice.device_id, "NOPE"], bob.user_id: []})
        self.assertEqual(list(got["device_keys"][alice.user_id]), [alice.device_id])
        self.assertEqual(got["device_keys"][bob.user_id], {})

    async def test_counts_without_keys(self) -> None:
        alice = await self.device("alice")
        r = await self.upload(alice)
        self.assertEqual(r.json, {"one_time_key_counts": {"signed_curve25519": 0}})

    async def test_device_keys_must_name_the_uploader(self) -> None:
        alice = await self.device("alice")
        other = Device(alice.user_id, "OTHER", alice.token)
        r = await self.upload(alice, 400, device_keys=other.device_keys())
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        mallory = Device("@mallory:test", alice.device_id, alice.token)
        r = await self.upload(alice, 400, device_keys=mallory.device_keys())
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_device_keys_signature_checked(self) -> None:
        alice = await self.device("alice")
        keys = alice.device_keys()
        keys["keys"][f"curve25519:{alice.device_id}"] = "tampered"
        r = await self.upload(alice, 400, device_keys=keys)
        self.assertMatrixError(r, 400, "M_INVALID_SIGNATURE")
        unsigned = {k: v for k, v in alice.device_keys().items() if k != "signatures"}
        unsigned["signatures"] = {}
        r = await self.upload(alice, 400, device_keys=unsigned)
        self.assertMatrixError(r, 400, "M_INVALID_SIGNATURE")
        # Signed by another key than the device's own.
        impostor = Device(alice.user_id, alice.device_id, alice.token)
        keys = impostor.device_keys()
        keys["keys"][f"ed25519:{alice.device_id}"] = alice.ed25519
        r = await self.upload(alice, 400, device_keys=keys)
        self.assertMatrixError(r, 400, "M_INVALID_SIGNATURE")
        no_ed = alice.sign({
            "user_id": alice.user_id, "device_id": alice.device_id, "algorithms": [], "keys": {},
        })
        self.assertMatrixError(await self.upload(alice, 400, device_keys=no_ed), 400, "M_INVALID_PARAM")

    async def test_reupload_same_keys_ok_different_refused(self) -> None:
        alice = await self.device("alice")
        await self.upload_device_keys(alice)
        await self.upload(alice, device_keys=alice.device_keys())
        r = await self.upload(alice, 400, device_keys=alice.device_keys(curve="another"))
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        bob = await self.device("bob")
        got = await self.query(bob, {alice.user_id: []})
        keys = got["device_keys"][alice.user_id][alice.device_id]["keys"]
        self.assertEqual(keys[f"curve25519:{alice.device_id}"], "curve25519+key")

    async def test_one_time_key_rules(self) -> None:
        alice = await self.device("alice")
        await self.upload_device_keys(alice)
        otks = alice.one_time_keys(2)
        self.assertEqual((await self.upload(alice, one_time_keys=otks)).json["one_time_key_counts"],
                         {"signed_curve25519": 2})
        # The same keys again: nothing changes.
        self.assertEqual((await self.upload(alice, one_time_keys=otks)).json["one_time_key_counts"],
                         {"signed_curve25519": 2})
        key_id = next(iter(otks))
        changed = {key_id: alice.sign({"key": "different"})}
        self.assertMatrixError(await self.upload(alice, 400, one_time_keys=changed), 400, "M_INVALID_PARAM")
        forged = {"signed_curve25519:NEW": dict(otks[key_id], key="forged")}
        self.assertMatrixError(await self.upload(alice, 400, one_time_keys=forged), 400, "M_INVALID_SIGNATURE")
        bad_id = {"nocolon": alice.sign({"key": "k"})}
        self.assertMatrixError(await self.upload(alice, 400, one_time_keys=bad_id), 400, "M_INVALID_PARAM")
        two = alice.one_time_keys(2, fallback=True)
        self.assertMatrixError(await self.upload(alice, 400, fallback_keys=two), 400, "M_INVALID_PARAM")
        # Plain (unsigned) algorithms carry strings.
        r = await self.upload(alice, one_time_keys={"curve25519:C1": "abc"})
        self.assertEqual(r.json["one_time_key_counts"], {"signed_curve25519": 2, "curve25519": 1})

    async def test_signed_keys_need_device_keys(self) -> None:
        alice = await self.device("alice")
        r = await self.upload(alice, 400, one_time_keys=alice.one_time_keys(1))
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")


class ClaimTests(E2EETestCase):
    async def test_claim_once_then_fallback(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        otks = alice.one_time_keys(2)
        await self.upload(alice, device_keys=alice.device_keys(), one_time_keys=otks)
        later = alice.one_time_keys(1)
        await self.upload(alice, one_time_keys=later)
        fallback = alice.one_time_keys(1, fallback=True)
        await self.upload(alice, fallback_keys=fallback)
        sync = await self.sync(alice.token)
        self.assertEqual(sync["device_one_time_keys_count"], {"signed_curve25519": 3})
        self.assertEqual(sync["device_unused_fallback_key_types"], ["signed_curve25519"])

        want = {alice.user_id: {alice.device_id: "signed_curve25519"}}
        claimed = []
        for _ in range(3):
            got = await self.claim(bob, want)
            (entry,) = got["one_time_keys"][alice.user_id][alice.device_id].items()
            claimed.append(entry)
        # Upload order: the first upload's two keys, then the later one.
        self.assertEqual({k for k, _ in claimed[:2]}, set(otks))
        self.assertEqual(claimed[2][0], next(iter(later)))
        self.assertEqual(dict(claimed), {**otks, **later})
        sync = await self.sync(alice.token)
        self.assertEqual(sync["device_one_time_keys_count"], {"signed_curve25519": 0})
        self.assertEqual(sync["device_unused_fallback_key_types"], ["signed_curve25519"])

        # None left: the fallback key, marked used, and given again.
        for _ in range(2):
            got = await self.claim(bob, want)
            self.assertEqual(got["one_time_keys"][alice.user_id][alice.device_id], fallback)
        sync = await self.sync(alice.token)
        self.assertEqual(sync["device_unused_fallback_key_types"], [])
        # A new fallback key is unused again; re-uploading the used one keeps it used.
        await self.upload(alice, fallback_keys=fallback)
        self.assertEqual((await self.sync(alice.token))["device_unused_fallback_key_types"], [])
        await self.upload(alice, fallback_keys=alice.one_time_keys(1, fallback=True))
        self.assertEqual(
            (await self.sync(alice.token))["device_unused_fallback_key_types"], ["signed_curve25519"]
        )

    async def test_claim_nothing_and_remote(self) -> None:
        alice = await self.device("alice")
        await self.upload_device_keys(alice)
        got = await self.claim(alice, {
            alice.user_id: {alice.device_id: "signed_curve25519", "NOPE": "signed_curve25519"},
            "@nobody:test": {"X": "signed_curve25519"},
            "@someone:remote.example": {"X": "signed_curve25519"},
        })
        self.assertEqual(got["one_time_keys"], {})
        self.assertIn("remote.example", got["failures"])

    async def test_claim_bad_user_id(self) -> None:
        alice = await self.device("alice")
        r = await self.request(
            "POST", V3 + "/keys/claim", {"one_time_keys": {"alice": {}}}, access_token=alice.token
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_concurrent_claims_get_distinct_keys(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        await self.upload(alice, device_keys=alice.device_keys(), one_time_keys=alice.one_time_keys(2))
        want = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
        from twisted.internet.defer import gatherResults

        results = await gatherResults([
            self.request("POST", V3 + "/keys/claim", want, access_token=bob.token) for _ in range(2)
        ])
        ids = [next(iter(r.json["one_time_keys"][alice.user_id][alice.device_id])) for r in results]
        self.assertEqual(len(set(ids)), 2)


class QueryTests(E2EETestCase):
    async def test_remote_and_invalid(self) -> None:
        alice = await self.device("alice")
        got = await self.query(alice, {"@bob:remote.example": []})
        self.assertEqual(got["device_keys"], {})
        self.assertIn("remote.example", got["failures"])
        r = await self.request(
            "POST", V3 + "/keys/query", {"device_keys": {"bob": []}}, access_token=alice.token
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("POST", V3 + "/keys/query", {}, access_token=alice.token)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("POST", V3 + "/keys/query", {"device_keys": {}})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_remote_hook(self) -> None:
        alice = await self.device("alice")
        asked = []

        async def remote(server, users, timeout):
            asked.append((server, users, timeout))
            return {"device_keys": {"@bob:remote.example": {"D": {"device_id": "D"}}}}

        self.hs.e2e_keys.remote_query = remote
        got = await self.query(alice, {"@bob:remote.example": ["D"]})
        self.assertEqual(asked, [("remote.example", {"@bob:remote.example": ["D"]}, 10_000)])
        self.assertEqual(got["device_keys"]["@bob:remote.example"], {"D": {"device_id": "D"}})
        self.assertEqual(got["failures"], {})


class DeviceDeletionTests(E2EETestCase):
    async def test_keys_deleted_with_device(self) -> None:
        alice = await self.device("alice")
        second = await self.device("alice", device_id="SECOND")
        bob = await self.device("bob")
        await self.upload(second, device_keys=second.device_keys(), one_time_keys=second.one_time_keys(2),
                          fallback_keys=second.one_time_keys(1, fallback=True))
        await self.upload_device_keys(alice)
        self.assertEqual(
            set((await self.query(bob, {alice.user_id: []}))["device_keys"][alice.user_id]),
            {alice.device_id, "SECOND"},
        )
        r = await self.request(
            "DELETE", V3 + "/devices/SECOND", {"auth": self.password_auth("alice")},
            access_token=alice.token,
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(
            list((await self.query(bob, {alice.user_id: []}))["device_keys"][alice.user_id]),
            [alice.device_id],
        )
        got = await self.claim(bob, {alice.user_id: {"SECOND": "signed_curve25519"}})
        self.assertEqual(got["one_time_keys"], {})
        # A new device with the same ID starts from nothing.
        again = await self.device("alice", device_id="SECOND")
        r = await self.upload(again, device_keys=again.device_keys())
        self.assertEqual(r.json["one_time_key_counts"], {"signed_curve25519": 0})
