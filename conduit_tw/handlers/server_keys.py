"""
Our own server keys as published at C{GET /_matrix/key/v2/server}
(server-server-api "Publishing Keys").

The signed response is built once and reused until half of its validity
has passed, so serving it costs no signing per request. L{ServerKeys.rotate}
replaces the signing key (the admin room's key rotation): the old verify
key is then published under C{old_verify_keys} with its C{expired_ts}, so
the signatures of events it made can still be checked.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from nacl.signing import SigningKey

from conduit_tw.events.hashes import encode_base64
from conduit_tw.events.signing import key_id_of, sign_json

if TYPE_CHECKING:
    from conduit_tw.storage.stores.globals import GlobalsStore

#: How long other servers may cache our keys. The spec asks servers to
#: keep C{valid_until_ts} short enough that a key change propagates; a
#: week is the upper bound it suggests for notaries, a day is cautious.
KEY_VALIDITY_MS = 24 * 3600 * 1000


class ServerKeys:
    """
    Publishes the server's verify keys, signed by itself.

    @ivar signing_key: the current signing key (read at each use: it
        changes on L{rotate}).
    @ivar old_verify_keys: key ID -> C{{"key", "expired_ts"}} of our
        replaced keys.
    """

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        clock_ms: Callable[[], int],
        old_verify_keys: dict[str, dict[str, Any]] | None = None,
        store: "GlobalsStore | None" = None,
    ):
        self.server_name = server_name
        self.old_verify_keys = dict(old_verify_keys or {})
        self._store = store
        self._clock_ms = clock_ms
        self._use(signing_key)

    @classmethod
    async def load(
        cls, server_name: str, store: "GlobalsStore", clock_ms: Callable[[], int]
    ) -> "ServerKeys":
        """Our keys as stored (a signing key is created on first start)."""
        signing_key = await store.get_or_create_signing_key()
        return cls(server_name, signing_key, clock_ms, await store.old_verify_keys(), store)

    def _use(self, signing_key: SigningKey) -> None:
        self.signing_key = signing_key
        self.key_id = key_id_of(signing_key)
        self.verify_key_base64 = encode_base64(bytes(signing_key.verify_key))
        self._cached: bytes | None = None
        self._refresh_at = 0

    async def rotate(self) -> str:
        """
        Replace our signing key by a new one, stored durably; the old
        verify key becomes an old verify key that expired now.

        @return: the new key ID.
        """
        if self._store is None:
            raise RuntimeError("ServerKeys without a store cannot rotate")
        now = self._clock_ms()
        old = self.signing_key
        new = await self._store.rotate_signing_key(old, now)
        self.old_verify_keys[self.key_id] = {"key": self.verify_key_base64, "expired_ts": now}
        self._use(new)
        return self.key_id

    def response(self) -> dict[str, Any]:
        """The signed key response object (fresh)."""
        valid_until = self._clock_ms() + KEY_VALIDITY_MS
        body = {
            "server_name": self.server_name,
            "valid_until_ts": valid_until,
            "verify_keys": {self.key_id: {"key": self.verify_key_base64}},
            "old_verify_keys": {k: dict(v) for k, v in self.old_verify_keys.items()},
        }
        return sign_json(body, self.signing_key, self.server_name)

    def response_bytes(self) -> bytes:
        """The signed response as JSON bytes, re-signed at half-life."""
        now = self._clock_ms()
        if self._cached is None or now >= self._refresh_at:
            self._cached = json.dumps(self.response(), separators=(",", ":")).encode()
            self._refresh_at = now + KEY_VALIDITY_MS // 2
        return self._cached
