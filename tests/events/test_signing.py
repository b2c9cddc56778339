"""
Tests for L{conduit_tw.events.signing}, starting with the appendices'
"Cryptographic Test Vectors".
"""

from __future__ import annotations

import copy
from typing import Any

from signedjson.key import generate_signing_key
from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.events.hashes import check_content_hash
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import get_room_version
from conduit_tw.events.signing import (
    MAX_KEY_VALIDITY_MS,
    SignatureError,
    TimedVerifyKey,
    compute_event_signature,
    effective_valid_until_ts,
    hash_and_sign_event,
    key_valid_for_event,
    required_signers,
    server_name_of,
    sign_json,
    verify_event_signatures,
    verify_json,
)
from tests.events._vectors import SPEC_KEY_ID, SPEC_SERVER, spec_signing_key
from tests.events.test_hashes import SPEC_MINIMAL_EVENT, SPEC_REDACTABLE_EVENT

SIG_EMPTY = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
SIG_ONE_TWO = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
SIG_MINIMAL_EVENT = "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
SIG_REDACTABLE_EVENT = "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"

V1 = get_room_version("1")
V4 = get_room_version("4")
V5 = get_room_version("5")
V7 = get_room_version("7")
V8 = get_room_version("8")
V11 = get_room_version("11")


def _spec_keys() -> dict[str, Any]:
    return {SPEC_SERVER: {SPEC_KEY_ID: spec_signing_key().verify_key}}


