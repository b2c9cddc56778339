"""
Cross-signing (client-server-api "Cross-signing"; cross_signing.yaml):
C{/keys/device_signing/upload} with its UIA rules, C{/keys/signatures/upload}
with per-key failures, and who sees which key and signature in
C{/keys/query}.
"""

from __future__ import annotations

from typing import Any

import signedjson.sign

from tests.api.e2ee_helpers import Device, E2EETestCase, cross_signing_key
from tests.api.rooms import V3


class CrossSigningKeys:
    """A user's three cross-signing keys, the sub-keys signed by the master."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master, self.master_sk = cross_signing_key(user_id, "master")
        ssk, self.ssk_sk = cross_signing_key(user_id, "self_signing")
        usk, self.usk_sk = cross_signing_key(user_id, "user_signing")
        self.ssk = signedjson.sign.sign_json(ssk, user_id, self.master_sk)
        self.usk = signedjson.sign.sign_json(usk, user_id, self.master_sk)

    @property
    def master_public(self) -> str:
        return next(iter(self.master["keys"].values()))

    def body(self) -> dict[str, Any]:
        return {"master_key": self.master, "self_signing_key": self.ssk, "user_signing_key": self.usk}


class CrossSigningTests(E2EETestCase):
    async def upload_signing(self, device: Device, body: dict[str, Any]):
        return await self.request("POST", V3 + "/keys/device_signing/upload", body, access_token=device.token)

    async def upload_signatures(self, device: Device, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.request("POST", V3 + "/keys/signatures/upload", body, access_token=device.token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_first_upload_without_uia_and_visibility(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        keys = CrossSigningKeys(alice.user_id)
        r = await self.upload_signing(alice, keys.body())
        self.assertEqual((r.code, r.json), (200, {}))
        # Retrying the same request needs no UIA either.
        self.assertEqual((await self.upload_signing(alice, keys.body())).code, 200)
        own = await self.query(alice, {alice.user_id: []})
        self.assertEqual(own["master_keys"][alice.user_id], keys.master)
        self.assertEqual(own["self_signing_keys"][alice.user_id], keys.ssk)
        self.assertEqual(own["user_signing_keys"][alice.user_id], keys.usk)
        other = await self.query(bob, {alice.user_id: []})
        self.assertEqual(other["master_keys"][alice.user_id], keys.master)
        self.assertEqual(other["self_signing_keys"][alice.user_id], keys.ssk)
        self.assertEqual(other["user_signing_keys"], {})

    async def test_replacing_needs_uia(self) -> None:
        alice = await self.device("alice")
        await self.upload_signing(alice, CrossSigningKeys(alice.user_id).body())
        new = CrossSigningKeys(alice.user_id)
        r = await self.upload_signing(alice, new.body())
        self.assertEqual(r.code, 401, r.body)
        self.assertIn({"stages": ["m.login.password"]}, r.json["flows"])
        body = dict(new.body(), auth=self.password_auth("alice", session=r.json["session"]))
        r = await self.upload_signing(alice, body)
        self.assertEqual(r.code, 200, r.body)
        got = await self.query(alice, {alice.user_id: []})
        self.assertEqual(got["master_keys"][alice.user_id], new.master)
        # Replacing just the self-signing key (signed by the stored master) needs UIA too.
        ssk, _ = cross_signing_key(alice.user_id, "self_signing")
        ssk = signedjson.sign.sign_json(ssk, alice.user_id, new.master_sk)
        r = await self.upload_signing(alice, {"self_signing_key": ssk})
        self.assertEqual(r.code, 401, r.body)
        r = await self.upload_signing(alice, {"self_signing_key": ssk, "auth": self.password_auth("alice")})
        self.assertEqual(r.code, 200, r.body)

    async def test_refusals(self) -> None:
        alice = await self.device("alice")
        keys = CrossSigningKeys(alice.user_id)
        # Sub-keys without any master key.
        r = await self.upload_signing(alice, {"self_signing_key": keys.ssk})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        # Not signed by the master key of the request.
        other = CrossSigningKeys(alice.user_id)
        r = await self.upload_signing(alice, {"master_key": keys.master, "self_signing_key": other.ssk})
        self.assertMatrixError(r, 400, "M_INVALID_SIGNATURE")
        # Another user's key, a wrong usage, two keys in one.
        bobs = CrossSigningKeys("@bob:test")
        self.assertMatrixError(await self.upload_signing(alice, {"master_key": bobs.master}), 400, "M_INVALID_PARAM")
        r = await self.upload_signing(alice, {"master_key": keys.ssk})
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        two = dict(keys.master, keys={**keys.master["keys"], **keys.ssk["keys"]})
        self.assertMatrixError(await self.upload_signing(alice, {"master_key": two}), 400, "M_INVALID_PARAM")
        # A public key equal to one of the user's device IDs.
        await self.device("alice", device_id=keys.master_public)
        r = await self.upload_signing(alice, {"master_key": keys.master})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertEqual((await self.query(alice, {alice.user_id: []}))["master_keys"], {})

    async def test_signatures_upload(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        carol = await self.device("carol")
        await self.upload_device_keys(alice)
        a_keys = CrossSigningKeys(alice.user_id)
        b_keys = CrossSigningKeys(bob.user_id)
        await self.upload_signing(alice, a_keys.body())
        await self.upload_signing(bob, b_keys.body())

        # Alice's self-signing key signs her device; her device signs her master key.
        device_sig = signedjson.sign.sign_json(alice.device_keys(), alice.user_id, a_keys.ssk_sk)
        master_sig = alice.sign(dict(a_keys.master))
        # Her user-signing key signs Bob's master key.
        bob_master_sig = signedjson.sign.sign_json(dict(b_keys.master), alice.user_id, a_keys.usk_sk)
        got = await self.upload_signatures(alice, {
            alice.user_id: {alice.device_id: device_sig, a_keys.master_public: master_sig},
            bob.user_id: {b_keys.master_public: bob_master_sig, "NOPE": bob_master_sig},
        })
        self.assertEqual(list(got["failures"]), [bob.user_id])
        self.assertEqual(got["failures"][bob.user_id]["NOPE"]["errcode"], "M_NOT_FOUND")
        ssk_id = f"ed25519:{next(iter(a_keys.ssk['keys'].values()))}"
        usk_id = f"ed25519:{next(iter(a_keys.usk['keys'].values()))}"

        # Everyone sees Alice's own signatures.
        seen_by_carol = await self.query(carol, {alice.user_id: [], bob.user_id: []})
        dev = seen_by_carol["device_keys"][alice.user_id][alice.device_id]
        self.assertIn(ssk_id, dev["signatures"][alice.user_id])
        master = seen_by_carol["master_keys"][alice.user_id]
        self.assertIn(f"ed25519:{alice.device_id}", master["signatures"][alice.user_id])
        # Only Alice sees her signature of Bob's master key.
        self.assertNotIn(alice.user_id, seen_by_carol["master_keys"][bob.user_id].get("signatures", {}))
        seen_by_bob = await self.query(bob, {bob.user_id: []})
        self.assertNotIn(alice.user_id, seen_by_bob["master_keys"][bob.user_id].get("signatures", {}))
        seen_by_alice = await self.query(alice, {bob.user_id: []})
        self.assertIn(usk_id, seen_by_alice["master_keys"][bob.user_id]["signatures"][alice.user_id])

        # A signature that does not verify, and an object that is not the stored one.
        bad = signedjson.sign.sign_json(alice.device_keys(), alice.user_id, b_keys.ssk_sk)
        bad["signatures"][alice.user_id] = {ssk_id: next(iter(bad["signatures"][alice.user_id].values()))}
        changed = signedjson.sign.sign_json(alice.device_keys(curve="other"), alice.user_id, a_keys.ssk_sk)
        got = await self.upload_signatures(alice, {alice.user_id: {alice.device_id: bad}})
        self.assertEqual(got["failures"][alice.user_id][alice.device_id]["errcode"], "M_INVALID_SIGNATURE")
        got = await self.upload_signatures(alice, {alice.user_id: {alice.device_id: changed}})
        self.assertEqual(got["failures"][alice.user_id][alice.device_id]["errcode"], "M_INVALID_PARAM")

    async def test_signatures_show_in_device_lists(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        room = await self.create_room(alice.token, preset="public_chat")
        await self.join(bob.token, room)
        await self.upload_device_keys(alice)
        keys = CrossSigningKeys(alice.user_id)
        since = (await self.sync(bob.token))["next_batch"]
        await self.upload_signing(alice, keys.body())
        body = await self.sync(bob.token, since=since)
        self.assertEqual(body["device_lists"]["changed"], [alice.user_id])
        sig = signedjson.sign.sign_json(alice.device_keys(), alice.user_id, keys.ssk_sk)
        await self.upload_signatures(alice, {alice.user_id: {alice.device_id: sig}})
        body = await self.sync(bob.token, since=body["next_batch"])
        self.assertEqual(body["device_lists"]["changed"], [alice.user_id])

    async def test_signatures_upload_refusals(self) -> None:
        alice = await self.device("alice")
        r = await self.request(
            "POST", V3 + "/keys/signatures/upload", {"@bob:test": "x"}, access_token=alice.token
        )
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", V3 + "/keys/signatures/upload", {"bob": {}}, access_token=alice.token)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        got = await self.upload_signatures(alice, {alice.user_id: {"K": {"no": "signatures"}}})
        self.assertEqual(got["failures"][alice.user_id]["K"]["errcode"], "M_INVALID_PARAM")

    async def test_deactivation_drops_cross_signing_keys(self) -> None:
        alice = await self.device("alice")
        bob = await self.device("bob")
        await self.upload_signing(alice, CrossSigningKeys(alice.user_id).body())
        r = await self.request(
            "POST", V3 + "/account/deactivate", {"auth": self.password_auth("alice")},
            access_token=alice.token,
        )
        self.assertEqual(r.code, 200, r.body)
        got = await self.query(bob, {alice.user_id: []})
        self.assertEqual((got["device_keys"][alice.user_id], got["master_keys"]), ({}, {}))

    async def test_device_id_cannot_be_a_cross_signing_key(self) -> None:
        alice = await self.device("alice")
        keys = CrossSigningKeys(alice.user_id)
        await self.upload_signing(alice, keys.body())
        r = await self.login("alice", device_id=keys.master_public)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
