"""
Canonical JSON: the byte encoding that hashes and signatures are computed over.

appendices "Canonical JSON": the shortest UTF-8 encoding with object keys
sorted by code point, no insignificant whitespace, and only the mandatory
string escapes (C{"}, C{\\}, and C{\\b \\t \\n \\f \\r} or C{\\u00XX} for other
ASCII control characters). Python's C{json} module with C{ensure_ascii=False}
produces exactly that grammar (it escapes control characters as lowercase
C{\\u00xx}, and nothing else), so encoding stays in the C accelerator.

Room versions 6+ enforce the format strictly (rooms/fragments
v6-canonical-json): numbers must be integers in M{[-(2**53)+1, (2**53)-1]}.
Versions 1-5 must tolerate events that break this, so the lax mode accepts
floats and large integers, and encodes floats as Python does (C{repr}), which
is what the servers that created such events hashed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Smallest integer canonical JSON allows (appendices "Canonical JSON").
CANONICAL_INT_MIN = -(2**53) + 1
#: Largest integer canonical JSON allows.
CANONICAL_INT_MAX = 2**53 - 1

# Any integer literal of at most 15 digits is within the canonical range,
# so the strict parser only converts longer ones to check them.
_SAFE_INT_DIGITS = 15


class InvalidJson(ValueError):
    """
    The JSON text or value is not acceptable: malformed, duplicate keys,
    NaN/Infinity, invalid Unicode, or (strict mode) a float or an integer
    outside the canonical range. C{str(error)} says which.
    """


_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    sort_keys=True,
)
_encode = _ENCODER.encode


def encode_canonical_json(value: Any, strict: bool = False) -> bytes:
    """
    Encode a JSON value as canonical JSON bytes.

    @param value: dicts (string keys), lists/tuples, strings, ints, bools,
        C{None}; floats only outside strict mode unless integral.
    @param strict: apply room v6+ rules (C{room_version.strict_canonical_json}):
        integral floats such as C{1e10} are written as integers (appendices
        "Canonical JSON" examples), other floats and integers outside
        L{CANONICAL_INT_MIN}..L{CANONICAL_INT_MAX} raise L{InvalidJson}.
        The lax mode writes floats as Python does, for room v1-5 events.
    @raise InvalidJson: NaN/Infinity, lone surrogates, or a strict-mode
        violation.
    """
    if strict:
        value = _strictify(value)
    try:
        return _encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson("string is not valid Unicode (lone surrogate)") from None
    except ValueError as e:  # NaN / Infinity
        raise InvalidJson(str(e)) from None


def check_canonical_value(value: Any) -> None:
    """
    Check that a JSON value obeys the strict canonical JSON number rules
    (no floats, integers within the canonical range) without encoding it.

    Integral floats are refused too: a value received with them was not
    canonical on the wire.

    @raise InvalidJson: naming the first offending value.
    """
    stack = [value]
    pop = stack.pop
    push = stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is dict:
            push(v.values())
        elif t is list or t is tuple:
            push(v)
        elif t is int:
            if not CANONICAL_INT_MIN <= v <= CANONICAL_INT_MAX:
                raise InvalidJson("integer out of canonical JSON range: %d" % v)
        elif isinstance(v, float):
            raise InvalidJson("float values are not allowed: %r" % v)
        elif isinstance(v, (str, bool)):
            continue
        elif isinstance(v, int):
            if not CANONICAL_INT_MIN <= v <= CANONICAL_INT_MAX:
                raise InvalidJson("integer out of canonical JSON range: %d" % v)
        elif isinstance(v, dict):
            push(v.values())
        elif isinstance(v, (list, tuple)):
            push(v)
        else:
            raise InvalidJson("not a JSON value: %r" % (v,))


def _strictify(value: Any) -> Any:
    """
    Return C{value} unchanged if it is strictly canonical, a copy with
    integral floats turned into ints if needed, or raise L{InvalidJson}.
    """
    t = type(value)
    if t is dict:
        out = None
        for k, v in value.items():
            nv = _strictify(v)
            if nv is not v:
                if out is None:
                    out = dict(value)
                out[k] = nv
        return value if out is None else out
    if t is list or t is tuple:
        out_l = None
        for i, v in enumerate(value):
            nv = _strictify(v)
            if nv is not v:
                if out_l is None:
                    out_l = list(value)
                out_l[i] = nv
        return value if out_l is None else out_l
    if t is float:
        if math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise InvalidJson("float values are not allowed: %r" % value)
    if t is not bool and isinstance(value, int):
        if not CANONICAL_INT_MIN <= value <= CANONICAL_INT_MAX:
            raise InvalidJson("integer out of canonical JSON range: %d" % value)
    return value


# -- parsing -----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise InvalidJson("%s is not valid JSON" % name)


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise InvalidJson("duplicate key in object: %r" % k)
            seen.add(k)
    return d


def _lax_float(s: str) -> float:
    f = float(s)
    if not math.isfinite(f):
        raise InvalidJson("number out of range: %s" % s)
    return f


def _strict_float(s: str) -> Any:
    raise InvalidJson("float values are not allowed: %s" % s)


def _strict_int(s: str) -> int:
    v = int(s)
    if len(s) > _SAFE_INT_DIGITS and not CANONICAL_INT_MIN <= v <= CANONICAL_INT_MAX:
        raise InvalidJson("integer out of canonical JSON range: %s" % s)
    return v


_LAX_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_pairs,
    parse_constant=_reject_constant,
    parse_float=_lax_float,
)
_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_pairs,
    parse_constant=_reject_constant,
    parse_float=_strict_float,
    parse_int=_strict_int,
)

# A \\u escape of a UTF-16 surrogate; only then can a decoded string hold a
# lone surrogate, so only then do we walk the result to look for one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(data: bytes | str, strict: bool) -> Any:
    """
    Parse JSON text received from the network.

    Refuses invalid UTF-8, duplicate object keys, C{NaN}/C{Infinity} and
    numbers that overflow a double, and lone UTF-16 surrogates (they cannot
    be re-encoded as canonical JSON). In strict mode (room v6+, or any API
    that requires canonical JSON) also refuses floats (any number written
    with a fraction or exponent) and integers outside the canonical range.

    @param data: UTF-8 bytes (or an already decoded string).
    @param strict: apply the room v6+ number rules.
    @raise InvalidJson: with a message saying what is wrong.
    """
    if isinstance(data, str):
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson("string is not valid Unicode (lone surrogate)") from None
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidJson("invalid UTF-8: %s" % e) from None
    decoder = _STRICT_DECODER if strict else _LAX_DECODER
    try:
        value = decoder.decode(text)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson("JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, int() digit limit
        raise InvalidJson(str(e)) from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        _check_no_lone_surrogates(value)
    return value


def _check_no_lone_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidJson(
                    "string is not valid Unicode (lone surrogate)"
                ) from None
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