class SpecVectorTests(SynchronousTestCase):
    """appendices "JSON Signing" and "Event Signing"."""

    def test_public_key(self) -> None:
        """The seed gives the key the spec's other examples use."""
        from signedjson.key import encode_verify_key_base64

        self.assertEqual(
            encode_verify_key_base64(spec_signing_key().verify_key),
            "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI",
        )

    def test_sign_empty_object(self) -> None:
        """Signing C{{}} gives the spec's signature."""
        self.assertEqual(
            sign_json({}, spec_signing_key(), SPEC_SERVER),
            {"signatures": {SPEC_SERVER: {SPEC_KEY_ID: SIG_EMPTY}}},
        )

    def test_sign_object(self) -> None:
        """Signing the object with data values gives the spec's signature."""
        self.assertEqual(
            sign_json({"one": 1, "two": "Two"}, spec_signing_key(), SPEC_SERVER),
            {"one": 1, "two": "Two", "signatures": {SPEC_SERVER: {SPEC_KEY_ID: SIG_ONE_TWO}}},
        )

    def test_sign_ignores_unsigned_and_signatures(self) -> None:
        """unsigned and existing signatures are not covered, and are kept."""
        obj = {"one": 1, "two": "Two", "unsigned": {"x": 1}, "signatures": {"o": {"k": "v"}}}
        sign_json(obj, spec_signing_key(), SPEC_SERVER)
        self.assertEqual(obj["signatures"], {"o": {"k": "v"}, SPEC_SERVER: {SPEC_KEY_ID: SIG_ONE_TWO}})
        self.assertEqual(obj["unsigned"], {"x": 1})

    def test_sign_minimal_event(self) -> None:
        """The minimally-sized event vector (rooms v1-10 redaction)."""
        for v in ("1", "3", "10"):
            pdu = copy.deepcopy(SPEC_MINIMAL_EVENT)
            hash_and_sign_event(pdu, get_room_version(v), spec_signing_key(), SPEC_SERVER)
            self.assertEqual(
                pdu,
                {
                    "auth_events": [],
                    "content": {},
                    "depth": 3,
                    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
                    "origin": "domain",
                    "origin_server_ts": 1000000,
                    "prev_events": [],
                    "room_id": "!x:domain",
                    "sender": "@a:domain",
                    "signatures": {"domain": {"ed25519:1": SIG_MINIMAL_EVENT}},
                    "type": "X",
                    "unsigned": {"age_ts": 1000000},
                },
            )

    def test_sign_returns_reference_hash(self) -> None:
        """
        hash_and_sign_event returns the reference hash of the signed event
        (the signed bytes are its input), in every room version, with
        existing signatures and unsigned data present.
        """
        from conduit_tw.events.hashes import compute_reference_hash
        from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS

        for v in KNOWN_ROOM_VERSIONS:
            rv = get_room_version(v)
            for base in (SPEC_MINIMAL_EVENT, SPEC_REDACTABLE_EVENT):
                pdu = copy.deepcopy(base)
                pdu["signatures"] = {"other": {"ed25519:x": "c2ln"}}
                digest = hash_and_sign_event(pdu, rv, spec_signing_key(), SPEC_SERVER)
                self.assertEqual(digest, compute_reference_hash(pdu, rv), v)
                self.assertEqual(set(pdu["signatures"]), {"other", SPEC_SERVER})

    def test_sign_redactable_event(self) -> None:
        """The event with redactable content (a v1 event with event_id)."""
        pdu = copy.deepcopy(SPEC_REDACTABLE_EVENT)
        hash_and_sign_event(pdu, V1, spec_signing_key(), SPEC_SERVER)
        self.assertEqual(pdu["hashes"], {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"})
        self.assertEqual(pdu["signatures"], {"domain": {"ed25519:1": SIG_REDACTABLE_EVENT}})
        self.assertEqual(pdu["content"], {"body": "Here is the message content"})
        self.assertEqual(pdu["unsigned"], {"age_ts": 1000000})

    def test_verify_spec_signatures(self) -> None:
        """The spec's signed objects and events verify."""
        keys = _spec_keys()[SPEC_SERVER]
        verify_json({"signatures": {SPEC_SERVER: {SPEC_KEY_ID: SIG_EMPTY}}}, SPEC_SERVER, keys)
        verify_json(
            {"one": 1, "two": "Two", "signatures": {SPEC_SERVER: {SPEC_KEY_ID: SIG_ONE_TWO}}},
            SPEC_SERVER,
            keys,
        )
        pdu = copy.deepcopy(SPEC_REDACTABLE_EVENT)
        pdu["hashes"] = {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
        pdu["signatures"] = {"domain": {"ed25519:1": SIG_REDACTABLE_EVENT}}
        verify_event_signatures(pdu, V1, _spec_keys())


class VerifyJsonTests(SynchronousTestCase):
    """appendices "Checking for a Signature"."""

    def setUp(self) -> None:
        self.keys = _spec_keys()[SPEC_SERVER]
        self.signed = sign_json({"one": 1, "two": "Two"}, spec_signing_key(), SPEC_SERVER)

    def test_tampered(self) -> None:
        """A change to a covered value fails."""
        self.assertRaises(SignatureError, verify_json, dict(self.signed, one=2), SPEC_SERVER, self.keys)

    def test_unsigned_not_covered(self) -> None:
        """Adding unsigned data keeps the signature valid."""
        verify_json(dict(self.signed, unsigned={"age": 5}), SPEC_SERVER, self.keys)

    def test_not_signed_by_server(self) -> None:
        """No entry for the server fails (step 1)."""
        self.assertRaises(SignatureError, verify_json, self.signed, "other", self.keys)
        self.assertRaises(SignatureError, verify_json, {"one": 1}, SPEC_SERVER, self.keys)

    def test_unknown_algorithm_ignored(self) -> None:
        """Unknown algorithms are dropped; none left fails (step 2)."""
        obj = copy.deepcopy(self.signed)
        obj["signatures"][SPEC_SERVER]["curve448:1"] = "junk"
        verify_json(obj, SPEC_SERVER, self.keys)
        only_unknown = dict(self.signed, signatures={SPEC_SERVER: {"curve448:1": "junk"}})
        self.assertRaises(SignatureError, verify_json, only_unknown, SPEC_SERVER, self.keys)

    def test_unknown_key(self) -> None:
        """Without a verification key the check fails (step 3)."""
        self.assertRaises(SignatureError, verify_json, self.signed, SPEC_SERVER, {})
        other = {"ed25519:2": self.keys[SPEC_KEY_ID]}
        self.assertRaises(SignatureError, verify_json, self.signed, SPEC_SERVER, other)

    def test_bad_base64(self) -> None:
        """Undecodable signature bytes fail (step 4)."""
        obj = dict(self.signed, signatures={SPEC_SERVER: {SPEC_KEY_ID: "!!!"}})
        self.assertRaises(SignatureError, verify_json, obj, SPEC_SERVER, self.keys)

    def test_wrong_key(self) -> None:
        """A signature by another key fails (step 7)."""
        wrong = {SPEC_KEY_ID: generate_signing_key("1").verify_key}
        self.assertRaises(SignatureError, verify_json, self.signed, SPEC_SERVER, wrong)

    def test_short_signature(self) -> None:
        """A signature of the wrong length fails cleanly."""
        obj = dict(self.signed, signatures={SPEC_SERVER: {SPEC_KEY_ID: "AAAA"}})
        self.assertRaises(SignatureError, verify_json, obj, SPEC_SERVER, self.keys)

    def test_every_known_signature_must_verify(self) -> None:
        """One good and one bad signature from known keys fails."""
        key2 = generate_signing_key("2")
        obj = sign_json(dict(self.signed), key2, SPEC_SERVER)
        keys = dict(self.keys, **{"ed25519:2": key2.verify_key})
        verify_json(obj, SPEC_SERVER, keys)
        obj["signatures"][SPEC_SERVER]["ed25519:2"] = SIG_EMPTY
        self.assertRaises(SignatureError, verify_json, obj, SPEC_SERVER, keys)


class EventSignatureTests(SynchronousTestCase):
    """server-server-api "Validating hashes and signatures on received events"."""

    def setUp(self) -> None:
        self.key = generate_signing_key("k")
        self.keys = {"example.org": {"ed25519:k": self.key.verify_key}}
        self.pdu = {
            "type": "m.room.message",
            "room_id": "!r:example.org",
            "sender": "@alice:example.org",
            "origin_server_ts": 1000,
            "content": {"body": "hello"},
            "depth": 4,
            "prev_events": ["$p"],
            "auth_events": ["$a"],
            "signatures": {},
            "unsigned": {"age": 1},
        }
        hash_and_sign_event(self.pdu, V11, self.key, "example.org")

    def test_full_and_redacted(self) -> None:
        """The full event and its redacted copy both verify."""
        verify_event_signatures(self.pdu, V11, self.keys)
        verify_event_signatures(redact_pdu(self.pdu, V11), V11, self.keys)

    def test_redactable_change(self) -> None:
        """Changing content keeps the signature but breaks the hash."""
        changed = copy.deepcopy(self.pdu)
        changed["content"]["body"] = "evil"
        verify_event_signatures(changed, V11, self.keys)
        self.assertFalse(check_content_hash(changed))

    def test_essential_change(self) -> None:
        """Changing a protected field breaks the signature."""
        for key, value in [("depth", 5), ("prev_events", ["$q"]), ("hashes", {"sha256": "x"})]:
            changed = dict(self.pdu, **{key: value})
            self.assertRaises(SignatureError, verify_event_signatures, changed, V11, self.keys)

    def test_wrong_version_rules(self) -> None:
        """Verifying with another version's redaction rules fails when the
        redacted forms differ (v11 drops origin)."""
        pdu = dict(self.pdu, origin="example.org", signatures={})
        pdu["signatures"] = compute_event_signature(pdu, V4, self.key, "example.org")
        verify_event_signatures(pdu, V4, self.keys)
        self.assertRaises(SignatureError, verify_event_signatures, pdu, V11, self.keys)

    def test_missing_sender_signature(self) -> None:
        """An event not signed by the sender's server fails."""
        pdu = dict(self.pdu, sender="@bob:other.org")
        keys = dict(self.keys, **{"other.org": {"ed25519:k": self.key.verify_key}})
        self.assertRaises(SignatureError, verify_event_signatures, pdu, V11, keys)

    def test_expired_key_skipped(self) -> None:
        """v5+: a key that expired before the event cannot verify it."""
        for valid_until, ok in [(999, False), (1000, True), (5000, True)]:
            keys = {"example.org": {"ed25519:k": TimedVerifyKey(self.key.verify_key, valid_until)}}
            if ok:
                verify_event_signatures(self.pdu, V11, keys)
            else:
                self.assertRaises(SignatureError, verify_event_signatures, self.pdu, V11, keys)

    def test_expired_key_before_v5(self) -> None:
        """v1-4 do not enforce key validity."""
        pdu = dict(self.pdu, signatures={})
        pdu["signatures"] = compute_event_signature(pdu, V4, self.key, "example.org")
        keys = {"example.org": {"ed25519:k": TimedVerifyKey(self.key.verify_key, 1)}}
        verify_event_signatures(pdu, V4, keys)

    def test_explicit_servers(self) -> None:
        """The caller may name the servers to check."""
        verify_event_signatures(self.pdu, V11, self.keys, servers={"example.org"})
        self.assertRaises(
            SignatureError, verify_event_signatures, self.pdu, V11, self.keys, servers={"x.org"}
        )

    def test_v1_event_id_server(self) -> None:
        """v1-2: the event ID's server must sign too."""
        origin_key = generate_signing_key("o")
        pdu = copy.deepcopy(SPEC_REDACTABLE_EVENT)
        pdu["event_id"] = "$0:origin.org"
        hash_and_sign_event(pdu, V1, spec_signing_key(), SPEC_SERVER)
        keys = dict(_spec_keys(), **{"origin.org": {"ed25519:o": origin_key.verify_key}})
        self.assertRaises(SignatureError, verify_event_signatures, pdu, V1, keys)
        hash_and_sign_event(pdu, V1, origin_key, "origin.org")
        verify_event_signatures(pdu, V1, keys)
        self.assertEqual(set(pdu["signatures"]), {SPEC_SERVER, "origin.org"})


class RequiredSignersTests(SynchronousTestCase):
    """L{required_signers}."""

    def _member(self, membership: str, **content: Any) -> dict[str, Any]:
        return {
            "type": "m.room.member",
            "sender": "@joiner:a.org",
            "state_key": "@joiner:a.org",
            "event_id": "$e:b.org",
            "content": dict(content, membership=membership),
        }

    def test_sender_only(self) -> None:
        """v3+: only the sender's server."""
        self.assertEqual(required_signers(self._member("join"), get_room_version("3")), {"a.org"})

    def test_event_id_server(self) -> None:
        """v1-2: plus the event ID's server."""
        for v in ("1", "2"):
            self.assertEqual(
                required_signers(self._member("join"), get_room_version(v)), {"a.org", "b.org"}
            )

    def test_third_party_invite(self) -> None:
        """A 3pid invite does not need the sender's server."""
        pdu = self._member("invite", third_party_invite={"signed": {}})
        self.assertEqual(required_signers(pdu, V11), set())
        self.assertEqual(required_signers(pdu, V1), {"b.org"})
        self.assertEqual(required_signers(self._member("invite"), V11), {"a.org"})

    def test_restricted_join(self) -> None:
        """v8+: a restricted join needs the authorising user's server."""
        pdu = self._member("join", join_authorised_via_users_server="@admin:c.org:8448")
        self.assertEqual(required_signers(pdu, V8), {"a.org", "c.org:8448"})
        self.assertEqual(required_signers(pdu, V11), {"a.org", "c.org:8448"})
        self.assertEqual(required_signers(pdu, V7), {"a.org"})
        leave = self._member("leave", join_authorised_via_users_server="@admin:c.org")
        self.assertEqual(required_signers(leave, V11), {"a.org"})

    def test_malformed_ids(self) -> None:
        """IDs without a server name cannot name a signer."""
        self.assertRaises(SignatureError, required_signers, dict(self._member("join"), sender="@x"), V11)
        bad = self._member("join", join_authorised_via_users_server=5)
        self.assertRaises(SignatureError, required_signers, bad, V11)

    def test_server_name_of(self) -> None:
        """The server name follows the first colon, port included."""
        self.assertEqual(server_name_of("@a:example.org:8448"), "example.org:8448")
        self.assertEqual(server_name_of("$x:[::1]:80"), "[::1]:80")
        for bad in ("@a", "@a:", None):
            self.assertRaises(SignatureError, server_name_of, bad)


class KeyValidityTests(SynchronousTestCase):
    """rooms/fragments/v5-signing-requirements."""

    def test_enforced_from_v5(self) -> None:
        """valid_until_ts must be at least origin_server_ts in v5+."""
        self.assertTrue(key_valid_for_event(100, 100, V5))
        self.assertTrue(key_valid_for_event(101, 100, V5))
        self.assertFalse(key_valid_for_event(99, 100, V5))
        self.assertFalse(key_valid_for_event(99, 100, V11))

    def test_not_enforced_before_v5(self) -> None:
        """v1-4 accept any known key."""
        self.assertTrue(key_valid_for_event(99, 100, V4))
        self.assertTrue(key_valid_for_event(0, 100, V1))

    def test_seven_day_cap(self) -> None:
        """The lesser of valid_until_ts and 7 days after the fetch."""
        self.assertEqual(effective_valid_until_ts(10**15, 1000), 1000 + MAX_KEY_VALIDITY_MS)
        self.assertEqual(effective_valid_until_ts(2000, 1000), 2000)
