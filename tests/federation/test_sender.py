"""
The federation sender (federation/sender.py) against a real /send receiver
(tests/federation/peer.py), with a fake clock for the backoff.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

from conduit_tw.federation.sender import INITIAL_BACKOFF_S, MAX_EDUS, MAX_PDUS, FederationSender
from conduit_tw.storage.stores.federation_queue import FederationQueueStore
from conduit_tw.storage.txn import StoreTxn
from tests.federation.peer import Peer, open_db

REMOTE = "remote.example"


class SenderTests(unittest.TestCase):
    """Queues, transactions, backoff, restarts."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.db = open_db(self)
        self.peer = Peer(self)
        self.senders: list[FederationSender] = []

    def sender(self, **kw: Any) -> FederationSender:
        """A sender on the test database (a new one models a restart)."""
        for old in self.senders:
            old.stop()

        async def get_pdu(event_id: str) -> dict[str, Any] | None:
            return {"event_id": event_id, "type": "m.room.message"} if event_id != "$gone" else None

        sender = FederationSender(
            FederationQueueStore(self.db), self.peer.put_json, get_pdu, self.clock,
            lambda: int(self.clock.seconds() * 1000), "test", **kw,
        )
        self.senders.append(sender)
        self.addCleanup(sender.stop)
        return sender

    async def started(self, **kw: Any) -> FederationSender:
        sender = self.sender(**kw)
        await sender.start()
        await sender.wait_idle()
        return sender

    async def until(self, condition: Any) -> None:
        """
        Give the reactor turns until C{condition()} holds (up to 2 s: SQLite
        acknowledges once its writer thread has synced the log).
        """
        for _ in range(400):
            if condition():
                return
            await deferLater(reactor, 0.005)
        self.fail("condition never held")

    async def queue_edus(self, sender: FederationSender, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            await sender.send_edu([REMOTE], "x.test", {"n": i})

    def received_ns(self) -> list[int]:
        return [e["content"]["n"] for e in self.peer.edus]

    async def test_edus_split_into_transactions(self) -> None:
        """120 queued EDUs go as two transactions: 100, then 20, in order."""
        store = FederationQueueStore(self.db)
        await store.destinations()
        for i in range(120):
            await store.add_edu([REMOTE], {"edu_type": "x.test", "content": {"n": i}})
        await self.started(netburst_keep=-1)
        sizes = [len(body.get("edus", [])) for _, _, body in self.peer.calls]
        self.assertEqual(sizes, [MAX_EDUS, 20])
        self.assertEqual(self.received_ns(), list(range(120)))
        ids = [int(t) for t in self.peer.txn_ids]
        self.assertEqual(ids, sorted(set(ids)))
        body = self.peer.calls[1][2]
        self.assertEqual(body["origin"], "test")
        self.assertIsInstance(body["origin_server_ts"], int)
        self.assertEqual(body["pdus"], [])

    async def test_queued_while_sending(self) -> None:
        """What is queued during a transaction follows in the next ones, in order."""
        sender = await self.started()
        self.peer.hold = True
        await self.queue_edus(sender, 120)
        self.assertEqual(len(self.peer.calls), 1)  # the first EDU, alone
        self.peer.hold = False
        self.peer.release()
        await sender.wait_idle()
        sizes = [len(body.get("edus", [])) for _, _, body in self.peer.calls]
        self.assertEqual(sizes, [1, MAX_EDUS, 19])
        self.assertEqual(self.received_ns(), list(range(120)))

    async def test_pdus_and_edus_limits(self) -> None:
        """At most 50 PDUs per transaction; PDUs keep their place among EDUs."""
        sender = await self.started()
        self.peer.down = True
        store_txn = StoreTxn(self.db)
        for i in range(120):
            sender.queue_pdu(store_txn, [REMOTE, "test"], f"$e{i}")
        await store_txn.commit()
        sender.kick([REMOTE])
        await sender.wait_idle()
        self.peer.down = False
        sender.destination_is_up(REMOTE)
        await sender.wait_idle()
        bodies = {txn_id: body for _, txn_id, body in self.peer.calls}
        sizes = [len(bodies[txn_id]["pdus"]) for txn_id in self.peer.delivered]
        self.assertEqual(sizes, [MAX_PDUS, MAX_PDUS, 20])
        self.assertEqual([p["event_id"] for p in self.peer.pdus], [f"$e{i}" for i in range(120)])

    async def test_vanished_pdu_skipped(self) -> None:
        """A queued PDU whose event is gone is dropped, the rest is sent."""
        sender = await self.started()
        txn = StoreTxn(self.db)
        sender.queue_pdu(txn, [REMOTE], "$gone")
        sender.queue_pdu(txn, [REMOTE], "$here")
        await txn.commit()
        sender.kick([REMOTE])
        await sender.wait_idle()
        self.assertEqual([p["event_id"] for p in self.peer.pdus], ["$here"])
        self.assertEqual(await sender.store.peek(REMOTE, 50, 100), [])

    async def test_one_transaction_in_flight(self) -> None:
        """Nothing more goes to a destination until its transaction got a 200."""
        sender = await self.started()
        self.peer.hold = True
        await self.queue_edus(sender, 5)
        self.assertEqual(len(self.peer.calls), 1)
        self.assertEqual(len(self.peer.held), 1)
        # Another destination is independent.
        await sender.send_edu(["other.example"], "x.test", {"n": 99})
        await self.until(lambda: len(self.peer.calls) == 2)
        self.assertEqual(len(self.peer.held), 2)
        self.peer.hold = False
        self.peer.release()
        await sender.wait_idle()
        to_remote = [body for dest, _, body in self.peer.calls if dest == REMOTE]
        self.assertEqual([len(b["edus"]) for b in to_remote], [1, 4])

    async def test_removed_only_after_200(self) -> None:
        """A failed transaction stays queued; the retry is the same transaction."""
        sender = await self.started()
        self.peer.down = True
        await self.queue_edus(sender, 3)
        await sender.wait_idle()
        self.assertEqual(len(self.peer.calls), 1)
        self.assertEqual(len(await sender.store.peek(REMOTE, 50, 100)), 3)
        first_id, first_body = self.peer.calls[0][1:]
        self.peer.down = False
        self.clock.advance(INITIAL_BACKOFF_S)
        await sender.wait_idle()
        # The retry resends the first transaction as it was, then the rest.
        self.assertEqual(self.peer.calls[1][1:], (first_id, first_body))
        self.assertEqual(self.received_ns(), [0, 1, 2])
        self.assertEqual(await sender.store.peek(REMOTE, 50, 100), [])

    async def test_backoff_doubles_up_to_the_limit(self) -> None:
        """Retries at 10, 20, 40 s, then capped at sender_retry_backoff_limit; reset on success."""
        sender = await self.started(backoff_limit_s=60)
        self.peer.down = True
        await self.queue_edus(sender, 1)
        await sender.wait_idle()
        attempts = 1
        for delay in (10, 20, 40, 60, 60, 60):
            self.clock.advance(delay - 0.5)
            await sender.wait_idle()
            self.assertEqual(len(self.peer.calls), attempts, f"too early at {delay}")
            self.clock.advance(0.5)
            await sender.wait_idle()
            attempts += 1
            self.assertEqual(len(self.peer.calls), attempts, f"no retry after {delay}")
        self.peer.down = False
        self.clock.advance(60)
        await sender.wait_idle()
        self.assertEqual(self.received_ns(), [0])
        self.assertFalse(sender.backing_off(REMOTE))
        # Success reset the backoff: the next failure waits 10 s again.
        self.peer.down = True
        await self.queue_edus(sender, 1, start=1)
        await sender.wait_idle()
        calls = len(self.peer.calls)
        self.clock.advance(INITIAL_BACKOFF_S)
        await sender.wait_idle()
        self.assertEqual(len(self.peer.calls), calls + 1)

    async def test_new_items_wait_for_the_retry(self) -> None:
        """While backing off, queueing more does not send; the retry takes it all."""
        sender = await self.started()
        self.peer.down = True
        await self.queue_edus(sender, 1)
        await sender.wait_idle()
        await self.queue_edus(sender, 2, start=1)
        await sender.wait_idle()
        self.assertEqual(len(self.peer.calls), 1)
        self.peer.down = False
        self.clock.advance(INITIAL_BACKOFF_S)
        await sender.wait_idle()
        self.assertEqual(self.received_ns(), [0, 1, 2])

    async def test_destination_is_up_retries_at_once(self) -> None:
        """When the destination contacts us the waiting retry happens now."""
        sender = await self.started()
        self.peer.down = True
        await self.queue_edus(sender, 2)
        await sender.wait_idle()
        self.assertTrue(sender.backing_off(REMOTE))
        self.peer.down = False
        sender.destination_is_up("unrelated.example")
        sender.destination_is_up(REMOTE)
        await sender.wait_idle()
        self.assertEqual(self.received_ns(), [0, 1])
        self.assertFalse(sender.backing_off(REMOTE))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_queue_survives_restart(self) -> None:
        """A new sender on the same database sends what was queued (netburst)."""
        sender = await self.started()
        self.peer.down = True
        await self.queue_edus(sender, 3)
        await sender.send_edu([REMOTE], "m.typing", {"typing": True}, persist=False)
        await sender.wait_idle()
        old_ids = [int(t) for t in self.peer.txn_ids]
        sender.stop()
        self.peer.down = False
        await self.started()
        # The typing EDU was ephemeral: gone with the old process.
        self.assertEqual(self.received_ns(), [0, 1, 2])
        self.assertEqual([e["edu_type"] for e in self.peer.edus], ["x.test"] * 3)
        self.assertGreater(int(self.peer.delivered[0]), max(old_ids))

    async def test_ephemeral_edus_bounded(self) -> None:
        """While a destination is down only the newest 100 ephemeral EDUs are kept."""
        sender = await self.started()
        self.peer.down = True
        for i in range(250):
            await sender.send_edu([REMOTE], "x.test", {"n": i}, persist=False)
        await sender.wait_idle()
        self.peer.down = False
        sender.destination_is_up(REMOTE)
        await sender.wait_idle()
        self.assertEqual(self.received_ns(), [0] + list(range(150, 250)))

    async def test_txn_ids_increase_across_restarts(self) -> None:
        """Transaction IDs grow even if the clock went backwards."""
        sender = await self.started()
        await self.queue_edus(sender, 1)
        await sender.wait_idle()
        sender.stop()
        self.clock.rightNow -= 1000
        sender = await self.started()
        await self.queue_edus(sender, 1, start=1)
        await sender.wait_idle()
        a, b = (int(t) for t in self.peer.delivered)
        self.assertGreater(b, a)

    async def queued_while_down(self) -> None:
        """Queue 2 PDUs and 10 EDUs (interleaved) while the peer is down, then stop."""
        sender = await self.started()
        self.peer.down = True
        for i in range(10):
            if i in (2, 7):
                txn = StoreTxn(self.db)
                sender.queue_pdu(txn, [REMOTE], f"$p{i}")
                await txn.commit()
            await sender.send_edu([REMOTE], "x.test", {"n": i})
        await sender.wait_idle()
        sender.stop()
        self.peer.down = False
        self.peer.calls.clear()

    async def test_netburst_keeps_newest_edus(self) -> None:
        """startup_netburst_keep = 3: the newest 3 EDUs and every PDU are sent at start."""
        await self.queued_while_down()
        await self.started(netburst_keep=3)
        self.assertEqual(len(self.peer.calls), 1)
        self.assertEqual(self.received_ns(), [7, 8, 9])
        self.assertEqual([p["event_id"] for p in self.peer.pdus], ["$p2", "$p7"])

    async def test_netburst_keep_all(self) -> None:
        """startup_netburst_keep = -1 keeps everything."""
        await self.queued_while_down()
        await self.started(netburst_keep=-1)
        self.assertEqual(self.received_ns(), list(range(10)))

    async def test_netburst_keep_zero(self) -> None:
        """startup_netburst_keep = 0 drops every queued EDU (PDUs stay)."""
        await self.queued_while_down()
        await self.started(netburst_keep=0)
        self.assertEqual(self.received_ns(), [])
        self.assertEqual(len(self.peer.pdus), 2)

    async def test_no_netburst(self) -> None:
        """startup_netburst = false: nothing at start, everything once more is queued."""
        await self.queued_while_down()
        sender = await self.started(netburst=False, netburst_keep=3)
        self.assertEqual(self.peer.calls, [])
        await self.queue_edus(sender, 1, start=10)
        await sender.wait_idle()
        self.assertEqual(self.received_ns(), list(range(11)))

    async def test_ourselves_refused_and_disabled(self) -> None:
        """Nothing is queued for ourselves, a refused server, or anything with allow_federation off."""
        sender = await self.started(refused=lambda d: d == "forbidden.example")
        await sender.send_edu(["test", "forbidden.example"], "x.test", {"n": 0})
        off = await self.started(enabled=False)
        await off.send_edu([REMOTE], "x.test", {"n": 1})
        self.assertEqual(self.peer.calls, [])
        self.assertEqual(await off.store.destinations(), [])
