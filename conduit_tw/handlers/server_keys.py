"""
Our own server keys as published at C{GET /_matrix/key/v2/server}
(server-server-api "Publishing Keys").

The signed response is built once and reused until half of its validity
has passed, so serving it costs no signing per request.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from nacl.signing import SigningKey

from conduit_tw.events.hashes import encode_base64
from conduit_tw.events.signing import key_id_of, sign_json

#: How long other servers may cache our keys. The spec asks servers to
#: keep C{valid_until_ts} short enough that a key change propagates; a
#: week is the upper bound it suggests for notaries, a day is cautious.
KEY_VALIDITY_MS = 24 * 3600 * 1000


class ServerKeys:
    """Publishes the server's verify key, signed by itself."""

    def __init__(self, server_name: str, signing_key: SigningKey, clock_ms: Callable[[], int]):
        self.server_name = server_name
        self.signing_key = signing_key
        self.key_id = key_id_of(signing_key)
        self.verify_key_base64 = encode_base64(bytes(signing_key.verify_key))
        self._clock_ms = clock_ms
        self._cached: bytes | None = None
        self._refresh_at = 0

    def response(self) -> dict[str, Any]:
        """The signed key response object (fresh)."""
        valid_until = self._clock_ms() + KEY_VALIDITY_MS
        body = {
            "server_name": self.server_name,
            "valid_until_ts": valid_until,
            "verify_keys": {self.key_id: {"key": self.verify_key_base64}},
            "old_verify_keys": {},
        }
        return sign_json(body, self.signing_key, self.server_name)

    def response_bytes(self) -> bytes:
        """The signed response as JSON bytes, re-signed at half-life."""
        now = self._clock_ms()
        if self._cached is None or now >= self._refresh_at:
            self._cached = json.dumps(self.response(), separators=(",", ":")).encode()
            self._refresh_at = now + KEY_VALIDITY_MS // 2
        return self._cached
