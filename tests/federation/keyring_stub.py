"""
An in-memory keyring for tests: the interface the federation transport
relies on (C{get_verify_key}), holding real nacl verify keys.
"""

from __future__ import annotations

from nacl.signing import SigningKey, VerifyKey
from signedjson.key import generate_signing_key, get_verify_key

from conduit_tw.federation.errors import KeyNotFound


class MemoryKeyRing:
    """Verify keys by server name and key ID; records each lookup."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], VerifyKey] = {}
        self.lookups: list[tuple[str, str, int]] = []

    def add_server(self, server_name: str, version: str = "k1") -> SigningKey:
        """A new signing key for C{server_name}, its verify key known here."""
        key = generate_signing_key(version)
        self.keys[(server_name, f"ed25519:{version}")] = get_verify_key(key)
        return key

    async def get_verify_key(
        self, server_name: str, key_id: str, min_valid_until_ts: int = 0
    ) -> VerifyKey:
        self.lookups.append((server_name, key_id, min_valid_until_ts))
        try:
            return self.keys[(server_name, key_id)]
        except KeyError:
            raise KeyNotFound(server_name, key_id) from None
