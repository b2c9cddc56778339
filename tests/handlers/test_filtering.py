"""Filter validation and matching (client-server-api "Filtering")."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.errors import MatrixError
from conduit_tw.handlers.filtering import (
    EventFilter,
    Filter,
    InvalidFilter,
    apply_event_fields,
    validate_filter,
)

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10, "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"], "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"], "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def ev(type: str = "m.room.message", sender: str = "@a:x", room_id: str = "!r:x", **content: Any) -> dict[str, Any]:
    return {"type": type, "sender": sender, "room_id": room_id, "content": content}


class ValidationTests(SynchronousTestCase):
    """validate_filter against the schema."""

    def test_spec_example_and_every_field(self) -> None:
        validate_filter(SPEC_EXAMPLE)
        validate_filter({})
        validate_filter({
            "account_data": {"types": ["m.*"], "limit": 0},
            "room": {
                "rooms": ["!a:x"], "not_rooms": [], "include_leave": True,
                "account_data": {"not_types": ["x"]},
                "timeline": {
                    "lazy_load_members": True, "include_redundant_members": False,
                    "unread_thread_notifications": True, "contains_url": True,
                    "senders": ["@a:x"], "rooms": ["!a:x"],
                },
            },
            "event_format": "federation",
            "org.example.unknown": 1,
        })

    def test_invalid(self) -> None:
        bad = [
            [],
            {"event_fields": "type"},
            {"event_fields": [1]},
            {"event_format": "xml"},
            {"presence": []},
            {"presence": {"limit": -1}},
            {"presence": {"limit": 1.5}},
            {"presence": {"limit": True}},
            {"presence": {"types": "m.presence"}},
            {"presence": {"senders": ["alice"]}},
            {"account_data": {"not_senders": [None]}},
            {"room": []},
            {"room": {"rooms": ["#alias:x"]}},
            {"room": {"include_leave": "yes"}},
            {"room": {"timeline": {"lazy_load_members": 1}}},
            {"room": {"timeline": {"contains_url": "true"}}},
            {"room": {"state": {"not_rooms": ["@u:x"]}}},
            {"room": {"ephemeral": None}},
        ]
        for definition in bad:
            with self.subTest(definition=definition):
                e = self.assertRaises(InvalidFilter, validate_filter, definition)
                self.assertIsInstance(e, MatrixError)
                self.assertEqual((e.code, e.errcode), (400, "M_BAD_JSON"))


class MatchingTests(SynchronousTestCase):
    """EventFilter and Filter."""

    def test_empty_filter_includes_everything(self) -> None:
        f = EventFilter(None)
        self.assertTrue(f.matches(ev()))
        self.assertEqual(len(f.filter([ev(), ev("x")])), 2)

    def test_types_with_wildcards(self) -> None:
        f = EventFilter({"types": ["m.room.*", "org.example.exact"]})
        self.assertTrue(f.matches(ev("m.room.message")))
        self.assertTrue(f.matches(ev("m.room.")))
        self.assertTrue(f.matches(ev("org.example.exact")))
        self.assertFalse(f.matches(ev("m.roomx")))
        self.assertFalse(f.matches(ev("org.example.exactly")))
        middle = EventFilter({"types": ["m.*.message"]})
        self.assertTrue(middle.matches(ev("m.room.message")))
        self.assertFalse(middle.matches(ev("m.room.member")))
        self.assertFalse(EventFilter({"types": []}).matches(ev()), "empty list includes nothing")

    def test_wildcards_agree_with_regex_reference(self) -> None:
        """Every short pattern and type: the same answer as the C{.*} regex translation."""
        patterns = ["".join(p) for n in range(1, 6) for p in itertools.product("ab*.", repeat=n)]
        types = ["".join(t) for n in range(6) for t in itertools.product("ab.", repeat=n)]
        for pattern in (p for p in patterns if "*" in p):
            reference = re.compile(".*".join(re.escape(x) for x in pattern.split("*")), re.DOTALL)
            f = EventFilter({"types": [pattern]})
            for t in types:
                self.assertEqual(f.matches(ev(t)), reference.fullmatch(t) is not None, (pattern, t))

    def test_wildcards_cannot_backtrack_exponentially(self) -> None:
        """A filter of many C{*} used to compile to a regex that backtracks for ever."""
        f = EventFilter({"types": ["*a*a*a*a*a*a*a*!"], "not_types": ["*b*b*b*b*b*b*b*!"]})
        started = time.monotonic()
        self.assertFalse(f.matches(ev("a" * 2000)))
        self.assertTrue(f.matches(ev("a" * 2000 + "!")))
        self.assertFalse(f.matches(ev("ab" * 1000 + "!")))
        self.assertLess(time.monotonic() - started, 1.0)

    def test_not_lists_win(self) -> None:
        f = EventFilter({
            "types": ["m.*"], "not_types": ["m.room.member"],
            "senders": ["@a:x", "@b:x"], "not_senders": ["@b:x"],
            "rooms": ["!r:x", "!s:x"], "not_rooms": ["!s:x"],
        })
        self.assertTrue(f.matches(ev()))
        self.assertFalse(f.matches(ev("m.room.member")))
        self.assertFalse(f.matches(ev(sender="@b:x")))
        self.assertFalse(f.matches(ev(sender="@c:x")))
        self.assertFalse(f.matches(ev(room_id="!s:x")))
        self.assertFalse(f.matches(ev(room_id="!t:x")))
        self.assertTrue(EventFilter({"not_types": ["*"]}).matches(ev()) is False)

    def test_fields_only_apply_when_present(self) -> None:
        f = EventFilter({"senders": ["@a:x"], "rooms": ["!r:x"]})
        self.assertTrue(f.matches({"type": "m.tag", "content": {}}), "account data has no sender")

    def test_contains_url(self) -> None:
        with_url = ev(url="mxc://x/y")
        self.assertTrue(EventFilter({"contains_url": True}).matches(with_url))
        self.assertFalse(EventFilter({"contains_url": True}).matches(ev()))
        self.assertFalse(EventFilter({"contains_url": False}).matches(with_url))
        self.assertTrue(EventFilter({"contains_url": False}).matches(ev()))

    def test_limits_and_flags(self) -> None:
        f = Filter(SPEC_EXAMPLE)
        self.assertEqual(f.room_timeline.get_limit(20, 100), 10)
        self.assertEqual(f.room_state.get_limit(20, 100), 20)
        self.assertEqual(EventFilter({"limit": 5000}).get_limit(20, 100), 100)
        self.assertEqual(EventFilter({"limit": 0}).get_limit(20, 100), 0)
        lazy = Filter({"room": {"state": {"lazy_load_members": True}, "include_leave": True}})
        self.assertTrue(lazy.room_state.lazy_load_members)
        self.assertFalse(lazy.room_state.include_redundant_members)
        self.assertFalse(lazy.room_timeline.lazy_load_members)
        self.assertTrue(lazy.include_leave)
        self.assertEqual(f.event_format, "client")

    def test_sections(self) -> None:
        f = Filter(SPEC_EXAMPLE)
        self.assertTrue(f.room_state.matches(ev("m.room.name")))
        self.assertFalse(f.room_state.matches(ev("m.room.name", room_id="!726s6s6q:example.com")))
        self.assertFalse(f.room_timeline.matches(ev(sender="@spam:example.com")))
        self.assertTrue(f.room_ephemeral.matches({"type": "m.typing", "content": {"user_ids": []}}))
        self.assertFalse(f.presence.matches({"type": "m.presence", "sender": "@alice:example.com", "content": {}}))
        self.assertTrue(f.account_data.matches({"type": "anything", "content": {}}))
        rooms = Filter({"room": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"]}})
        self.assertEqual([r for r in ("!a:x", "!b:x", "!c:x") if rooms.allows_room(r)], ["!a:x"])

    def test_event_fields(self) -> None:
        event = {"type": "m.room.message", "sender": "@a:x", "event_id": "$e",
                 "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "x"}}}
        self.assertEqual(
            apply_event_fields(event, ["type", "content.body", "content.m\\.relates_to", "nope.x"]),
            {"type": "m.room.message", "content": {"body": "hi", "m.relates_to": {"rel_type": "x"}}},
        )
        self.assertEqual(Filter(SPEC_EXAMPLE).project(event),
                         {"type": "m.room.message", "sender": "@a:x", "content": event["content"]})
        self.assertIs(Filter({}).project(event), event)
