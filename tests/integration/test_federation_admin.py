"""
The admin room's federation commands between two of our servers over real
federation (docs/admin.md): C{federation disable-room} stops A from taking
B's PDUs, EDUs and joins for the room, C{enable-room} resumes it (the gap
is then filled from B); C{debug get-pdu <event> <server>} fetches an event
with C{GET /event} and checks it; C{federation incoming} lists rooms with
PDUs in the pipeline.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater

from conduit_tw.federation.disabled_rooms import DISABLED
from conduit_tw.federation.errors import RemoteError
from tests.api.rooms import V3, q
from tests.integration.test_federation_rooms import TwoServers, wait_for


class AdminFederationCommandTests(TwoServers):
    """Alice, A's first user, is its admin (in A's admin room)."""

    def next_txn(self) -> int:
        self.txn += 1
        return self.txn

    async def admin(self, text: str) -> str:
        """Run an admin command on A; the bot's answer."""
        hs = self.a.hs
        room = hs.admin_room.room_id
        r = await self.a.request(
            "PUT", V3 + "/rooms/%s/send/m.room.message/adm%d" % (q(room), self.next_txn()),
            {"msgtype": "m.text", "body": text}, self.at,
        )
        self.assertEqual(r.code, 200, r.body)
        command_id = r.json["event_id"]

        async def answer() -> Any:
            await hs.admin_room.drain()
            for ev in await hs.event_store.latest_events(room, 10):
                rel = ev.content.get("m.relates_to", {}).get("m.in_reply_to", {})
                if ev.sender == hs.admin_room.bot and rel.get("event_id") == command_id:
                    return ev.content["body"]
            return None

        return await wait_for(answer, what="the answer to %r" % text)

    async def test_disable_and_enable_room(self) -> None:
        room = await self.shared_room()
        self.assertIn("(0)", await self.admin("!admin federation list-disabled-rooms"))
        body = await self.admin("!admin federation disable-room %s" % room)
        self.assertIn("disabled", body)
        self.assertTrue(await self.a.hs.admin_store.is_federation_disabled(room))
        self.assertIn("already disabled", await self.admin("!admin federation disable-room %s" % room))
        self.assertIn(room, await self.admin("!admin federation list-disabled-rooms"))

        # Bob's message is refused by A (B's sender is told why).
        dropped = await self.send(self.b, self.bt, room, "while disabled")
        pdu = (await self.b.hs.event_store.get_event(dropped)).pdu
        answer = await self.a.hs.transactions.on_send(self.b.name, "manual1", {"pdus": [pdu], "edus": []})
        self.assertEqual(answer["pdus"], {dropped: {"error": DISABLED}})
        # A typing EDU about the room is ignored.
        typing = {"edu_type": "m.typing", "content": {"room_id": room, "user_id": self.bob, "typing": True}}
        await self.a.hs.transactions.on_send(self.b.name, "manual2", {"pdus": [], "edus": [typing]})
        r = await self.a.request("GET", V3 + "/sync?timeout=0", token=self.at)
        ephemeral = r.json["rooms"]["join"][room].get("ephemeral", {}).get("events", [])
        self.assertFalse([e for e in ephemeral if e["type"] == "m.typing" and self.bob in e["content"]["user_ids"]])
        # The membership handshakes with A are refused.
        make_join = "/_matrix/federation/v1/make_join/%s/%s?ver=12" % (q(room), q("@carol:" + self.b.name))
        error = await self.assertFailure(
            Deferred.fromCoroutine(self.b.hs.federation_client.get_json(self.a.name, make_join)), RemoteError
        )
        self.assertEqual((error.code, error.errcode, error.error), (403, "M_FORBIDDEN", DISABLED))
        # What B's sender delivered meanwhile was dropped too.
        await deferLater(reactor, 1, lambda: None)
        self.assertFalse(await self.has_event(self.a, dropped))

        # Enabled again: the next message arrives, and the one dropped
        # before with it (A fetches the missing prev event).
        self.assertIn("enabled again", await self.admin("!admin federation enable-room %s" % room))
        self.assertIn("not disabled", await self.admin("!admin enable-room %s" % room))
        later = await self.send(self.b, self.bt, room, "enabled again")
        await self.arrives(self.a, later)
        await self.arrives(self.a, dropped)
        answer = await self.b.hs.federation_client.get_json(self.a.name, make_join)
        self.assertEqual(answer["event"]["state_key"], "@carol:" + self.b.name)

    async def test_get_remote_pdu(self) -> None:
        room = await self.shared_room()
        event_id = await self.send(self.b, self.bt, room, "fetch me")
        body = await self.admin("!admin debug get-pdu %s %s" % (event_id, self.b.name))
        self.assertIn("signatures and content hash valid", body)
        self.assertIn('"fetch me"', body)
        # The same through Conduit's flat name; an event the server does
        # not have, and a bad server name.
        self.assertIn("valid", await self.admin("!admin get-remote-pdu %s %s" % (event_id, self.b.name)))
        self.assertIn("did not give", await self.admin("!admin debug get-pdu $nope %s" % self.b.name))
        self.assertIn("not a server name", await self.admin("!admin debug get-pdu %s 'a b'" % event_id))
        self.assertIn("name a server", await self.admin("!admin debug get-pdu $nope"))

    async def test_incoming(self) -> None:
        room = await self.shared_room()
        self.assertIn("(0)", await self.admin("!admin federation incoming"))
        # While something holds the room's slot (as a slow PDU would), B's
        # next message waits in A's pipeline and is listed.
        slot = self.a.hs.events.linearizer.queue(room)
        await slot.__aenter__()
        try:
            sent = await self.send(self.b, self.bt, room, "queued")
            await wait_for(
                lambda: succeed([i for i in self.a.hs.federation_pdus.incoming() if i.room_id == room]),
                what="the PDU in A's pipeline",
            )
            body = await self.admin("!admin incoming-federation")
            self.assertIn(room, body)
            self.assertIn("waiting", body)
        finally:
            await slot.__aexit__(None, None, None)
        await self.arrives(self.a, sent)
        await wait_for(lambda: succeed(not self.a.hs.federation_pdus.incoming()), what="an empty pipeline")
