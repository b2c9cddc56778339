"""
The inbound PDU pipeline (federation/pdu_pipeline.py) with events crafted
and signed with real keys by a simulated remote server: format, signature
and hash checks, auth (rejection, soft failure), missing events and state
fetched from the remote's event graph, bounded gaps, and forks resolved.
"""

from __future__ import annotations

import copy
from urllib.parse import unquote

from signedjson.key import generate_signing_key

from conduit_tw.federation.pdu_checks import PduDropped, PduRejected
from conduit_tw.storage.stores.timeline import OUTLIER, SOFT_FAILED
from tests.api.accounts import OPEN
from tests.federation.rooms import BOB, MALLORY, REMOTE, FederatedRoomTestCase

MSG = {"msgtype": "m.text", "body": "hi"}


class ReceiveTests(FederatedRoomTestCase):
    async def test_join_and_message_accepted(self) -> None:
        join = await self.join_bob()
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        stored = await self.receive(pdu)
        self.assertEqual(stored.event_id, msg)
        self.assertTrue(stored.in_timeline)
        self.assertEqual(await self.extremities(), frozenset([msg]))
        latest = await self.store.latest_events(self.room_id, 2)
        self.assertEqual([e.event_id for e in latest], [msg, join])
        # A local event now builds on it.
        mine = await self.local(content=MSG)
        self.assertEqual((await self.stored(mine)).prev_event_ids(), [msg])

    async def test_duplicate_returns_the_stored_event(self) -> None:
        join = await self.join_bob()
        again = await self.receive(self.remote.events[join])
        self.assertEqual(again.event_id, join)

    async def test_max_fetch_prev_events_from_config(self) -> None:
        self.assertEqual(
            self.hs.federation_remote.max_fetch_prev_events, self.config.max_fetch_prev_events
        )

    async def test_unknown_room_dropped(self) -> None:
        join = await self.join_bob()
        _, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        with self.assertRaises(PduDropped):
            await self.hs.federation_pdus.receive_pdu(REMOTE, "!nope:remote.example", pdu)

    async def test_invalid_format_dropped(self) -> None:
        join = await self.join_bob()
        _, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        del pdu["depth"]
        with self.assertRaises(PduDropped):
            await self.receive(pdu)
        _, pdu = self.remote.make(BOB, "m.room.message", {"body": "x" * 70_000}, [join])
        with self.assertRaises(PduDropped):
            await self.receive(pdu)

    async def test_event_of_another_room_dropped(self) -> None:
        join = await self.join_bob()
        _, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        with self.assertRaises(PduDropped):
            await self.hs.federation_pdus.receive_pdu(REMOTE, self.room_id + "x", pdu)


class SignatureAndHashTests(FederatedRoomTestCase):
    async def test_tampered_event_dropped(self) -> None:
        join = await self.join_bob()
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        pdu["origin_server_ts"] += 1  # covered by the signature
        with self.assertRaises(PduDropped) as caught:
            await self.receive(pdu)
        self.assertIn("Signature", caught.exception.reason)
        self.assertEqual(await self.extremities(), frozenset([join]))

    async def test_unknown_key_dropped(self) -> None:
        join = await self.join_bob()
        msg, pdu = self.remote.make(
            BOB, "m.room.message", MSG, [join], sign_with=generate_signing_key("other")
        )
        with self.assertRaises(PduDropped):
            await self.receive(pdu)
        self.assertIsNone(await self.store.get_event(msg))

    async def test_not_signed_by_the_senders_server_dropped(self) -> None:
        """remote.example relaying an event claiming to be from elsewhere.example."""
        join = await self.join_bob()
        _, pdu = self.remote.make("@eve:elsewhere.example", "m.room.message", MSG, [join])
        with self.assertRaises(PduDropped):
            await self.receive(pdu)

    async def test_bad_hash_keeps_the_redacted_copy(self) -> None:
        join = await self.join_bob()
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        pdu["content"] = {"msgtype": "m.text", "body": "changed in transit"}
        stored = await self.receive(pdu)
        self.assertEqual(stored.event_id, msg)  # the reference hash ignores content
        self.assertEqual((await self.stored(msg)).content, {})
        self.assertTrue(stored.in_timeline)

    async def test_unsigned_is_not_kept(self) -> None:
        join = await self.join_bob()
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [join])
        pdu["unsigned"] = {"age": 5, "transaction_id": "leak"}
        await self.receive(pdu)
        self.assertNotIn("unsigned", (await self.stored(msg)).pdu)


