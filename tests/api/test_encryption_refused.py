"""
Encrypted rooms and C{allow_encryption} (docs/configuration.md): by
default m.room.encryption is an ordinary state event; with
C{allow_encryption = false} creating encrypted rooms and sending
m.room.encryption are refused, while existing encrypted rooms keep working.
"""

from __future__ import annotations

from conduit_tw.handlers.events import ENCRYPTION_DISABLED
from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase, q

ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}
INITIAL_STATE = [{"type": "m.room.encryption", "state_key": "", "content": ENCRYPTION}]
ENCRYPTED = {
    "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn...", "device_id": "D",
    "sender_key": "abc", "session_id": "s",
}


class EncryptionAllowedTests(RoomsTestCase):
    async def test_create_encrypted_room(self) -> None:
        _, alice = await self.user("alice")
        room = await self.create_room(alice, initial_state=INITIAL_STATE)
        r = await self.get_state(alice, room, "m.room.encryption")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, ENCRYPTION)
        await self.send_ok(alice, room, ENCRYPTED, event_type="m.room.encrypted")

    async def test_state_and_sync_counts(self) -> None:
        _, alice = await self.user("alice")
        room = await self.create_room(alice)
        r = await self.put_state(alice, room, "m.room.encryption", ENCRYPTION)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", V3 + "/sync", access_token=alice)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["device_one_time_keys_count"], {"signed_curve25519": 0})
        self.assertEqual(r.json["device_unused_fallback_key_types"], [])
        r = await self.request(
            "GET", V3 + "/sync?timeout=0&since=" + r.json["next_batch"], access_token=alice
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertIn("device_unused_fallback_key_types", r.json)

    async def test_upgrade_keeps_encryption(self) -> None:
        _, alice = await self.user("alice")
        room = await self.create_room(alice, initial_state=INITIAL_STATE)
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/upgrade", {"new_version": "11"}, access_token=alice
        )
        self.assertEqual(r.code, 200, r.body)
        r = await self.get_state(alice, r.json["replacement_room"], "m.room.encryption")
        self.assertEqual(r.json, ENCRYPTION)


class EncryptionDisabledTests(RoomsTestCase):
    config_overrides = {**OPEN, "allow_encryption": False}

    def assertRefused(self, r) -> None:
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertEqual(r.json["error"], ENCRYPTION_DISABLED)

    async def test_create_room_initial_state(self) -> None:
        _, alice = await self.user("alice")
        r = await self.request(
            "POST", V3 + "/createRoom", {"initial_state": INITIAL_STATE}, access_token=alice
        )
        # createRoom's spec code for refused initial_state.
        self.assertMatrixError(r, 400, "M_INVALID_ROOM_STATE")
        self.assertIn(ENCRYPTION_DISABLED, r.json["error"])
        joined = await self.request("GET", V3 + "/joined_rooms", access_token=alice)
        # Only the admin room (alice is the first user, the admin).
        self.assertEqual(joined.json["joined_rooms"], [self.hs.admin_room.room_id])

    async def test_state_and_send(self) -> None:
        _, alice = await self.user("alice")
        room = await self.create_room(alice)
        self.assertRefused(await self.put_state(alice, room, "m.room.encryption", ENCRYPTION))
        self.assertRefused(await self.send(alice, room, ENCRYPTION, event_type="m.room.encryption"))
        r = await self.get_state(alice, room, "m.room.encryption")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        await self.send_ok(alice, room)


class ExistingEncryptedRoomTests(RoomsTestCase):
    async def test_existing_room_keeps_working(self) -> None:
        _, alice = await self.user("alice")
        room = await self.create_room(alice, initial_state=INITIAL_STATE)
        self.patch(self.hs.events, "allow_encryption", False)
        await self.send_ok(alice, room, ENCRYPTED, event_type="m.room.encrypted")
        r = await self.put_state(alice, room, "m.room.name", {"name": "still fine"})
        self.assertEqual(r.code, 200, r.body)
        # Changing the encryption settings is refused, as is an upgrade
        # (which would have to copy them).
        r = await self.put_state(alice, room, "m.room.encryption", dict(ENCRYPTION, rotation_period_ms=1))
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room)}/upgrade", {"new_version": "11"}, access_token=alice
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIn(ENCRYPTION_DISABLED, r.json["error"])
