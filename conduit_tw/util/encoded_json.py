"""
Response JSON with parts encoded once and spliced into many bodies.

A message in a big room wakes every member's /sync with the same timeline
section; encoding it once and copying its bytes into each response is
cheaper than serialising and encoding it per member (docs/architecture.md,
"Send path and fan-out"). Such a part is an L{Encoded}: a read-only
mapping (code that reads a body sees its content) that carries its
encoding as a L{Template}, the bytes with holes for C{unsigned.age}
values, filled in when the body is encoded so every response says its own
ages, as if it had been serialised then.

L{encode_json} encodes a body in one pass of the C encoder, which hands
each L{Encoded} to its C{default} hook; the hook answers a marker string
(a random per-process nonce, so no client-supplied string is expected to
equal it) that is then replaced by the rendered bytes. If the encoded text
holds the marker more often than there were parts (a string that happens
to contain it), the body is encoded again without splicing.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import c_encode_basestring as _c_basestring  # type: ignore[attr-defined]
from json.encoder import py_encode_basestring
from typing import Any, Callable, Iterable, Iterator

_plain_default = json.JSONEncoder().default
#: JSON string literal of a str, unescaped non-ASCII (C, or Python without _json).
c_encode_basestring = _c_basestring or py_encode_basestring
_MARK = "\x00" + secrets.token_hex(16) + "\x00"
_MARK_JSON = c_encode_basestring(_MARK)
_state = threading.local()


class Template:
    """Encoded JSON with holes for ages: C{chunks[0] age(stamps[0]) chunks[1] ...}."""

    __slots__ = ("chunks", "stamps")

    def __init__(self, chunks: list[bytes], stamps: list[int]) -> None:
        self.chunks = chunks
        self.stamps = stamps

    def render(self, now_ms: int) -> bytes:
        """The bytes with each hole filled with C{max(0, now_ms - stamp)}."""
        chunks = self.chunks
        if not self.stamps:
            return chunks[0]
        parts = [chunks[0]]
        for stamp, chunk in zip(self.stamps, chunks[1:]):
            parts.append(b"%d" % max(0, now_ms - stamp))
            parts.append(chunk)
        return b"".join(parts)


class Encoded(Mapping[str, Any]):
    """
    A JSON object (C{value}, never changed once built) whose encoding is
    C{template}, rendered at C{clock()} milliseconds.
    """

    __slots__ = ("value", "template", "clock")

    def __init__(self, value: dict[str, Any], template: Template, clock: Callable[[], int]) -> None:
        self.value = value
        self.template = template
        self.clock = clock

    def __getitem__(self, key: str) -> Any:
        return self.value[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.value)

    def __len__(self) -> int:
        return len(self.value)

    def __repr__(self) -> str:
        return f"Encoded({self.value!r})"


def _splicing_default(obj: Any) -> Any:
    if type(obj) is Encoded:
        _state.parts.append(obj)
        return _MARK
    return _plain_default(obj)


def _unspliced_default(obj: Any) -> Any:
    if type(obj) is Encoded:
        return obj.value
    return _plain_default(obj)


def _c_encoder(default: Callable[[Any], Any]) -> Callable[[Any, int], Any]:
    # Made once (JSONEncoder.encode makes one per call): no circular-reference
    # markers (bodies are trees), compact separators, UTF-8 (no \u escapes of
    # non-ASCII), NaN and infinities refused.
    if c_make_encoder is None:  # an interpreter without the _json accelerator
        encoder = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False,
            check_circular=False, default=default,
        )
        return lambda obj, _level: encoder.iterencode(obj)
    return c_make_encoder(None, default, c_encode_basestring, None, ":", ",", False, False, False)


_splicing = _c_encoder(_splicing_default)
_unspliced = _c_encoder(_unspliced_default)


def encode_str(obj: Any) -> str:
    """
    Compact JSON text, as C{json.dumps(obj, ensure_ascii=False,
    separators=(",", ":"), allow_nan=False)}; L{Encoded} parts as their content.
    """
    if isinstance(obj, str):
        return c_encode_basestring(obj)
    return "".join(_unspliced(obj, 0))


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON (L{encode_str}), with L{Encoded} parts spliced in as rendered."""
    if isinstance(obj, str):
        return c_encode_basestring(obj).encode("utf-8")
    parts: list[Encoded] = []
    _state.parts = parts
    try:
        text = "".join(_splicing(obj, 0))
    finally:
        _state.parts = None
    if not parts:
        return text.encode("utf-8")
    pieces = text.split(_MARK_JSON)
    if len(pieces) != len(parts) + 1:
        return encode_str(obj).encode("utf-8")
    out = [pieces[0].encode("utf-8")]
    for part, piece in zip(parts, pieces[1:]):
        out.append(part.template.render(part.clock()))
        out.append(piece.encode("utf-8"))
    return b"".join(out)


def _event_parts(event: dict[str, Any]) -> tuple[bytes, int, bytes] | None:
    """
    One client-format event as (bytes before its age, its origin_server_ts,
    bytes after), or None if its only age is not the first key of
    C{unsigned}, its last key (the layout handlers/serialize.py writes).
    """
    unsigned = event.get("unsigned")
    if not isinstance(unsigned, dict) or next(reversed(event)) != "unsigned":
        return None
    if next(iter(unsigned), None) != "age":
        return None
    stamp = event.get("origin_server_ts")
    if type(stamp) is not int:
        return None
    head = {k: v for k, v in event.items() if k != "unsigned"}
    rest = {k: v for k, v in unsigned.items() if k != "age"}
    before = encode_str(head)[:-1] + ',"unsigned":{"age":'
    after = ("," + encode_str(rest)[1:] if rest else "}") + "}"
    return before.encode("utf-8"), stamp, after.encode("utf-8")


def events_template(events: Iterable[dict[str, Any]], after: dict[str, Any]) -> Template | None:
    """
    The template of C{{"events": events, **after}} with a hole for the age
    of each event (None if an event has another layout, see L{_event_parts}).
    """
    chunks: list[bytes] = []
    stamps: list[int] = []
    current = b'{"events":['
    for i, event in enumerate(events):
        parts = _event_parts(event)
        if parts is None:
            return None
        before, stamp, tail = parts
        chunks.append(current + (b"," if i else b"") + before)
        stamps.append(stamp)
        current = tail
    current += b"]" + (b"," + encode_str(after)[1:].encode("utf-8") if after else b"}")
    chunks.append(current)
    return Template(chunks, stamps)
