"""
The send pipeline with group commit: the room's slot is released once an
event is applied, the client is answered (and the notifier told) only once
it is durable, concurrent sends share commits, and transaction-ID retries
that arrive before the commit wait for it.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from conduit_tw.storage.sqlite import WritesRefused
from tests.api.rooms import RoomsTestCase


class SendPipelineTests(RoomsTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.room = await self.create_room(self.at)
        self.events = self.hs.events

    def send(self, i: int, **kw):  # type: ignore[override]
        return defer.ensureDeferred(
            self.events.send(
                self.room, self.alice, "m.room.message", {"msgtype": "m.text", "body": str(i)}, **kw
            )
        )

    async def test_concurrent_sends_chain_and_share_a_commit(self) -> None:
        """Sends into one room in one turn: one commit, each event on the previous one."""
        db = self.hs.db
        commits = db.commits
        position = self.hs.notifier.position
        ds = [self.send(i) for i in range(8)]
        # All applied (the slot was free for each next one), none answered.
        for d in ds:
            self.assertNoResult(d)
        self.assertFalse(self.events.linearizer.is_busy(self.room))
        self.assertEqual(self.hs.notifier.position, position)  # not announced yet
        stored = await defer.gatherResults(ds)
        self.assertEqual(db.commits, commits + 1)
        for prev, ev in zip(stored, stored[1:]):
            self.assertEqual(ev.pdu["prev_events"], [prev.event_id])
            self.assertEqual(ev.position, prev.position + 1)
        self.assertEqual(self.hs.notifier.position, stored[-1].position)
        head = await self.hs.event_store.head(await self.hs.event_store.get_room(self.room))
        self.assertEqual(head.extremities, frozenset([stored[-1].event_id]))
        await self.restart()
        latest = await self.hs.event_store.latest_events(self.room, 8)
        self.assertEqual([e.event_id for e in latest], [e.event_id for e in reversed(stored)])

    async def test_notified_only_when_durable(self) -> None:
        seen: list[tuple[int, bool]] = []
        notify = self.hs.notifier.notify

        def spy(position: int = 0, users=(), rooms=()) -> None:
            seen.append((position, self.hs.db._in_txn))
            notify(position, users, rooms)

        self.patch(self.hs.notifier, "notify", spy)
        stored = await self.send(1)
        self.assertEqual(seen, [(stored.position, False)])

    async def test_txn_retry_before_commit_waits(self) -> None:
        """A retry arriving before the commit gets the same event, once durable."""
        first = self.send(1, device_id="D", txn_id="same")
        retry = self.send(2, device_id="D", txn_id="same")
        self.assertNoResult(first)
        self.assertNoResult(retry)
        a, b = await defer.gatherResults([first, retry])
        self.assertEqual(a.event_id, b.event_id)
        self.assertEqual(a.content["body"], "1")
        self.assertEqual(self.events._unsettled, {})
        # And after the commit, at once.
        again = await self.send(3, device_id="D", txn_id="same")
        self.assertEqual(again.event_id, a.event_id)

    async def test_client_gone_does_not_stop_the_commit(self) -> None:
        """Cancelling a waiting send stops only that waiter."""
        position = self.hs.notifier.position
        d = self.send(1, device_id="D", txn_id="cancelled")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        retry = await self.send(2, device_id="D", txn_id="cancelled")
        self.assertEqual(retry.content["body"], "1")
        self.assertEqual(self.hs.notifier.position, position + 1)

    async def test_commit_failure_fails_the_sends(self) -> None:
        """A failed COMMIT fails every send of its group, and the next ones (fail-stop)."""
        db = self.hs.db

        def failing_flush() -> None:
            # What flush() does when COMMIT raises.
            db._refuse_writes(Failure(OSError("disk I/O error")), "COMMIT failed")

        ds = [self.send(i, device_id="D", txn_id=f"f{i}") for i in range(3)]
        retry = self.send(9, device_id="D", txn_id="f0")
        failing_flush()
        for d in ds + [retry]:
            self.failureResultOf(d, WritesRefused)
        with self.assertRaises(WritesRefused):
            await self.send(4)
        # The critical log, and other pending writes (last-seen) failing.
        self.flushLoggedErrors(OSError, WritesRefused)
        db._refused = None  # the disk is "fixed": let the cleanup close normally


class LmdbSendPipelineTests(RoomsTestCase):
    """The same flow on LMDB (writer thread and overlay)."""

    backend = "lmdb"

    async def setUp(self) -> None:
        await super().setUp()
        self.alice, self.at = await self.user("alice")
        self.room = await self.create_room(self.at)

    def send(self, i: int, **kw):  # type: ignore[no-untyped-def]
        return defer.ensureDeferred(
            self.hs.events.send(
                self.room, self.alice, "m.room.message", {"msgtype": "m.text", "body": str(i)}, **kw
            )
        )

    async def test_concurrent_sends_chain(self) -> None:
        stored = await defer.gatherResults([self.send(i) for i in range(8)])
        for prev, ev in zip(stored, stored[1:]):
            self.assertEqual(ev.pdu["prev_events"], [prev.event_id])
        self.assertEqual(self.hs.notifier.position, stored[-1].position)
        a, b = await defer.gatherResults(
            [self.send(1, device_id="D", txn_id="x"), self.send(2, device_id="D", txn_id="x")]
        )
        self.assertEqual(a.event_id, b.event_id)
        self.assertEqual(self.hs.events._unsettled, {})