class AuthTests(FederatedRoomTestCase):
    async def test_sender_not_in_room_rejected(self) -> None:
        join = await self.join_bob()
        msg, pdu = self.remote.make(MALLORY, "m.room.message", MSG, [join])
        with self.assertRaises(PduRejected):
            await self.receive(pdu)
        stored = await self.stored(msg)
        self.assertTrue(stored.rejected)
        self.assertFalse(stored.in_timeline)
        self.assertEqual(await self.extremities(), frozenset([join]))
        # Received again: still rejected.
        with self.assertRaises(PduRejected):
            await self.receive(pdu)

    async def test_state_change_without_power_rejected(self) -> None:
        join = await self.join_bob()
        name, pdu = self.remote.make(BOB, "m.room.name", {"name": "mine"}, [join], state_key="")
        with self.assertRaises(PduRejected):
            await self.receive(pdu)
        self.assertNotEqual(
            (await self.store.current_state_ids(self.room_id)).get(("m.room.name", "")), name
        )

    async def test_auth_events_that_disagree_with_the_state_rejected(self) -> None:
        """Step 5: allowed by its (stale) auth events, not by the state before it."""
        join = await self.join_bob()
        await self.ban(BOB)
        ban = await self.last()
        # Bob's server claims the join as his membership, on top of the ban.
        state = self.remote.state_after(ban)
        state[("m.room.member", BOB)] = join
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [ban], state=state)
        with self.assertRaises(PduRejected):
            await self.receive(pdu)

    async def test_ban_evasion_soft_failed(self) -> None:
        """server-server-api "Soft failure": an event on the DAG before the ban."""
        join = await self.join_bob()
        await self.ban(BOB)
        ban = await self.last()
        topic, pdu = self.remote.make(BOB, "m.room.topic", {"topic": "evading"}, [join], state_key="")
        stored = await self.receive(pdu)
        self.assertTrue(stored.flags & SOFT_FAILED)
        self.assertFalse(stored.in_timeline)
        self.assertEqual(await self.extremities(), frozenset([ban]))
        current = await self.store.current_state_ids(self.room_id)
        self.assertNotEqual(current.get(("m.room.topic", "")), topic)
        self.assertEqual(await self.store.membership(BOB, self.room_id), "ban")

    async def test_missing_auth_events_fetched(self) -> None:
        """An auth event we never got is fetched with /event_auth."""
        join = await self.join_bob()
        rename, _ = self.remote.make(
            BOB, "m.room.member", {"membership": "join", "displayname": "B"}, [join], state_key=BOB
        )
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [rename])
        stored = await self.receive(pdu)
        self.assertTrue(stored.in_timeline)
        self.assertIn(rename, pdu["auth_events"])
        self.assertTrue((await self.stored(rename)).flags & OUTLIER)
        asked = [p for m, p, _ in self.remote.requests if "/event_auth/" in p]
        self.assertEqual(len(asked), 1)


class ForkTests(FederatedRoomTestCase):
    async def test_concurrent_state_resolved(self) -> None:
        join = await self.join_bob()
        name = await self.local("m.room.name", {"name": "ours"}, "")
        topic, pdu = self.remote.make(BOB, "m.room.topic", {"topic": "theirs"}, [join], state_key="")
        stored = await self.receive(pdu)
        self.assertTrue(stored.in_timeline)
        self.assertEqual(await self.extremities(), frozenset([name, topic]))
        current = await self.store.current_state_ids(self.room_id)
        self.assertEqual(current[("m.room.name", "")], name)
        self.assertEqual(current[("m.room.topic", "")], topic)
        # The state before the topic is the remote branch's: no name there.
        before = await self.store.state_at_event(stored)
        self.assertNotIn(("m.room.name", ""), before)
        # The next local event merges both branches.
        mine = await self.local(content=MSG)
        self.assertEqual(sorted((await self.stored(mine)).prev_event_ids()), sorted([name, topic]))
        self.assertEqual(await self.extremities(), frozenset([mine]))

    async def test_conflicting_state_resolved_by_power(self) -> None:
        """Alice (creator) and Bob set the topic on two branches: one wins, deterministically."""
        join = await self.join_bob()
        ours = await self.local("m.room.topic", {"topic": "ours"}, "")
        theirs, pdu = self.remote.make(BOB, "m.room.topic", {"topic": "theirs"}, [join], state_key="")
        await self.receive(pdu)
        current = await self.store.current_state_ids(self.room_id)
        self.assertIn(current[("m.room.topic", "")], (ours, theirs))
        # A merge event from the remote resolves to the same state.
        merged_state = dict(current)
        merge, pdu = self.remote.make(BOB, "m.room.message", MSG, [ours, theirs], state=merged_state)
        stored = await self.receive(pdu)
        self.assertEqual(await self.store.state_at_event(stored), current)
        self.assertEqual(await self.extremities(), frozenset([merge]))


