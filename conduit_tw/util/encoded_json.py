"""
Response JSON with parts encoded once and spliced into many bodies.

A message in a big room wakes every member's /sync with the same timeline
section; encoding it once and copying its bytes into each response is
cheaper than serialising and encoding it per member (docs/architecture.md,
"Send path and fan-out"). Two dict subclasses carry this through code that
reads bodies as plain dicts:

- L{Encoded}: a JSON object whose encoding is known, as a L{Template}: the
  bytes with holes for C{unsigned.age} values, which are filled in when the
  body is encoded, so every response says its own age exactly as if it had
  been serialised then;
- L{Spliced}: a JSON object with an L{Encoded} (or another L{Spliced})
  somewhere among its values; only these are walked in Python by
  L{encode_json}, everything else goes to the C encoder whole.

Both are dicts holding the same content, so the plain encoder (and any
code that reads the body) sees the same object; only the ages differ, by
the time between building the section and encoding the body.
"""

from __future__ import annotations

import json
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any, Callable, Iterable

_default = json.JSONEncoder().default
#: The C encoder, made once (C{JSONEncoder.encode} makes one per call):
#: no circular-reference markers (bodies are trees), compact separators,
#: UTF-8 (no C{\\u} escapes of non-ASCII), NaN and infinities refused.
_c_encode = c_make_encoder(None, _default, c_encode_basestring, None, ":", ",", False, False, False)


def encode_str(obj: Any) -> str:
    """Compact JSON text, as C{json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)}."""
    if isinstance(obj, str):
        return c_encode_basestring(obj)
    return "".join(_c_encode(obj, 0))


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


class Encoded(dict):
    """A JSON object whose encoding is L{template}, rendered with L{clock} (ms)."""

    __slots__ = ("template", "clock")

    def __init__(self, value: dict[str, Any], template: Template, clock: Callable[[], int]) -> None:
        super().__init__(value)
        self.template = template
        self.clock = clock


class Spliced(dict):
    """A JSON object with L{Encoded} or L{Spliced} values (see the module docstring)."""

    __slots__ = ()


def spliced(obj: dict[str, Any]) -> dict[str, Any]:
    """C{obj} as a L{Spliced} if one of its values is encoded or spliced, else C{obj} itself."""
    for value in obj.values():
        if isinstance(value, (Encoded, Spliced)):
            return Spliced(obj)
    return obj


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON (L{encode_str}), with L{Encoded} parts spliced in."""
    if type(obj) is Spliced:
        return b"".join(_splice(obj, []))
    return encode_str(obj).encode("utf-8")


def _splice(obj: Spliced, out: list[bytes]) -> list[bytes]:
    sep = b"{"
    for key, value in obj.items():
        out.append(sep + c_encode_basestring(key).encode("utf-8") + b":")
        kind = type(value)
        if kind is Encoded:
            out.append(value.template.render(value.clock()))
        elif kind is Spliced:
            _splice(value, out)
        else:
            out.append(encode_str(value).encode("utf-8"))
        sep = b","
    out.append(b"}" if sep == b"," else b"{}")
    return out


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
