"""
Tests for L{conduit_tw.events.hashes}.
"""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.events.canonical_json import parse_json
from conduit_tw.events.hashes import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_reference_hash,
    decode_base64,
    encode_base64,
)
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import get_room_version
from tests.events._vectors import JKI_CREATE_JSON

# appendices "Cryptographic Test Vectors" / "Event Signing", before signing.
SPEC_MINIMAL_EVENT = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
SPEC_MINIMAL_HASH = "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
SPEC_REDACTABLE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
SPEC_REDACTABLE_HASH = "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"


class Base64Tests(SynchronousTestCase):
    """appendices "Unpadded Base64"."""

    def test_spec_examples(self) -> None:
        """The spec's UNPADDED_BASE64 examples."""
        for raw, enc in [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
        ]:
            self.assertEqual(encode_base64(raw), enc)
            self.assertEqual(decode_base64(enc), raw)

    def test_urlsafe(self) -> None:
        """URL-safe swaps C{+/} for C{-_}."""
        self.assertEqual(encode_base64(b"\xfb\xff", urlsafe=True), "-_8")
        self.assertEqual(encode_base64(b"\xfb\xff"), "+/8")

    def test_decode_padded(self) -> None:
        """Decoding accepts padding too."""
        self.assertEqual(decode_base64("Zg=="), b"f")

    def test_decode_invalid(self) -> None:
        """Invalid input gives None."""
        for bad in ("Z", "Zm9v!", "-_8", None, 5):
            self.assertIsNone(decode_base64(bad))  # type: ignore[arg-type]


class ContentHashTests(SynchronousTestCase):
    """server-server-api "Calculating the content hash for an event"."""

    def test_spec_vectors(self) -> None:
        """The hashes of the appendices' event signing examples."""
        for event, expected in [
            (SPEC_MINIMAL_EVENT, SPEC_MINIMAL_HASH),
            (SPEC_REDACTABLE_EVENT, SPEC_REDACTABLE_HASH),
        ]:
            self.assertEqual(encode_base64(compute_content_hash(event)), expected)
            pdu = dict(event)
            add_content_hash(pdu)
            self.assertEqual(pdu["hashes"], {"sha256": expected})
            self.assertTrue(check_content_hash(pdu))

    def test_excluded_keys(self) -> None:
        """unsigned, signatures and hashes are not covered."""
        pdu = dict(SPEC_MINIMAL_EVENT, hashes={"sha256": SPEC_MINIMAL_HASH})
        changed = dict(
            pdu,
            unsigned={"age": 99},
            signatures={"x": {"ed25519:1": "y"}},
            hashes={"sha256": SPEC_MINIMAL_HASH, "sha512": "z"},
        )
        self.assertEqual(compute_content_hash(changed), compute_content_hash(pdu))
        self.assertTrue(check_content_hash(changed))

    def test_real_event(self) -> None:
        """A real federated event's hash checks; changing content breaks it."""
        pdu = parse_json(JKI_CREATE_JSON, strict=False)
        self.assertTrue(check_content_hash(pdu))
        pdu["content"]["creator"] = "@mallory:jki.re"
        self.assertFalse(check_content_hash(pdu))

    def test_malformed_hashes(self) -> None:
        """Missing, non-object or non-base64 hashes fail the check."""
        for hashes in (None, [], {}, {"sha256": 5}, {"sha256": "!!"}, {"sha512": SPEC_MINIMAL_HASH}):
            pdu = dict(SPEC_MINIMAL_EVENT)
            if hashes is None:
                del pdu["hashes"]
            else:
                pdu["hashes"] = hashes
            self.assertFalse(check_content_hash(pdu), hashes)

    def test_padded_hash_accepted(self) -> None:
        """A padded base64 hash still matches."""
        pdu = dict(SPEC_MINIMAL_EVENT, hashes={"sha256": SPEC_MINIMAL_HASH + "="})
        self.assertTrue(check_content_hash(pdu))

    def test_add_keeps_other_algorithms(self) -> None:
        """add_content_hash only replaces sha256."""
        pdu = dict(SPEC_MINIMAL_EVENT, hashes={"sha256": "old", "other": "x"})
        add_content_hash(pdu)
        self.assertEqual(pdu["hashes"], {"sha256": SPEC_MINIMAL_HASH, "other": "x"})


class ReferenceHashTests(SynchronousTestCase):
    """server-server-api "Calculating the reference hash for an event"."""

    def setUp(self) -> None:
        self.pdu = parse_json(JKI_CREATE_JSON, strict=False)

    def test_definition(self) -> None:
        """sha256 of the redacted event minus signatures and unsigned."""
        rv = get_room_version("5")
        redacted = redact_pdu(self.pdu, rv)
        del redacted["signatures"]
        expected = hashlib.sha256(
            b'{"auth_events":[],"content":{"creator":"@erikj:jki.re"},"depth":1,'
            b'"hashes":{"sha256":"IX6zuNiJpJPNf70BLleL3HSCpjKeq9Uhu7uUpyDjBmc"},'
            b'"origin":"jki.re","origin_server_ts":1560284621137,"prev_events":[],'
            b'"prev_state":[],"room_id":"!uXDCzlYgCTHtiWCkEx:jki.re",'
            b'"sender":"@erikj:jki.re","state_key":"","type":"m.room.create"}'
        ).digest()
        self.assertEqual(compute_reference_hash(self.pdu, rv), expected)

    def test_redacted_copy_same_hash(self) -> None:
        """The redacted copy of an event has the same reference hash."""
        for v in ("3", "11"):
            rv = get_room_version(v)
            self.assertEqual(
                compute_reference_hash(redact_pdu(self.pdu, rv), rv),
                compute_reference_hash(self.pdu, rv),
            )

    def test_not_covered(self) -> None:
        """Signatures, unsigned and redactable content do not change it."""
        rv = get_room_version("5")
        changed = dict(
            self.pdu,
            signatures={},
            unsigned={"age": 1},
            content=dict(self.pdu["content"], room_version="9"),
        )
        self.assertEqual(compute_reference_hash(changed, rv), compute_reference_hash(self.pdu, rv))

    def test_covered(self) -> None:
        """Essential fields, including the content hash, change it."""
        rv = get_room_version("5")
        base = compute_reference_hash(self.pdu, rv)
        for key, value in [
            ("depth", 2),
            ("hashes", {"sha256": "AAAA"}),
            ("sender", "@other:jki.re"),
            ("origin_server_ts", 1),
        ]:
            self.assertNotEqual(compute_reference_hash(dict(self.pdu, **{key: value}), rv), base)

    def test_version_dependent(self) -> None:
        """v11 redaction (create keeps all content, no origin) changes it."""
        self.assertNotEqual(
            compute_reference_hash(self.pdu, get_room_version("10")),
            compute_reference_hash(self.pdu, get_room_version("11")),
        )
