"""
End-to-end encryption between our server and a real Synapse (issue 12:
"an encrypted message between matrix-nio clients on the two servers
decrypts"): matrix-nio clients with Olm/Megolm, one on each server, share
an encrypted room; each sends and the other decrypts the exact plaintext.
What must work across the two servers for that: device list updates
(C{m.device_list_update}, C{GET /user/devices}), C{/keys/query} and
C{/keys/claim} over federation, and Olm-encrypted to-device messages
(C{m.direct_to_device}) carrying the Megolm room keys. Then the room's
creator logs in a second device, which the other side's client must learn
of (C{device_lists.changed}) and share the room key with.

Both rooms are tried: one created on ours with the Synapse user invited,
one created on Synapse with our user invited. Synapse is started per test
(C{start_synapse}) and our server is a real C{twistd -n conduit} with TLS.
"""

from __future__ import annotations

from typing import Any

from tests.integration.nio_support import NIO_MISSING, E2EETestCase, nio
from tests.integration.process import ServerProcess
from tests.integration.synapse import SynapseProcess, start_synapse
from tests.integration.test_nio_e2ee import ENCRYPTION_ENABLED, ENCRYPTION_STATE

#: Sync rounds (each up to a second of long-poll) a federated change may take.
ROUNDS = 60


class SynapseE2EETests(E2EETestCase):
    skip = NIO_MISSING or (None if ENCRYPTION_ENABLED else "matrix-nio has no e2e support")
    nio_timeout = 300

    def _servers(self) -> tuple[ServerProcess, SynapseProcess, dict[str, Any]]:
        synapse = start_synapse(self)
        ours = self._federating_server()
        account = synapse.register("carol")
        return ours, synapse, account

    def test_room_on_ours(self) -> None:
        ours, synapse, account = self._servers()
        self._run_async(self._session(ours, synapse, account, room_on_ours=True))

    def test_room_on_synapse(self) -> None:
        ours, synapse, account = self._servers()
        self._run_async(self._session(ours, synapse, account, room_on_ours=False))

    async def _session(
        self, ours: ServerProcess, synapse: SynapseProcess, account: dict[str, Any], room_on_ours: bool
    ) -> None:
        alice = self._client(ours.base_url, "alice", ssl=False)
        carol = self._client(synapse.base_url, account["user_id"], ssl=False)
        clients = [alice, carol]
        try:
            await self._register(alice)
            logged_in = await carol.login("secret pw", device_name="nio on synapse")
            self.assertIsInstance(logged_in, nio.LoginResponse, repr(logged_in))
            await self._sync(carol)
            self.assertFalse(carol.should_upload_keys)

            creator, guest = (alice, carol) if room_on_ours else (carol, alice)
            created = await creator.room_create(name="Secret", initial_state=[ENCRYPTION_STATE])
            self.assertIsInstance(created, nio.RoomCreateResponse, repr(created))
            room = created.room_id
            invited = await creator.room_invite(room, guest.user_id)
            self.assertIsInstance(invited, nio.RoomInviteResponse, repr(invited))
            await self._until(guest, lambda: room in guest.invited_rooms, "the invite", rounds=ROUNDS)
            joined = await guest.join(room)
            self.assertIsInstance(joined, nio.JoinResponse, repr(joined))
            await self._sync(guest)

            for sender, reader in ((creator, guest), (guest, creator)):
                await self._until(
                    sender,
                    lambda: reader.user_id in sender.rooms[room].users
                    and reader.device_id in sender.device_store[reader.user_id],
                    f"{sender.user_id} knows {reader.user_id}'s device", rounds=ROUNDS,
                )
                self.assertTrue(sender.rooms[room].encrypted)
                text = f"secret from {sender.user_id}"
                sent = await sender.room_send(
                    room, "m.room.message", {"msgtype": "m.text", "body": text},
                    ignore_unverified_devices=True,
                )
                self.assertIsInstance(sent, nio.RoomSendResponse, repr(sent))
                got = await self._receive(reader, room, text, rounds=ROUNDS)
                self.assertTrue(got.decrypted)
                self.assertEqual(got.sender, sender.user_id)
                self.assertEqual(got.event_id, sent.event_id)

            # The creator logs in a second device: the guest's client learns
            # of it from device_lists.changed (a device list update across
            # the servers), queries its keys over federation, and shares the
            # room key with it too.
            second = self._client(creator.homeserver, creator.user_id, ssl=False)
            clients.append(second)
            password = "password-alice" if room_on_ours else "secret pw"
            logged_in = await second.login(password, device_name="second")
            self.assertIsInstance(logged_in, nio.LoginResponse, repr(logged_in))
            await self._sync(second)
            await self._until(
                guest, lambda: second.device_id in guest.device_store[creator.user_id],
                "the creator's new device at the guest", rounds=ROUNDS,
            )
            text = "for both of your devices"
            sent = await guest.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": text},
                ignore_unverified_devices=True,
            )
            self.assertIsInstance(sent, nio.RoomSendResponse, repr(sent))
            for reader in (second, creator):
                got = await self._receive(reader, room, text, rounds=ROUNDS)
                self.assertTrue(got.decrypted)
                self.assertEqual(got.event_id, sent.event_id)
        finally:
            for client in clients:
                await client.close()
