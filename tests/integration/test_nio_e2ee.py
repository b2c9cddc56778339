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

import os
from typing import Any

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio

if nio is not None:
    from nio.crypto import ENCRYPTION_ENABLED
else:  # pragma: no cover
    ENCRYPTION_ENABLED = False

ENCRYPTION_STATE = {
    "type": "m.room.encryption", "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class NioE2EETests(ServerTestCase):
    skip = NIO_MISSING or (None if ENCRYPTION_ENABLED else "matrix-nio has no e2e support (install matrix-nio[e2e])")

    def test_encrypted_messages_and_new_device(self) -> None:
        server = self._server()
        self._run_async(self._session(server.base_url))

    def _client(self, base_url: str, user: str) -> Any:
        store = os.path.abspath(self.mktemp())
        os.makedirs(store)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        client = nio.AsyncClient(base_url, user, store_path=store, config=config)
        return client

    async def _sync(self, client: Any, timeout: int = 0) -> Any:
        """One sync plus the key work nio's sync_forever does between syncs."""
        resp = await client.sync(timeout=timeout)
        self.assertIsInstance(resp, nio.SyncResponse, resp)
        if client.should_upload_keys:
            r = await client.keys_upload()
            self.assertIsInstance(r, nio.KeysUploadResponse, r)
        if client.should_query_keys:
            r = await client.keys_query()
            self.assertIsInstance(r, nio.KeysQueryResponse, r)
        if client.should_claim_keys:
            r = await client.keys_claim(client.get_users_for_key_claiming())
            self.assertIsInstance(r, nio.KeysClaimResponse, r)
        await client.send_to_device_messages()
        return resp

    async def _receive(self, client: Any, room: str, body: str) -> Any:
        """Sync until C{client} has the decrypted message C{body} in C{room}."""
        for _ in range(20):
            resp = await self._sync(client, timeout=1000)
            info = resp.rooms.join.get(room)
            for event in info.timeline.events if info is not None else ():
                if isinstance(event, nio.MegolmEvent):
                    continue  # not (yet) decryptable: keep syncing
                if getattr(event, "body", None) == body:
                    return event
        self.fail(f"{client.user_id}/{client.device_id} never decrypted {body!r}")

    async def _until(self, client: Any, predicate: Any, what: str) -> None:
        for _ in range(20):
            await self._sync(client, timeout=500)
            if predicate():
                return
        self.fail(f"never: {what}")

    async def _session(self, base_url: str) -> None:
        alice = self._client(base_url, "alice")
        bob = self._client(base_url, "bob")
        bob2 = self._client(base_url, "bob")
        try:
            for client in (alice, bob):
                resp = await client.register(client.user, "password-" + client.user)
                self.assertIsInstance(resp, nio.RegisterResponse, resp)
                await self._sync(client)
                # Device and one-time keys are on the server now.
                self.assertFalse(client.should_upload_keys)

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
