"""
End-to-end encryption against the real `twistd -n conduit`, with real
encrypting clients: matrix-nio with its e2e extra (Olm/Megolm through
vodozemac).

Alice and Bob upload device and one-time keys, share an encrypted room;
Alice sends, and Bob decrypts the exact plaintext (the room key reached
him as an Olm-encrypted to-device message, after Alice claimed one of
his one-time keys). Bob then logs in a second device: Alice's client
learns of it through C{device_lists.changed}, queries its keys, and the
new device decrypts the later messages.
"""

from __future__ import annotations

from tests.integration.nio_support import NIO_MISSING, E2EETestCase, nio

if nio is not None:
    from nio.crypto import ENCRYPTION_ENABLED
else:  # pragma: no cover
    ENCRYPTION_ENABLED = False

ENCRYPTION_STATE = {
    "type": "m.room.encryption", "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class NioE2EETests(E2EETestCase):
    skip = NIO_MISSING or (None if ENCRYPTION_ENABLED else "matrix-nio has no e2e support (install matrix-nio[e2e])")

    def test_encrypted_messages_and_new_device(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))

    async def _session(self, base_url: str) -> None:
        alice = self._client(base_url, "alice")
        bob = self._client(base_url, "bob")
        bob2 = self._client(base_url, "bob")
        try:
            await self._register(alice, bob)

            created = await alice.room_create(
                name="Secret", invite=[bob.user_id], initial_state=[ENCRYPTION_STATE]
            )
            self.assertIsInstance(created, nio.RoomCreateResponse, created)
            room = created.room_id
            await self._sync(bob)
            joined = await bob.join(room)
            self.assertIsInstance(joined, nio.JoinResponse, joined)
            await self._sync(bob)
            await self._until(
                alice,
                lambda: bob.user_id in alice.rooms[room].users
                and bob.device_id in alice.device_store[bob.user_id],
                "alice knows bob's device",
            )
            self.assertTrue(alice.rooms[room].encrypted)

            sent = await alice.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "the secret is 42"},
                ignore_unverified_devices=True,
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            got = await self._receive(bob, room, "the secret is 42")
            self.assertTrue(got.decrypted)
            self.assertEqual(got.sender, alice.user_id)
            self.assertEqual(got.event_id, sent.event_id)

            # Bob's second device.
            login = await bob2.login("password-bob", device_name="second")
            self.assertIsInstance(login, nio.LoginResponse, login)
            self.assertNotEqual(bob2.device_id, bob.device_id)
            await self._sync(bob2)
            await self._until(
                alice, lambda: bob2.device_id in alice.device_store[bob.user_id],
                "alice learns of bob's new device from device_lists",
            )
            sent = await alice.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "for both of your devices"},
                ignore_unverified_devices=True,
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, sent)
            got = await self._receive(bob2, room, "for both of your devices")
            self.assertTrue(got.decrypted)
            got = await self._receive(bob, room, "for both of your devices")
            self.assertTrue(got.decrypted)
        finally:
            for client in (alice, bob, bob2):
                await client.close()