class MissingEventsTests(FederatedRoomTestCase):
    async def test_missing_prev_events_fetched(self) -> None:
        join = await self.join_bob()
        ids = []
        prev = join
        for i in range(5):
            prev, pdu = self.remote.make(BOB, "m.room.message", {"body": str(i)}, [prev])
            ids.append(prev)
        await self.receive(pdu)  # only the last one arrives
        posts = [a for m, p, a in self.remote.requests if m == "POST"]
        self.assertEqual(len(posts), 1)
        self.assertEqual(posts[0]["earliest_events"], [join])
        self.assertEqual(posts[0]["latest_events"], [ids[-1]])
        self.assertEqual(posts[0]["limit"], self.config.max_fetch_prev_events)
        latest = await self.store.latest_events(self.room_id, 5)
        self.assertEqual([e.event_id for e in latest], list(reversed(ids)))
        self.assertEqual(await self.extremities(), frozenset([ids[-1]]))
        self.assertFalse(any(m == "GET" and "/state_ids/" in p for m, p, _ in self.remote.requests))


class GapTests(FederatedRoomTestCase):
    config_overrides = {**OPEN, "max_fetch_prev_events": 3}

    async def chain(self, n: int, topic_at: int | None = None) -> list[str]:
        join = await self.join_bob()
        ids, prev = [], join
        for i in range(n):
            if i == topic_at:
                prev, pdu = self.remote.make(BOB, "m.room.topic", {"topic": "t"}, [prev], state_key="")
            else:
                prev, pdu = self.remote.make(BOB, "m.room.message", {"body": str(i)}, [prev])
            ids.append(prev)
        return ids

    async def test_remaining_gap_filled_with_state(self) -> None:
        ids = await self.chain(10, topic_at=2)
        await self.receive(self.remote.events[ids[-1]])
        requests = [(m, p) for m, p, _ in self.remote.requests]
        self.assertEqual(sum(m == "POST" for m, _ in requests), 1)
        self.assertEqual(sum("/state_ids/" in p for _, p in requests), 1)
        fetched = sorted(unquote(p.rsplit("/", 1)[1]) for m, p in requests if "/v1/event/" in p)
        self.assertEqual(fetched, sorted([ids[5], ids[2]]))  # the gap's edge and the topic
        for event_id in ids[6:]:
            self.assertTrue((await self.stored(event_id)).in_timeline)
        for event_id in (ids[5], ids[2]):
            self.assertTrue((await self.stored(event_id)).flags & OUTLIER)
        for event_id in ids[:2] + ids[3:5]:
            self.assertIsNone(await self.store.get_event(event_id))
        self.assertIn(ids[-1], await self.extremities())
        current = await self.store.current_state_ids(self.room_id)
        self.assertEqual(current[("m.room.topic", "")], ids[2])

    async def test_server_answering_more_than_the_limit(self) -> None:
        ids = await self.chain(30)
        everything = [self.remote.events[i] for i in ids[:-1]]
        self.remote.overrides[("POST", "get_missing_events")] = lambda path, body: {"events": everything}
        await self.receive(self.remote.events[ids[-1]])
        stored = [i for i in ids if await self.store.get_event(i) is not None]
        # The first three of the answer, the edge of the gap (fetched), the event.
        self.assertEqual(stored, ids[:3] + ids[-2:])

    async def test_huge_state_refused_without_fetching(self) -> None:
        ids = await self.chain(10)
        self.hs.federation_remote.max_state_events = 50
        self.remote.overrides[("GET", "state_ids")] = lambda path, args: {
            "pdu_ids": ["$fake%d" % i for i in range(51)], "auth_chain_ids": [],
        }
        with self.assertRaises(PduDropped):
            await self.receive(self.remote.events[ids[-1]])
        self.assertFalse(any("/v1/event/" in p for _, p, _ in self.remote.requests))
        self.assertIsNone(await self.store.get_event(ids[-1]))

    async def test_fetch_budget_bounds_the_work(self) -> None:
        """A state naming thousands of unknown events costs at most the budget."""
        ids = await self.chain(10)
        self.remote.overrides[("GET", "state_ids")] = lambda path, args: {
            "pdu_ids": ["$fake%d" % i for i in range(5000)], "auth_chain_ids": [],
        }
        with self.assertRaises(PduDropped) as caught:
            await self.receive(self.remote.events[ids[-1]])
        self.assertIn("Too many", caught.exception.reason)
        self.assertFalse(any("/v1/event/" in p for _, p, _ in self.remote.requests))

    async def test_garbage_answers_drop_the_event(self) -> None:
        ids = await self.chain(10)
        self.remote.overrides[("POST", "get_missing_events")] = lambda path, body: {"events": "no"}
        self.remote.overrides[("GET", "state_ids")] = lambda path, args: {"pdu_ids": [1]}
        with self.assertRaises(PduDropped):
            await self.receive(self.remote.events[ids[-1]])
        self.assertIsNone(await self.store.get_event(ids[-1]))


