"""
Tests for L{conduit_tw.events.canonical_json}.
"""

from __future__ import annotations

import json

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.events.canonical_json import (
    CANONICAL_INT_MAX,
    CANONICAL_INT_MIN,
    InvalidJson,
    check_canonical_value,
    encode_canonical_json,
    parse_json,
)

# appendices "Canonical JSON" / "Examples": (input text, canonical output).
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
        '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
        '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
    ('{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'),
]


def _grammar_escape(cp: int) -> str:
    """The escape the appendices' ABNF grammar requires for a control char."""
    short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    return short.get(cp, "\\u%04x" % cp)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(CANONICAL_INT_MIN, CANONICAL_INT_MAX)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


class SpecExampleTests(SynchronousTestCase):
    """The examples of appendices "Canonical JSON"."""

    def test_examples(self) -> None:
        """Every example encodes to the spec's canonical form."""
        for text, expected in SPEC_EXAMPLES:
            value = parse_json(text.encode("utf-8"), strict=False)
            self.assertEqual(
                encode_canonical_json(value, strict=True), expected.encode("utf-8")
            )

    def test_examples_strict_parse(self) -> None:
        """All examples but the 1e10 one also pass the strict parser."""
        for text, expected in SPEC_EXAMPLES[:-1]:
            value = parse_json(text.encode("utf-8"), strict=True)
            self.assertEqual(encode_canonical_json(value), expected.encode("utf-8"))

    def test_spec_reference_implementation(self) -> None:
        """Our encoding equals the spec's Python reference code."""
        for text, _ in SPEC_EXAMPLES[:-1]:
            value = json.loads(text)
            reference = json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), sort_keys=True
            ).encode("UTF-8")
            self.assertEqual(encode_canonical_json(value), reference)


class EncodingTests(SynchronousTestCase):
    """Escaping, sorting and number rules of the encoder."""

    def test_control_characters(self) -> None:
        """U+0000-U+001F are escaped exactly as the grammar says."""
        for cp in range(0x20):
            self.assertEqual(
                encode_canonical_json(chr(cp)),
                ('"%s"' % _grammar_escape(cp)).encode("ascii"),
            )

    def test_unescaped(self) -> None:
        """Everything else but C{"} and C{\\} is written raw as UTF-8."""
        s = "\x7f/\u2028\u00e9\U0001f600 !#[]"
        self.assertEqual(encode_canonical_json(s), ('"%s"' % s).encode("utf-8"))
        self.assertEqual(encode_canonical_json('"\\'), b'"\\"\\\\"')

    def test_key_order_by_code_point(self) -> None:
        """Keys sort by code point, including astral ones and case."""
        value = {"\U0001f600": 1, "\uffff": 2, "a": 3, "B": 4, "": 5}
        self.assertEqual(
            encode_canonical_json(value),
            '{"":5,"B":4,"a":3,"\uffff":2,"\U0001f600":1}'.encode("utf-8"),
        )

    def test_strict_integer_range(self) -> None:
        """Strict mode accepts the range bounds and refuses one beyond."""
        for ok in (CANONICAL_INT_MAX, CANONICAL_INT_MIN, 0, True):
            encode_canonical_json([ok], strict=True)
        for bad in (CANONICAL_INT_MAX + 1, CANONICAL_INT_MIN - 1):
            self.assertRaises(InvalidJson, encode_canonical_json, {"a": [bad]}, strict=True)

    def test_strict_floats(self) -> None:
        """Strict mode writes integral floats as ints and refuses others."""
        self.assertEqual(encode_canonical_json([-0.0, 3.0], strict=True), b"[0,3]")
        self.assertRaises(InvalidJson, encode_canonical_json, {"a": 1.5}, strict=True)
        self.assertRaises(InvalidJson, encode_canonical_json, [1e300], strict=True)

    def test_strict_does_not_mutate(self) -> None:
        """Converting integral floats copies instead of changing the input."""
        value = {"a": [1.0]}
        encode_canonical_json(value, strict=True)
        self.assertEqual(type(value["a"][0]), float)

    def test_lax_floats(self) -> None:
        """Lax mode (rooms v1-5) keeps floats and big integers as they are."""
        self.assertEqual(encode_canonical_json([1.5, 2**64]), b"[1.5,18446744073709551616]")

    def test_nan_refused(self) -> None:
        """NaN and infinities are not JSON."""
        for bad in (float("nan"), float("inf"), float("-inf")):
            self.assertRaises(InvalidJson, encode_canonical_json, [bad])

    def test_lone_surrogate_refused(self) -> None:
        """A string that is not valid Unicode cannot be encoded as UTF-8."""
        self.assertRaises(InvalidJson, encode_canonical_json, {"a": "\ud800"})

    @given(json_values)
    def test_roundtrip(self, value: object) -> None:
        """Parsing the encoding gives the value back; encoding is stable."""
        encoded = encode_canonical_json(value, strict=True)
        parsed = parse_json(encoded, strict=True)
        self.assertEqual(parsed, value)
        self.assertEqual(encode_canonical_json(parsed), encoded)
        self.assertEqual(json.loads(encoded), value)


