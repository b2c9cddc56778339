"""
A room on the server under test with a simulated remote server
(L{tests.federation.sim}) wired in as the pipeline's keyring and client.
"""

from __future__ import annotations

from typing import Any

from conduit_tw.storage.stores.timeline import StoredEvent
from tests.api.rooms import V3, RoomsTestCase, q
from tests.federation.sim import SimClient, SimKeyring, SimServer

REMOTE = "remote.example"
BOB = "@bob:remote.example"
MALLORY = "@mallory:remote.example"


class FederatedRoomTestCase(RoomsTestCase):
    """
    C{self.room_id}: a public room made by C{self.alice}; C{self.remote}:
    the simulated C{remote.example}, which knows the room's events.
    """

    room_version = "12"

    async def setUp(self) -> None:
        await super().setUp()
        self.store = self.hs.event_store
        self.alice, self.at = await self.user("alice")
        self.room_id = await self.create_room(
            self.at, preset="public_chat", room_version=self.room_version,
            power_level_content_override={"events": {"m.room.topic": 0}},
        )
        room = await self.store.get_room(self.room_id)
        assert room is not None
        self.remote = SimServer(REMOTE, room.version, self.room_id)
        self.servers = {REMOTE: self.remote}
        self.hs.federation_remote.keyring = SimKeyring(self.servers)
        self.hs.federation_remote.client = SimClient(self.servers)
        await self.teach()

    async def teach(self, sim: SimServer | None = None) -> None:
        """Let the simulated server know every timeline event of the room."""
        sim = sim or self.remote
        for ev in await self.store.timeline_range(self.room_id, 0, True, 10_000):
            if ev.event_id not in sim.events:
                sim.learn(ev.event_id, ev.pdu, await self.store.state_ids(ev.state_before))

    def receive(self, pdu: Any, origin: str = REMOTE):
        """Run one PDU through the pipeline."""
        return self.hs.federation_pdus.receive_pdu(origin, self.room_id, pdu)

    async def extremities(self) -> frozenset[str]:
        room = await self.store.get_room(self.room_id)
        return (await self.store.head(room)).extremities

    async def last(self) -> str:
        """The room's (single) forward extremity."""
        ext = await self.extremities()
        self.assertEqual(len(ext), 1, ext)
        return next(iter(ext))

    async def join_bob(self) -> str:
        """C{@bob:remote.example} joins over federation; his join's ID."""
        event_id, pdu = self.remote.make(
            BOB, "m.room.member", {"membership": "join"}, [await self.last()], state_key=BOB
        )
        await self.receive(pdu)
        self.assertEqual(await self.store.membership(BOB, self.room_id), "join")
        return event_id

    async def local(self, event_type: str = "m.room.message", content: Any = None,
                    state_key: str | None = None) -> str:
        """Alice sends an event through the client API; the remote learns it."""
        if state_key is None and event_type == "m.room.message":
            event_id = await self.send_ok(self.at, self.room_id, content)
        else:
            r = await self.put_state(self.at, self.room_id, event_type, content, state_key or "")
            self.assertEqual(r.code, 200, r.body)
            event_id = r.json["event_id"]
        await self.teach()
        return event_id

    async def ban(self, user_id: str) -> None:
        r = await self.request(
            "POST", f"{V3}/rooms/{q(self.room_id)}/ban", {"user_id": user_id}, access_token=self.at
        )
        self.assertEqual(r.code, 200, r.body)
        await self.teach()

    async def stored(self, event_id: str) -> StoredEvent:
        ev = await self.store.get_event(event_id)
        assert ev is not None, event_id
        return ev