class ReceiveTestsV10(ReceiveTests):
    room_version = "10"


class AuthTestsV10(AuthTests):
    room_version = "10"


class GapTestsV10(GapTests):
    room_version = "10"


class ACLTests(FederatedRoomTestCase):
    async def test_denied_origin_dropped(self) -> None:
        join = await self.join_bob()
        await self.local("m.room.server_acl", {"allow": ["*"], "deny": ["remote.example"]}, "")
        msg, pdu = self.remote.make(BOB, "m.room.message", MSG, [await self.last()])
        with self.assertRaises(PduDropped) as caught:
            await self.receive(pdu)
        self.assertIn("ACL", caught.exception.reason)
        self.assertIsNone(await self.store.get_event(msg))
        # Another server may still relay it.
        other = copy.deepcopy(pdu)
        await self.hs.federation_pdus.receive_pdu("relay.example", self.room_id, other)
        self.assertTrue((await self.stored(msg)).in_timeline)


class RestrictedJoinSignatureTests(FederatedRoomTestCase):
    """Restricted joins need the authorising server's signature too (v8+)."""

    async def test_authorising_server_must_sign(self) -> None:
        from conduit_tw.events.signing import compute_event_signature
        from tests.federation.sim import SimServer

        third = SimServer("third.example", self.remote.version, self.room_id)
        self.servers["third.example"] = third
        content = {"membership": "join", "join_authorised_via_users_server": "@carol:third.example"}
        join, pdu = self.remote.make(
            BOB, "m.room.member", content, [await self.last()], state_key=BOB
        )
        with self.assertRaises(PduDropped) as caught:
            await self.receive(pdu)
        self.assertIn("third.example", caught.exception.reason)
        # Signed by both: accepted (the room is public, so the auth rules
        # do not need carol's authorisation).
        extra = compute_event_signature(pdu, self.remote.version, third.signing_key, third.name)
        pdu["signatures"].update(extra)
        stored = await self.receive(pdu)
        self.assertEqual(stored.event_id, join)
        self.assertEqual(await self.store.membership(BOB, self.room_id), "join")


class LongIdTests(FederatedRoomTestCase):
    """An ID over 255 bytes but not 255 code points: rejected in rooms v1-10, dropped after."""

    async def test_long_sender(self) -> None:
        join = await self.join_bob()
        sender = "@" + "\u00e9" * 130 + ":remote.example"
        msg, pdu = self.remote.make(sender, "m.room.message", MSG, [join])
        room = await self.store.get_room(self.room_id)
        if room.version.lenient_event_byte_limits:
            with self.assertRaises(PduRejected):
                await self.receive(pdu)
            self.assertTrue((await self.stored(msg)).rejected)
        else:
            with self.assertRaises(PduDropped):
                await self.receive(pdu)
            self.assertIsNone(await self.store.get_event(msg))


class LongIdTestsV10(LongIdTests):
    room_version = "10"
