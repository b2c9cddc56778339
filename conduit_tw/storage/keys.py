"""
Key codec shared by every store: u64 big-endian counters and 0xFF-joined
composite keys, so that byte order is the order we want.
"""

from __future__ import annotations

import hashlib
import struct

SEP = b"\xff"
_U64 = struct.Struct(">Q")


def u64(n: int) -> bytes:
    """Encode C{n} as 8 big-endian bytes (byte order == numeric order)."""
    return _U64.pack(n)


def from_u64(b: bytes) -> int:
    """Decode 8 big-endian bytes."""
    return _U64.unpack(b)[0]


def next_counter(old: bytes | None, tree: str, key: bytes) -> int:
    """
    The value an C{increment} stores: the big-endian u64 C{old} plus one
    (absent counts as 0). Shared by the backends.

    @raise ValueError: when C{old} is not 8 bytes.
    """
    if old is None:
        return 1
    try:
        return _U64.unpack(old)[0] + 1
    except struct.error:
        raise ValueError(
            f"increment: {tree}[{key!r}] holds {len(old)} bytes, not a u64"
        ) from None


def join(*parts: bytes | str) -> bytes:
    """Join key parts with 0xFF (which never occurs in UTF-8 text)."""
    return SEP.join(p.encode("utf-8") if isinstance(p, str) else p for p in parts)


def split(key: bytes) -> list[bytes]:
    """Split a key made with L{join} (only valid when parts hold no 0xFF)."""
    return key.split(SEP)


def prefix_end(prefix: bytes) -> bytes | None:
    """
    The smallest key greater than every key starting with C{prefix}, or
    C{None} if there is none (the prefix is all 0xFF bytes).
    """
    p = bytearray(prefix)
    while p:
        if p[-1] != 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


def digest_part(text: str) -> str:
    """
    A key part standing for a client-chosen string of any length: its
    SHA-256 in hex (64 bytes, never 0xFF), so keys stay under the 511-byte
    limit. The value must then carry the string itself.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
