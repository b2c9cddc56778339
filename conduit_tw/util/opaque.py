"""Opaque pagination tokens (appendices "Opaque identifiers") carrying a small JSON object."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from conduit_tw.errors import Codes, MatrixError


def encode_token(data: dict[str, Any]) -> str:
    """C{data} as an unpadded URL-safe base64 token."""
    raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """The object of a token from L{encode_token}; 400 M_INVALID_PARAM for anything else."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        data = None
    if not isinstance(data, dict):
        raise MatrixError(400, Codes.INVALID_PARAM, "Unknown pagination token")
    return data
