"""util/encoded_json.py: spliced sections encode as the plain encoder would, ages included."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial import unittest

from conduit_tw.util import encoded_json
from conduit_tw.util.encoded_json import Encoded, encode_json, encode_str, events_template


def plain(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def event(event_id: str, ts: int, age: int, **unsigned: Any) -> dict[str, Any]:
    return {
        "event_id": event_id, "type": "m.room.message",
        "content": {"body": "h\u00e9llo \"\\ \u2028", "n": [1, 2.5, None, True]},
        "sender": "@a:test", "origin_server_ts": ts, "unsigned": {"age": age, **unsigned},
    }


class EncodeTests(unittest.TestCase):
    def test_plain_values_as_json_dumps(self) -> None:
        for value in ({"a": [1, "\u00e9", {"b": None}], "c": 1.5}, [], "x\u0000", 3, None):
            self.assertEqual(encode_json(value), plain(value))
            self.assertEqual(encode_str(value), plain(value).decode("utf-8"))

    def test_nan_refused(self) -> None:
        self.assertRaises(ValueError, encode_json, {"a": float("nan")})

    def test_section_rendered_with_its_age_at_encoding(self) -> None:
        now = [10_000]
        events = [
            event("$1", 9_000, 1_000),
            event("$2", 9_500, 500, prev_content={"x": 1}, prev_sender="@b:test", replaces_state="$0"),
        ]
        after = {"limited": True, "prev_batch": "t5"}
        template = events_template(events, after)
        assert template is not None
        section = Encoded({"events": events, **after}, template, lambda: now[0])
        body = {"next_batch": "s1_0", "rooms": {"join": {"!r:test": {"timeline": section, "n": 0}}}}
        # Built at 10,000 ms: the same bytes as the plain encoding then.
        expected = {"next_batch": "s1_0", "rooms": {"join": {"!r:test": {
            "timeline": {"events": events, **after}, "n": 0}}}}
        self.assertEqual(encode_json(body), plain(expected))
        # Encoded later: the ages are those of the moment of encoding.
        now[0] = 12_345
        decoded = json.loads(encode_json(body))
        ages = [e["unsigned"]["age"] for e in decoded["rooms"]["join"]["!r:test"]["timeline"]["events"]]
        self.assertEqual(ages, [3_345, 2_845])
        self.assertEqual(decoded["rooms"]["join"]["!r:test"]["timeline"]["events"][1]["unsigned"]["prev_content"], {"x": 1})
        # Read as a mapping, it is its content.
        self.assertEqual(section["limited"], True)
        self.assertEqual(dict(section), {"events": events, **after})

    def test_empty_list_and_no_after(self) -> None:
        template = events_template([], {})
        assert template is not None
        self.assertEqual(template.render(0), b'{"events":[]}')

    def test_other_layouts_not_templated(self) -> None:
        moved = event("$1", 1, 1)
        moved["unsigned"] = {"transaction_id": "t", "age": 1}
        self.assertIsNone(events_template([moved], {}))
        projected = {"event_id": "$1", "unsigned": {"age": 1}, "type": "m.room.message"}
        self.assertIsNone(events_template([projected], {}))
        odd_ts = event("$1", 1, 1)
        odd_ts["origin_server_ts"] = 1.5
        self.assertIsNone(events_template([odd_ts], {}))

    def test_marker_in_a_string_falls_back_to_plain(self) -> None:
        events = [event("$1", 1_000, 0)]
        template = events_template(events, {})
        assert template is not None
        section = Encoded({"events": events}, template, lambda: 1_000)
        body = {"s": section, "evil": encoded_json._MARK}
        self.assertEqual(encode_json(body), plain({"s": {"events": events}, "evil": encoded_json._MARK}))


class PurePythonTests(unittest.TestCase):
    def test_without_the_c_accelerator_the_output_is_the_same(self) -> None:
        """An interpreter without _json gets the pure-Python encoder, same bytes."""
        value = {"a": [1, "h\u00e9llo \"\\ \u2028", {"b": None}], "c": 1.5, "d": True}
        fast = encoded_json._c_encoder(encoded_json._unspliced_default)
        self.patch(encoded_json, "c_make_encoder", None)
        slow = encoded_json._c_encoder(encoded_json._unspliced_default)
        self.assertEqual("".join(slow(value, 0)), "".join(fast(value, 0)))
        self.assertEqual("".join(slow(value, 0)).encode("utf-8"), plain(value))
        self.assertRaises(ValueError, lambda: "".join(slow({"x": float("inf")}, 0)))
