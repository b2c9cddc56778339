"""
L{KeyRing} against in-memory servers with real keys and signatures (the
HTTP path is in test_keyring_loopback): what is accepted, refused, cached,
refetched, de-duplicated and ignored.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable

from nacl.signing import SigningKey
from signedjson.key import generate_signing_key
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial import unittest

from conduit_tw.api.keys import parse_query_body
from conduit_tw.events.hashes import encode_base64
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS
from conduit_tw.events.signing import (
    MAX_KEY_VALIDITY_MS,
    SignatureError,
    TimedVerifyKey,
    hash_and_sign_event,
    key_id_of,
    sign_json,
)
from conduit_tw.federation.keyring import (
    QUERY_PATH,
    REFETCH_INTERVAL_MS,
    SERVER_KEYS_PATH,
    IgnoredKeys,
    KeyNotFound,
    KeyRing,
    key_valid_for,
)
from conduit_tw.handlers.server_keys import ServerKeys
from conduit_tw.storage.database import open_database
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.server_keys import ServerKeyStore

HOUR = 3600 * 1000
T0 = 1_700_000_000_000


class Clock:
    """Milliseconds, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def new_key(version: str = "k1") -> SigningKey:
    """A signedjson signing key (carries alg and version)."""
    return generate_signing_key(version)


