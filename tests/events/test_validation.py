"""
Tests for L{conduit_tw.events.validation}.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.events.canonical_json import encode_canonical_json, parse_json
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from conduit_tw.events.validation import (
    MAX_PDU_SIZE,
    InvalidEvent,
    check_pdu_size,
    validate_pdu,
)
from tests.events._vectors import JKI_CREATE_JSON, minimal_pdu

ALL_VERSIONS = sorted(KNOWN_ROOM_VERSIONS, key=int)
V1 = get_room_version("1")
V3 = get_room_version("3")
V5 = get_room_version("5")
V6 = get_room_version("6")
V10 = get_room_version("10")
V11 = get_room_version("11")
V12 = get_room_version("12")


def _pdu(version: str, **overrides: Any) -> dict[str, Any]:
    return minimal_pdu(get_room_version(version).event_id_in_event, **overrides)


class ValidTests(SynchronousTestCase):
    """Well-formed events pass in every version."""

    def test_minimal(self) -> None:
        """The minimal PDU of each format is accepted."""
        for v in ALL_VERSIONS:
            validate_pdu(_pdu(v), get_room_version(v))

    def test_real_event(self) -> None:
        """A real federated v5 event is accepted."""
        validate_pdu(parse_json(JKI_CREATE_JSON, strict=False), V5)

    def test_state_event(self) -> None:
        """A state event with an empty state_key is accepted."""
        validate_pdu(_pdu("11", type="m.room.name", state_key=""), V11)


class RequiredKeyTests(SynchronousTestCase):
    """Required keys and their types (pdu_v*.yaml)."""

    REQUIRED = [
        "type",
        "sender",
        "content",
        "origin_server_ts",
        "depth",
        "hashes",
        "signatures",
        "room_id",
        "prev_events",
        "auth_events",
    ]

    def test_missing(self) -> None:
        """Dropping any required key is refused."""
        for v in ALL_VERSIONS:
            for key in self.REQUIRED:
                pdu = _pdu(v)
                del pdu[key]
                self.assertRaises(InvalidEvent, validate_pdu, pdu, get_room_version(v))

    def test_event_id_v1_v2(self) -> None:
        """event_id is required in v1-2 and must look like one."""
        for v in ("1", "2"):
            rv = get_room_version(v)
            pdu = _pdu(v)
            del pdu["event_id"]
            self.assertRaises(InvalidEvent, validate_pdu, pdu, rv)
            for bad in (5, "abc:example.org", "$nodomain"):
                self.assertRaises(InvalidEvent, validate_pdu, _pdu(v, event_id=bad), rv)
        # Not needed from v3.
        validate_pdu(_pdu("3"), V3)

    def test_wrong_types(self) -> None:
        """Each key must have its JSON type."""
        for key, bad in [
            ("type", 5),
            ("sender", ["@a:b"]),
            ("content", []),
            ("origin_server_ts", "1"),
            ("origin_server_ts", True),
            ("depth", 1.0),
            ("depth", False),
            ("hashes", []),
            ("hashes", {}),
            ("hashes", {"sha256": 1}),
            ("signatures", []),
            ("signatures", {"x": "sig"}),
            ("signatures", {"x": {"ed25519:a": 1}}),
            ("unsigned", []),
            ("state_key", None),
            ("room_id", 5),
            ("prev_events", {}),
            ("auth_events", "$a"),
        ]:
            self.assertRaises(InvalidEvent, validate_pdu, _pdu("11", **{key: bad}), V11)

    def test_not_object(self) -> None:
        """A PDU must be a JSON object."""
        for bad in ([], "x", None):
            self.assertRaises(InvalidEvent, validate_pdu, bad, V11)

    def test_sigils(self) -> None:
        """sender must be a user ID and room_id a room ID."""
        for key, bad in [("sender", "alice:example.org"), ("sender", "@alice"), ("room_id", "#a:b")]:
            self.assertRaises(InvalidEvent, validate_pdu, _pdu("11", **{key: bad}), V11)

    def test_error_message(self) -> None:
        """The error says what is wrong."""
        pdu = _pdu("11")
        del pdu["depth"]
        e = self.assertRaises(InvalidEvent, validate_pdu, pdu, V11)
        self.assertIn("depth", e.message)
        self.assertFalse(e.persist_as_rejected)


class RoomIdV12Tests(SynchronousTestCase):
    """Room v12: the create event has no room_id (pdu_v12.yaml)."""

    def test_create_without_room_id(self) -> None:
        """Accepted in v12, refused before."""
        pdu = _pdu("12", type="m.room.create", state_key="", prev_events=[], auth_events=[])
        del pdu["room_id"]
        validate_pdu(pdu, V12)
        self.assertRaises(InvalidEvent, validate_pdu, pdu, V11)

    def test_other_events_need_room_id(self) -> None:
        """Any other v12 event still needs a room_id."""
        pdu = _pdu("12")
        del pdu["room_id"]
        self.assertRaises(InvalidEvent, validate_pdu, pdu, V12)

    def test_domainless_room_id(self) -> None:
        """A hash room ID without a domain is well-formed in v12."""
        validate_pdu(_pdu("12", room_id="!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"), V12)


class RefsTests(SynchronousTestCase):
    """prev_events / auth_events shapes and counts."""

    def test_pairs_v1(self) -> None:
        """v1-2 need [event_id, hashes] pairs."""
        for bad in (["$a:b"], [["$a:b"]], [["$a:b", "hash"]], [[5, {}]], [["$a:b", {}, 1]]):
            self.assertRaises(InvalidEvent, validate_pdu, _pdu("1", prev_events=bad), V1)
            self.assertRaises(InvalidEvent, validate_pdu, _pdu("1", auth_events=bad), V1)
        validate_pdu(_pdu("1", prev_events=[["$a:b", {}]]), V1)

    def test_strings_v3(self) -> None:
        """v3+ need plain event ID strings."""
        for bad in ([["$a", {"sha256": "x"}]], [5], [None]):
            self.assertRaises(InvalidEvent, validate_pdu, _pdu("3", prev_events=bad), V3)
            self.assertRaises(InvalidEvent, validate_pdu, _pdu("11", auth_events=bad), V11)

    def test_counts(self) -> None:
        """At most 20 prev_events and 10 auth_events."""
        validate_pdu(_pdu("11", prev_events=["$p%d" % i for i in range(20)]), V11)
        self.assertRaises(
            InvalidEvent, validate_pdu, _pdu("11", prev_events=["$p%d" % i for i in range(21)]), V11
        )
        validate_pdu(_pdu("11", auth_events=["$a%d" % i for i in range(10)]), V11)
        self.assertRaises(
            InvalidEvent, validate_pdu, _pdu("11", auth_events=["$a%d" % i for i in range(11)]), V11
        )
        pairs = [["$p%d:x" % i, {}] for i in range(21)]
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("1", prev_events=pairs), V1)


class DepthTests(SynchronousTestCase):
    """depth range (pdu_v1..v4 vs depth_v6.yaml)."""

    def test_negative(self) -> None:
        """Negative depth is refused; zero is accepted."""
        validate_pdu(_pdu("11", depth=0), V11)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("11", depth=-1), V11)

    def test_limits(self) -> None:
        """2**63-1 before v6, 2**53-1 from v6."""
        validate_pdu(_pdu("5", depth=2**63 - 1), V5)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("5", depth=2**63), V5)
        validate_pdu(_pdu("6", depth=2**53 - 1), V6)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("6", depth=2**53), V6)


class StrictJsonTests(SynchronousTestCase):
    """rooms/fragments/v6-canonical-json."""

    def test_float(self) -> None:
        """A float anywhere is refused from v6, accepted before."""
        pdu = _pdu("5", content={"body": "x", "n": [1.5]})
        validate_pdu(pdu, V5)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("6", content={"n": 1.5}), V6)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("12", unsigned={"x": 1.0}), V12)

    def test_big_int(self) -> None:
        """Integers outside the canonical range are refused from v6."""
        validate_pdu(_pdu("5", content={"n": 2**60}), V5)
        validate_pdu(_pdu("6", content={"n": 2**53 - 1}), V6)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("6", content={"n": 2**53}), V6)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("6", origin_server_ts=2**60), V6)


class SizeLimitTests(SynchronousTestCase):
    """client-server-api "Size limits"."""

    def _sized(self, size: int) -> dict[str, Any]:
        pdu = _pdu("11", content={"body": ""})
        pad = size - len(encode_canonical_json(pdu))
        pdu["content"]["body"] = "x" * pad
        self.assertEqual(len(encode_canonical_json(pdu)), size)
        return pdu

    def test_pdu_size(self) -> None:
        """65536 bytes of canonical JSON pass; one more fails."""
        validate_pdu(self._sized(MAX_PDU_SIZE), V11)
        self.assertRaises(InvalidEvent, validate_pdu, self._sized(MAX_PDU_SIZE + 1), V11)

    def test_size_counts_utf8_bytes(self) -> None:
        """The limit is in bytes of UTF-8, not characters."""
        pdu = self._sized(MAX_PDU_SIZE - 100)
        pdu["content"]["extra"] = "\u00e9" * 60  # 120 bytes, 60 chars
        self.assertRaises(InvalidEvent, validate_pdu, pdu, V11)

    def test_encoded_argument(self) -> None:
        """A precomputed encoding is used for the size check."""
        pdu = _pdu("11")
        check_pdu_size(pdu, encoded=b"x" * MAX_PDU_SIZE)
        self.assertRaises(InvalidEvent, check_pdu_size, pdu, b"x" * (MAX_PDU_SIZE + 1))

    def test_key_limits(self) -> None:
        """sender, room_id, type, state_key: 255 bytes."""
        cases = {
            "sender": ("@" + "a" * 248 + ":b.org", 255),
            "room_id": ("!" + "a" * 248 + ":b.org", 255),
            "type": ("t" * 255, 255),
            "state_key": ("s" * 255, 255),
        }
        for key, (value, n) in cases.items():
            self.assertEqual(len(value.encode()), n)
            validate_pdu(_pdu("11", **{key: value}), V11)
            too_long = value[0] + "a" + value[1:]
            e = self.assertRaises(InvalidEvent, validate_pdu, _pdu("11", **{key: too_long}), V11)
            self.assertIn(key, e.message)

    def test_event_id_limit(self) -> None:
        """v1-2 event IDs: 255 bytes."""
        ok = "$" + "e" * 248 + ":b.org"
        validate_pdu(_pdu("1", event_id=ok), V1)
        self.assertRaises(InvalidEvent, validate_pdu, _pdu("1", event_id="$e" + ok[1:]), V1)

    def test_multibyte_lenient(self) -> None:
        """Over 255 bytes but not 255 code points: stored as rejected in
        v1-10, dropped from v11; over 255 code points: dropped."""
        bytes_only = "\u00e9" * 128  # 256 bytes, 128 code points
        for v in ("1", "6", "10"):
            e = self.assertRaises(
                InvalidEvent, validate_pdu, _pdu(v, state_key=bytes_only), get_room_version(v)
            )
            self.assertTrue(e.persist_as_rejected)
        for v in ("11", "12"):
            e = self.assertRaises(
                InvalidEvent, validate_pdu, _pdu(v, state_key=bytes_only), get_room_version(v)
            )
            self.assertFalse(e.persist_as_rejected)
        e = self.assertRaises(InvalidEvent, validate_pdu, _pdu("10", type="t" * 256), V10)
        self.assertFalse(e.persist_as_rejected)
        validate_pdu(_pdu("11", state_key="\u00e9" * 127), V11)
