"""Until E2EE lands, m.room.encryption is refused and /sync offers no key counts."""

from __future__ import annotations

from conduit_tw.handlers.events import ENCRYPTION_UNSUPPORTED
from tests.api.rooms import V3, RoomsTestCase

ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}


class EncryptionRefusedTests(RoomsTestCase):
    def assertRefused(self, r) -> None:
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertEqual(r.json["error"], ENCRYPTION_UNSUPPORTED)

    async def test_create_room_initial_state(self) -> None:
        _, alice = await self.user("alice")
        r = await self.request(
            "POST", V3 + "/createRoom",
            {"initial_state": [{"type": "m.room.encryption", "state_key": "", "content": ENCRYPTION}]},
            access_token=alice,
        )
        # createRoom's spec code for refused initial_state.
        self.assertMatrixError(r, 400, "M_INVALID_ROOM_STATE")
        self.assertIn(ENCRYPTION_UNSUPPORTED, r.json["error"])
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
        # Other events still go through.
        await self.send_ok(alice, room)

    async def test_sync_has_no_key_counts(self) -> None:
        _, alice = await self.user("alice")
        await self.create_room(alice)
        r = await self.request("GET", V3 + "/sync", access_token=alice)
        self.assertEqual(r.code, 200, r.body)
        self.assertIn("rooms", r.json)
        self.assertNotIn("device_one_time_keys_count", r.json)
        self.assertNotIn("device_unused_fallback_key_types", r.json)
        r = await self.request(
            "GET", V3 + "/sync?timeout=0&since=" + r.json["next_batch"], access_token=alice
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertNotIn("device_one_time_keys_count", r.json)
