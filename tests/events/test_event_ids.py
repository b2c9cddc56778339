"""
Tests for L{conduit_tw.events.event_ids}.
"""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.events.canonical_json import parse_json
from conduit_tw.events.event import Event
from conduit_tw.events.event_ids import (
    compute_event_id,
    make_event,
    reference_event_id,
    room_id_for_create_event,
)
from conduit_tw.events.hashes import add_content_hash
from conduit_tw.events.room_versions import get_room_version
from conduit_tw.events.validation import InvalidEvent
from tests.events._vectors import JKI_CREATE_ID_V3, JKI_CREATE_ID_V4, JKI_CREATE_JSON

_STD = re.compile(r"^\$[A-Za-z0-9+/]{43}$")
_URLSAFE = re.compile(r"^[$!][A-Za-z0-9_-]{43}$")


def _v12_create() -> dict:
    pdu = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:example.org",
        "content": {"room_version": "12"},
        "origin_server_ts": 1750000000000,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
        "signatures": {},
    }
    add_content_hash(pdu)
    return pdu


class ServerMadeTests(SynchronousTestCase):
    """Rooms v1-2: the ID is carried in the event."""

    def test_reads_event_id(self) -> None:
        """compute_event_id returns the event_id key."""
        pdu = {"event_id": "$abc:example.org", "type": "m.room.message"}
        for v in ("1", "2"):
            self.assertEqual(compute_event_id(pdu, get_room_version(v)), "$abc:example.org")

    def test_missing_event_id(self) -> None:
        """A v1-2 event without a string event_id is invalid."""
        for pdu in ({}, {"event_id": 5}):
            self.assertRaises(InvalidEvent, compute_event_id, pdu, get_room_version("1"))

    def test_no_reference_ids(self) -> None:
        """Rooms v1-2 have no hash-based event IDs."""
        self.assertRaises(ValueError, reference_event_id, {}, get_room_version("2"))


class HashIdTests(SynchronousTestCase):
    """Rooms v3 (base64) and v4+ (URL-safe base64) event IDs."""

    def setUp(self) -> None:
        self.pdu = parse_json(JKI_CREATE_JSON, strict=False)

    def test_real_event_v3(self) -> None:
        """A real event's known ID in the v3 format."""
        self.assertEqual(compute_event_id(self.pdu, get_room_version("3")), JKI_CREATE_ID_V3)

    def test_real_event_v4_plus(self) -> None:
        """The same event's known ID in the URL-safe format (v4-v10)."""
        for v in ("4", "5", "6", "10"):
            self.assertEqual(compute_event_id(self.pdu, get_room_version(v)), JKI_CREATE_ID_V4)

    def test_alphabets(self) -> None:
        """v3 IDs use the standard alphabet, v4+ the URL-safe one."""
        seen_v3 = set()
        for n in range(40):
            pdu = dict(self.pdu, depth=n)
            v3 = compute_event_id(pdu, get_room_version("3"))
            v4 = compute_event_id(pdu, get_room_version("4"))
            self.assertRegex(v3, _STD)
            self.assertRegex(v4, _URLSAFE)
            self.assertEqual(v3.replace("+", "-").replace("/", "_"), v4)
            seen_v3.update(v3)
        self.assertTrue({"+", "/"} & seen_v3)

    def test_ignores_unsigned_and_signatures(self) -> None:
        """The ID does not depend on unsigned data or signatures."""
        rv = get_room_version("4")
        changed = dict(self.pdu, unsigned={}, signatures={"other": {}})
        self.assertEqual(compute_event_id(changed, rv), JKI_CREATE_ID_V4)

    def test_depends_on_essential_fields(self) -> None:
        """Changing an essential field changes the ID."""
        rv = get_room_version("4")
        self.assertNotEqual(compute_event_id(dict(self.pdu, depth=2), rv), JKI_CREATE_ID_V4)


class RoomIdTests(SynchronousTestCase):
    """Room v12 room IDs from the create event (appendices "Room IDs")."""

    def test_v12_room_id(self) -> None:
        """The room ID is the create event's ID with the sigil C{!}."""
        rv = get_room_version("12")
        pdu = _v12_create()
        event_id = compute_event_id(pdu, rv)
        room_id = room_id_for_create_event(pdu, rv)
        self.assertRegex(room_id, _URLSAFE)
        self.assertEqual(room_id, "!" + event_id[1:])
        self.assertEqual(room_id_for_create_event(pdu, rv, event_id=event_id), room_id)
        self.assertNotIn(":", room_id)

    def test_v12_room_id_depends_on_create(self) -> None:
        """Two different create events make two different rooms."""
        rv = get_room_version("12")
        other = _v12_create()
        other["origin_server_ts"] += 1
        self.assertNotEqual(
            room_id_for_create_event(_v12_create(), rv), room_id_for_create_event(other, rv)
        )

    def test_older_versions(self) -> None:
        """Before v12 the create event carries its room ID."""
        pdu = parse_json(JKI_CREATE_JSON, strict=False)
        self.assertEqual(
            room_id_for_create_event(pdu, get_room_version("11")), "!uXDCzlYgCTHtiWCkEx:jki.re"
        )
        del pdu["room_id"]
        self.assertRaises(InvalidEvent, room_id_for_create_event, pdu, get_room_version("11"))


class MakeEventTests(SynchronousTestCase):
    """L{make_event}."""

    def test_hash_id(self) -> None:
        """The event wraps the PDU without copying and has the computed ID."""
        pdu = parse_json(JKI_CREATE_JSON, strict=False)
        rv = get_room_version("5")
        event = make_event(pdu, rv)
        self.assertIsInstance(event, Event)
        self.assertIs(event.pdu, pdu)
        self.assertEqual(event.event_id, JKI_CREATE_ID_V4)
        self.assertIs(event.room_version, rv)

    def test_server_made_id(self) -> None:
        """In v1-2 the event_id key is used."""
        event = make_event({"event_id": "$x:y", "type": "t"}, get_room_version("1"))
        self.assertEqual(event.event_id, "$x:y")

    def test_v12_create_untouched(self) -> None:
        """A v12 create event gets no room_id added."""
        pdu = _v12_create()
        event = make_event(pdu, get_room_version("12"))
        self.assertIsNone(event.room_id)
        self.assertNotIn("room_id", pdu)