def key_response(
    server: str,
    key: SigningKey,
    valid_until: int,
    *,
    server_name: str | None = None,
    signers: tuple[SigningKey, ...] | None = None,
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A C{/_matrix/key/v2/server} response, signed (by C{signers}, default C{key})."""
    body: dict[str, Any] = {
        "server_name": server_name or server,
        "valid_until_ts": valid_until,
        "verify_keys": {key_id_of(key): {"key": encode_base64(bytes(key.verify_key))}},
        "old_verify_keys": old or {},
    }
    for signer in signers if signers is not None else (key,):
        sign_json(body, signer, server)
    return body


class InMemoryFederation:
    """
    C{fetch_json} answered by in-memory servers: C{servers} give their
    key response, C{notaries} are KeyRings answering C{/query}.

    @ivar gate: when set, every request waits for it.
    @ivar tamper: C{(destination, answer) -> answer} applied to answers.
    """

    def __init__(self) -> None:
        self.servers: dict[str, Callable[[], dict[str, Any]]] = {}
        self.notaries: dict[str, KeyRing] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.gate: Deferred[None] | None = None
        self.tamper: Callable[[str, Any], Any] = lambda destination, answer: answer

    async def fetch_json(
        self, destination: str, path: str, args: Any = None, *, method: str = "GET", body: Any = None
    ) -> Any:
        self.requests.append((destination, method, path))
        if self.gate is not None:
            gate: Deferred[None] = Deferred()
            self.gate.addBoth(lambda r: gate.callback(None) or r)
            await gate
        if path == SERVER_KEYS_PATH and destination in self.servers:
            answer = copy.deepcopy(self.servers[destination]())
        elif path == QUERY_PATH and destination in self.notaries:
            ring = self.notaries[destination]
            answer = {"server_keys": await ring.query(parse_query_body(body, ring.clock_ms()))}
        else:
            raise ConnectionRefusedError(destination)
        return self.tamper(destination, answer)

    def destinations(self) -> list[str]:
        return [d for d, _, _ in self.requests]


class KeyRingTestCase(unittest.TestCase):
    """A temporary database, a clock, in-memory servers, and KeyRing makers."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.federation = InMemoryFederation()
        self.path = self.mktemp()
        os.makedirs(self.path)
        self.db = self.open_db()
        self.origin_key = new_key("o1")
        self.publish("origin", self.origin_key)

    def open_db(self) -> Any:
        db = open_database("sqlite", self.path)
        self.addCleanup(db.close)
        return db

    def publish(self, server: str, key: SigningKey, valid_for: int = 24 * HOUR) -> None:
        """Have C{server} publish C{key}, valid for C{valid_for} from each request."""
        self.federation.servers[server] = lambda: key_response(
            server, key, self.clock() + valid_for
        )

    def ring(self, name: str = "me", db: Any = None, **kw: Any) -> KeyRing:
        own = ServerKeys(name, new_key("me1"), self.clock)
        return KeyRing(
            ServerKeyStore(db or self.db), lambda: own, self.clock,
            self.federation.fetch_json, **kw,
        )

    def origin_key_id(self) -> str:
        return key_id_of(self.origin_key)


class DirectFetchTests(KeyRingTestCase):
    """Keys from the server itself."""

    async def test_fetch_and_cache(self) -> None:
        ring = self.ring()
        got = await ring.get_verify_key("origin", self.origin_key_id())
        self.assertEqual(bytes(got), bytes(self.origin_key.verify_key))
        self.assertEqual(self.federation.requests, [("origin", "GET", SERVER_KEYS_PATH)])
        await ring.get_verify_key("origin", self.origin_key_id(), self.clock())
        self.assertEqual(len(self.federation.requests), 1)

    async def test_wrong_server_name_refused(self) -> None:
        self.federation.servers["origin"] = lambda: key_response(
            "origin", self.origin_key, T0 + HOUR, server_name="evil"
        )
        with self.assertRaises(KeyNotFound):
            await self.ring().get_verify_key("origin", self.origin_key_id())
        self.assertEqual(await ServerKeyStore(self.db).get_keys("origin"), {})

    async def test_bad_self_signature_refused(self) -> None:
        def tampered() -> dict[str, Any]:
            r = key_response("origin", self.origin_key, T0 + HOUR)
            r["valid_until_ts"] += 1
            return r

        self.federation.servers["origin"] = tampered
        with self.assertRaises(KeyNotFound):
            await self.ring().get_verify_key("origin", self.origin_key_id())
        self.assertIsNone(await ServerKeyStore(self.db).get_response("origin"))

    async def test_signed_by_another_key_refused(self) -> None:
        self.federation.servers["origin"] = lambda: key_response(
            "origin", self.origin_key, T0 + HOUR, signers=(new_key("other"),)
        )
        with self.assertRaises(KeyNotFound):
            await self.ring().get_verify_key("origin", self.origin_key_id())

    async def test_malformed_responses_refused(self) -> None:
        good = key_response("origin", self.origin_key, T0 + HOUR)
        kid = self.origin_key_id()
        variants: list[Any] = [
            [good],
            {k: v for k, v in good.items() if k != "valid_until_ts"},
            dict(good, valid_until_ts="soon"),
            dict(good, verify_keys={kid: {"key": "not base64!"}}),
            dict(good, verify_keys={"ed25519:bad-chars": good["verify_keys"][kid]}),
            dict(good, verify_keys=[]),
            dict(good, old_verify_keys={"ed25519:x": {"key": good["verify_keys"][kid]["key"]}}),
        ]
        for i, variant in enumerate(variants):
            self.federation.servers["origin"] = lambda v=variant: v
            with self.assertRaises(KeyNotFound, msg=str(i)):
                await self.ring().get_verify_key("origin", kid)

    async def test_validity_capped_at_seven_days(self) -> None:
        self.publish("origin", self.origin_key, valid_for=30 * 24 * HOUR)
        got = await self.ring().get_timed_key("origin", self.origin_key_id())
        self.assertEqual(got.valid_until_ts, T0 + MAX_KEY_VALIDITY_MS)

    async def test_expired_key_refetched(self) -> None:
        ring = self.ring()
        await ring.get_verify_key("origin", self.origin_key_id())
        self.clock.now += 25 * HOUR
        # Any known key will do (rooms v1-4): no fetch.
        await ring.get_verify_key("origin", self.origin_key_id(), 0)
        self.assertEqual(len(self.federation.requests), 1)
        # A key valid now: the expired one is fetched again.
        got = await ring.get_timed_key("origin", self.origin_key_id(), self.clock())
        self.assertEqual(len(self.federation.requests), 2)
        self.assertEqual(got.valid_until_ts, self.clock() + 24 * HOUR)

    async def test_refetch_interval(self) -> None:
        """An unknown key ID does not make us ask the server on every lookup."""
        ring = self.ring()
        for _ in range(3):
            with self.assertRaises(KeyNotFound):
                await ring.get_verify_key("origin", "ed25519:unknown")
        self.assertEqual(len(self.federation.requests), 1)
        self.clock.now += REFETCH_INTERVAL_MS
        with self.assertRaises(KeyNotFound):
            await ring.get_verify_key("origin", "ed25519:unknown")
        self.assertEqual(len(self.federation.requests), 2)

    async def test_concurrent_lookups_share_one_fetch(self) -> None:
        ring = self.ring()
        self.federation.gate = Deferred()
        lookups = [
            Deferred.fromCoroutine(ring.get_verify_key("origin", self.origin_key_id()))
            for _ in range(5)
        ]
        self.assertEqual(len(self.federation.requests), 1)
        self.assertFalse(any(d.called for d in lookups))
        self.federation.gate.callback(None)
        keys = await gatherResults(lookups)
        self.assertEqual({bytes(k) for k in keys}, {bytes(self.origin_key.verify_key)})
        self.assertEqual(len(self.federation.requests), 1)

    async def test_servers_fetched_concurrently(self) -> None:
        other = new_key("b1")
        self.publish("other", other)
        ring = self.ring()
        self.federation.gate = Deferred()
        a = Deferred.fromCoroutine(ring.get_verify_key("origin", self.origin_key_id()))
        b = Deferred.fromCoroutine(ring.get_verify_key("other", key_id_of(other)))
        # Both requests are out before either answers.
        self.assertEqual(sorted(self.federation.destinations()), ["origin", "other"])
        self.federation.gate.callback(None)
        await gatherResults([a, b])

    async def test_cancelled_lookup_does_not_cancel_the_fetch(self) -> None:
        ring = self.ring()
        self.federation.gate = Deferred()
        first = Deferred.fromCoroutine(ring.get_verify_key("origin", self.origin_key_id()))
        second = Deferred.fromCoroutine(ring.get_verify_key("origin", self.origin_key_id()))
        first.cancel()
        self.failureResultOf(first)
        self.federation.gate.callback(None)
        self.assertEqual(bytes(await second), bytes(self.origin_key.verify_key))

    async def test_cache_survives_restart(self) -> None:
        await self.ring().get_verify_key("origin", self.origin_key_id())
        self.db.close()
        self.db = self.open_db()
        del self.federation.servers["origin"]
        got = await self.ring().get_timed_key("origin", self.origin_key_id(), self.clock())
        self.assertEqual(bytes(got.verify_key), bytes(self.origin_key.verify_key))
        self.assertEqual(len(self.federation.requests), 1)

    async def test_old_verify_keys_kept(self) -> None:
        old = new_key("o0")
        self.federation.servers["origin"] = lambda: key_response(
            "origin", self.origin_key, T0 + HOUR,
            old={key_id_of(old): {"key": encode_base64(bytes(old.verify_key)), "expired_ts": T0 - HOUR}},
        )
        ring = self.ring()
        got = await ring.get_timed_key("origin", key_id_of(old))
        self.assertEqual(got.valid_until_ts, T0 - HOUR)
        with self.assertRaises(KeyNotFound):
            await ring.get_verify_key("origin", key_id_of(old), T0)


class IgnoredKeysTests(KeyRingTestCase):
    """C{ignored_keys}: never trusted, never stored."""

    async def assert_ignored(self, entry: str) -> None:
        ring = self.ring(ignored_keys=[entry])
        with self.assertRaises(KeyNotFound):
            await ring.get_verify_key("origin", self.origin_key_id())
        self.assertEqual(await ServerKeyStore(self.db).get_keys("origin"), {})

    async def test_by_server_and_key_id(self) -> None:
        await self.assert_ignored("origin:" + self.origin_key_id())

    async def test_by_key_id(self) -> None:
        await self.assert_ignored(self.origin_key_id())

    async def test_by_public_key(self) -> None:
        await self.assert_ignored(encode_base64(bytes(self.origin_key.verify_key)))

    async def test_other_servers_key_unaffected(self) -> None:
        ring = self.ring(ignored_keys=["elsewhere:" + self.origin_key_id()])
        await ring.get_verify_key("origin", self.origin_key_id())

    async def test_stored_key_ignored_after_restart(self) -> None:
        """A key stored before it was listed is not trusted afterwards."""
        await self.ring().get_verify_key("origin", self.origin_key_id())
        del self.federation.servers["origin"]
        with self.assertRaises(KeyNotFound):
            await self.ring(ignored_keys=[encode_base64(bytes(self.origin_key.verify_key))]
                            ).get_verify_key("origin", self.origin_key_id())

    async def test_good_key_alongside_an_ignored_one(self) -> None:
        """A response signed by an ignored and a good key: only the good one is kept."""
        bad = new_key("bad")

        def both() -> dict[str, Any]:
            r = key_response("origin", self.origin_key, T0 + HOUR, signers=())
            r["verify_keys"][key_id_of(bad)] = {"key": encode_base64(bytes(bad.verify_key))}
            sign_json(r, self.origin_key, "origin")
            return sign_json(r, bad, "origin")

        self.federation.servers["origin"] = both
        ring = self.ring(ignored_keys=[key_id_of(bad)])
        await ring.get_verify_key("origin", self.origin_key_id())
        self.assertEqual(
            set(await ServerKeyStore(self.db).get_keys("origin")), {self.origin_key_id()}
        )

    def test_parse(self) -> None:
        ignored = IgnoredKeys(["[::1]:8448:ed25519:abc", "ed25519:x"])
        self.assertTrue(ignored.ignores_id("[::1]:8448", "ed25519:abc"))
        self.assertFalse(ignored.ignores_id("[::1]", "ed25519:abc"))
        self.assertTrue(ignored.ignores_id("anyone", "ed25519:x"))
        self.assertRaises(ValueError, IgnoredKeys, ["not-a-key"])


class NotaryFetchTests(KeyRingTestCase):
    """Keys through C{trusted_servers}: the notary's signature is required."""

    def setUp(self) -> None:
        super().setUp()
        self.notary = self.ring("notary")
        self.federation.notaries["notary"] = self.notary
        # The notary publishes its own key (its KeyRing's ServerKeys).
        self.federation.servers["notary"] = lambda: self.notary._own_keys().response()

    def asker(self, **kw: Any) -> KeyRing:
        path = self.mktemp()
        os.makedirs(path)
        db = open_database("sqlite", path)
        self.addCleanup(db.close)
        return self.ring("asker", db=db, trusted_servers=["notary"], **kw)

    async def test_through_notary(self) -> None:
        got = await self.asker().get_verify_key("origin", self.origin_key_id())
        self.assertEqual(bytes(got), bytes(self.origin_key.verify_key))
        # asker -> notary (query), notary -> origin, asker -> notary (its key)
        self.assertEqual(self.federation.destinations(), ["notary", "origin", "notary"])
        self.assertEqual(self.federation.requests[0], ("notary", "POST", QUERY_PATH))

    async def test_unsigned_by_notary_refused_then_direct(self) -> None:
        def strip(destination: str, answer: Any) -> Any:
            if "server_keys" in answer:
                for r in answer["server_keys"]:
                    r["signatures"].pop("notary", None)
            return answer

        self.federation.tamper = strip
        asker = self.asker()
        await asker.get_verify_key("origin", self.origin_key_id())
        # The notary's answer (after it asked the origin) was refused; the
        # origin itself was asked.
        self.assertEqual(self.federation.destinations(), ["notary", "origin", "origin"])
        stored = await asker.store.get_response("origin")
        self.assertEqual(set(stored.response["signatures"]), {"origin"})

    async def assert_refused_with_origin_down(
        self, change: Callable[[dict[str, Any]], None], notary_key: SigningKey
    ) -> None:
        """
        The notary holds the origin's keys, the origin is down, and each
        notary answer is changed by C{change}, then signed with
        C{notary_key} as the notary's signature: the asker finds no key.
        """
        def forge(destination: str, answer: Any) -> Any:
            for r in answer.get("server_keys", []):
                change(r)
                r["signatures"].pop("notary")
                sign_json(r, notary_key, "notary")
            return answer

        await self.notary.query({"origin": {}})
        del self.federation.servers["origin"]
        self.federation.tamper = forge
        with self.assertRaises(KeyNotFound):
            await self.asker().get_verify_key("origin", self.origin_key_id())

    async def test_forged_notary_signature_refused(self) -> None:
        """Signed under the notary's key ID, but by another key."""
        forger = new_key(self.notary._own_keys().key_id.split(":")[1])
        await self.assert_refused_with_origin_down(lambda r: None, forger)

    async def test_forged_origin_signature_refused(self) -> None:
        """The notary signs, but the origin's own signature is not valid."""
        def change(r: dict[str, Any]) -> None:
            r["valid_until_ts"] += 1

        await self.assert_refused_with_origin_down(change, self.notary._own_keys().signing_key)

    async def test_notary_cannot_vouch_for_another_server(self) -> None:
        def swap(destination: str, answer: Any) -> Any:
            if "server_keys" in answer:
                answer["server_keys"] = self.notary_answer_for_notary
            return answer

        self.notary_answer_for_notary = await self.notary.query({"notary": {}})
        self.federation.tamper = swap
        del self.federation.servers["origin"]
        asker = self.asker()
        with self.assertRaises(KeyNotFound):
            await asker.get_verify_key("origin", self.origin_key_id())
        self.assertEqual(await asker.store.get_keys("notary"), {})

    async def test_direct_first(self) -> None:
        await self.asker(query_trusted_key_servers_first=False).get_verify_key(
            "origin", self.origin_key_id()
        )
        self.assertEqual(self.federation.destinations(), ["origin"])


class NotaryServingTests(KeyRingTestCase):
    """L{KeyRing.query}: cached, refreshed at half-life, signed by us."""

    async def test_cached_until_half_life(self) -> None:
        ring = self.ring()
        [first] = await ring.query({"origin": {}})
        self.clock.now += 11 * HOUR
        await ring.query({"origin": {}})
        self.assertEqual(len(self.federation.requests), 1)
        self.clock.now += 2 * HOUR
        [again] = await ring.query({"origin": {}})
        self.assertEqual(len(self.federation.requests), 2)
        self.assertGreater(again["valid_until_ts"], first["valid_until_ts"])
        self.assertEqual(set(again["signatures"]), {"origin", "me"})

    async def test_minimum_valid_until_prompts_refresh(self) -> None:
        ring = self.ring()
        await ring.query({"origin": {}})
        await ring.query({"origin": {None: T0 + 48 * HOUR}})
        self.assertEqual(len(self.federation.requests), 1)  # within the refetch interval
        self.clock.now += REFETCH_INTERVAL_MS
        await ring.query({"origin": {None: T0 + 48 * HOUR}})
        self.assertEqual(len(self.federation.requests), 2)

    async def test_own_keys_answered_directly(self) -> None:
        ring = self.ring()
        [ours] = await ring.query({"me": {}})
        self.assertEqual(ours["server_name"], "me")
        self.assertEqual(self.federation.requests, [])

    async def test_unknown_server_left_out(self) -> None:
        self.assertEqual(await self.ring().query({"nowhere": {}}), [])


class VerificationTests(KeyRingTestCase):
    """verify_json_for_server and verify_event."""

    async def test_verify_json(self) -> None:
        ring = self.ring()
        obj = sign_json({"a": 1}, self.origin_key, "origin")
        await ring.verify_json_for_server("origin", obj)
        with self.assertRaises(SignatureError) as e:
            await ring.verify_json_for_server("origin", dict(obj, a=2))
        self.assertNotIsInstance(e.exception, KeyNotFound)
        with self.assertRaises(SignatureError):
            await ring.verify_json_for_server("other", obj)
        with self.assertRaises(KeyNotFound):
            await ring.verify_json_for_server("origin", sign_json({"a": 1}, new_key("zz"), "origin"))

    def signed_event(self, version: str, ts: int) -> dict[str, Any]:
        pdu = {
            "type": "m.room.message", "room_id": "!r:origin", "sender": "@u:origin",
            "content": {"body": "hi"}, "origin_server_ts": ts, "depth": 3,
            "prev_events": [], "auth_events": [],
        }
        hash_and_sign_event(pdu, KNOWN_ROOM_VERSIONS[version], self.origin_key, "origin")
        return pdu

    async def test_event_key_validity_per_room_version(self) -> None:
        """rooms v5: the key must be valid at origin_server_ts; v4 accepts any."""
        ring = self.ring()
        late = T0 + 48 * HOUR  # after the key's valid_until_ts
        await ring.verify_event(self.signed_event("4", late), KNOWN_ROOM_VERSIONS["4"])
        with self.assertRaises(KeyNotFound):
            await ring.verify_event(self.signed_event("5", late), KNOWN_ROOM_VERSIONS["5"])
        await ring.verify_event(self.signed_event("5", T0), KNOWN_ROOM_VERSIONS["5"])

    async def test_event_tampered(self) -> None:
        ring = self.ring()
        pdu = self.signed_event("10", T0)
        pdu["depth"] = 4
        with self.assertRaises(SignatureError):
            await ring.verify_event(pdu, KNOWN_ROOM_VERSIONS["10"])

    def test_key_valid_for(self) -> None:
        key = TimedVerifyKey(self.origin_key.verify_key, T0)
        self.assertTrue(key_valid_for(KNOWN_ROOM_VERSIONS["4"], key, T0 + 1))
        self.assertFalse(key_valid_for(KNOWN_ROOM_VERSIONS["5"], key, T0 + 1))
        self.assertTrue(key_valid_for(KNOWN_ROOM_VERSIONS["5"], key, T0))


class OwnKeysTests(KeyRingTestCase):
    """Our own keys, current and rotated, without any request."""

    async def test_current_and_old(self) -> None:
        own = await ServerKeys.load("me", GlobalsStore(self.db), self.clock)
        ring = KeyRing(ServerKeyStore(self.db), lambda: own, self.clock, self.federation.fetch_json)
        old_id = own.key_id
        old_key = bytes(own.signing_key.verify_key)
        self.assertEqual(bytes(await ring.get_verify_key("me", old_id, self.clock())), old_key)
        self.clock.now += 1000
        new_id = await own.rotate()
        got = await ring.get_timed_key("me", old_id)
        self.assertEqual((bytes(got.verify_key), got.valid_until_ts), (old_key, self.clock()))
        await ring.get_verify_key("me", new_id, self.clock())
        with self.assertRaises(KeyNotFound):
            await ring.get_verify_key("me", "ed25519:nope")
        self.assertEqual(self.federation.requests, [])