class CheckValueTests(SynchronousTestCase):
    """L{check_canonical_value}."""

    def test_accepted(self) -> None:
        """Nested canonical values pass."""
        check_canonical_value({"a": [1, True, None, "x", {"b": CANONICAL_INT_MIN}]})

    def test_refused(self) -> None:
        """Floats (even integral) and out-of-range ints anywhere fail."""
        for bad in ({"a": [1.0]}, {"a": {"b": 2**53}}, [-(2**53)], {"a": object()}):
            self.assertRaises(InvalidJson, check_canonical_value, bad)


class ParseTests(SynchronousTestCase):
    """L{parse_json} in both modes."""

    def test_accepts_whitespace_and_escapes(self) -> None:
        """Non-canonical but valid JSON is accepted."""
        self.assertEqual(
            parse_json(b' { "a" : [ 1 , "\\u00e9\\ud83d\\ude00" ] } ', strict=True),
            {"a": [1, "\u00e9\U0001f600"]},
        )

    def test_duplicate_keys(self) -> None:
        """Duplicate keys are refused at any depth, in both modes."""
        for strict in (False, True):
            self.assertRaises(InvalidJson, parse_json, b'{"a":1,"a":1}', strict)
            self.assertRaises(InvalidJson, parse_json, b'[{"x":{"a":1,"b":2,"a":3}}]', strict)
        self.assertEqual(parse_json(b'{"a":{"a":1}}', True), {"a": {"a": 1}})

    def test_constants_refused(self) -> None:
        """NaN, Infinity and -Infinity are refused."""
        for bad in (b"NaN", b"[Infinity]", b'{"a":-Infinity}'):
            self.assertRaises(InvalidJson, parse_json, bad, False)

    def test_float_overflow_refused(self) -> None:
        """A number that overflows a double is refused even in lax mode."""
        self.assertRaises(InvalidJson, parse_json, b"[1e400]", False)
        self.assertEqual(parse_json(b"[1.5e3]", False), [1500.0])

    def test_strict_floats_refused(self) -> None:
        """Strict mode refuses fractions and exponents."""
        for bad in (b"1.0", b"[1e10]", b'{"a":-0.5}', b"1E2"):
            self.assertRaises(InvalidJson, parse_json, bad, True)
            parse_json(bad, False)

    def test_strict_int_range(self) -> None:
        """Strict mode refuses integers just outside the canonical range."""
        self.assertEqual(parse_json(b"9007199254740991", True), CANONICAL_INT_MAX)
        self.assertEqual(parse_json(b"-9007199254740991", True), CANONICAL_INT_MIN)
        self.assertEqual(parse_json(b"-0", True), 0)
        for bad in (b"9007199254740992", b"[-9007199254740992]", b"1" + b"0" * 30):
            self.assertRaises(InvalidJson, parse_json, bad, True)
            parse_json(bad, False)

    def test_huge_integer(self) -> None:
        """Integers beyond Python's digit limit are refused, not crashed on."""
        self.assertRaises(InvalidJson, parse_json, b"1" * 5000, False)

    def test_invalid_utf8(self) -> None:
        """Bytes that are not UTF-8 are refused."""
        self.assertRaises(InvalidJson, parse_json, b'"\xff"', False)
        self.assertRaises(InvalidJson, parse_json, b'"\xed\xa0\x80"', False)

    def test_lone_surrogate_escape(self) -> None:
        """A C{\\u} escape of a lone surrogate is refused, in keys too."""
        self.assertRaises(InvalidJson, parse_json, b'"\\ud800"', False)
        self.assertRaises(InvalidJson, parse_json, b'{"\\uDC00":1}', False)
        self.assertRaises(InvalidJson, parse_json, "\"\ud800\"", False)

    def test_syntax_errors(self) -> None:
        """Malformed text and trailing data are refused."""
        for bad in (b"", b"{", b"[1,]", b"{'a':1}", b"[1] [2]", b'"\x01"', b"\xef\xbb\xbf{}"):
            self.assertRaises(InvalidJson, parse_json, bad, False)

    def test_deep_nesting(self) -> None:
        """Pathological nesting raises InvalidJson, not RecursionError."""
        self.assertRaises(InvalidJson, parse_json, b"[" * 100000, False)

    def test_error_is_value_error(self) -> None:
        """Callers may catch ValueError."""
        self.assertTrue(issubclass(InvalidJson, ValueError))
