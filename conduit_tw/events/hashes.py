"""
Content hashes and reference hashes of events.

server-server-api "Calculating the content hash for an event": SHA-256 of
the canonical JSON of the full event without C{unsigned}, C{signatures}
and C{hashes}; stored unpadded-base64 in C{hashes.sha256}.

server-server-api "Calculating the reference hash for an event": SHA-256
of the canonical JSON of the redacted event without C{signatures} and
C{unsigned}; the event ID of room v3+ and the room ID of room v12.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Mapping

from conduit_tw.events.canonical_json import encode_canonical_json
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import RoomVersion

_NOT_IN_CONTENT_HASH = frozenset({"unsigned", "signatures", "hashes"})


def encode_base64(data: bytes, urlsafe: bool = False) -> str:
    """
    Unpadded base64 (appendices "Unpadded Base64"), or its URL-safe variant
    (appendices "URL-safe unpadded Base64").
    """
    enc = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return enc.rstrip(b"=").decode("ascii")


def decode_base64(data: str) -> bytes | None:
    """
    Decode standard base64 with or without padding (appendices "Unpadded
    Base64": decoders SHOULD accept both).

    @return: the bytes, or C{None} if C{data} is not valid base64.
    """
    if not isinstance(data, str):
        return None
    stripped = data.rstrip("=")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """
    Compute the SHA-256 content hash of an event.

    @param pdu: the full (unredacted) event.
    @return: the 32-byte digest.
    """
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_IN_CONTENT_HASH}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def add_content_hash(pdu: dict[str, Any]) -> None:
    """
    Compute the content hash and store it as C{pdu["hashes"]["sha256"]}
    (server-server-api "Adding hashes and signatures to outgoing events").
    Any other hash algorithms in C{hashes} are kept.
    """
    digest = encode_base64(compute_content_hash(pdu))
    hashes = pdu.get("hashes")
    if isinstance(hashes, dict):
        hashes["sha256"] = digest
    else:
        pdu["hashes"] = {"sha256": digest}


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """
    Whether the event's C{hashes.sha256} matches its content.

    A C{False} result means the event must be replaced by its redacted
    form (server-server-api "Validating hashes and signatures on received
    events"), not dropped.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    expected = decode_base64(hashes.get("sha256"))  # type: ignore[arg-type]
    if expected is None:
        return False
    return expected == compute_content_hash(pdu)


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """
    Compute the SHA-256 reference hash of an event.

    @param pdu: the event, full or already redacted (the result is the same).
    @param room_version: decides the redaction algorithm.
    @return: the 32-byte digest.
    """
    redacted = redact_pdu(pdu, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted)).digest()
