"""
Access tokens, looked up with one key read.

Tokens are random strings (C{secrets}) shown to the client once; we store
only their SHA-256, so a copy of the database does not hand out sessions.

Layout::

    accesstoken_info   sha256(token)                 -> JSON TokenInfo
    userdevice_token   user_id 0xFF device_id        -> sha256(token)
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import join


@dataclass(frozen=True)
class TokenInfo:
    """What an access token stands for."""

    user_id: str
    device_id: str
    is_guest: bool = False
    #: Milliseconds since the epoch after which the token is expired (and
    #: answers M_UNKNOWN_TOKEN with soft_logout), or None.
    expires_at: int | None = None
    #: The appservice ID when the token belongs to an appservice.
    appservice_id: str | None = None


def hash_token(token: str) -> bytes:
    """The key a token is stored under."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(prefix: str = "syt") -> str:
    """A fresh opaque token (about 256 bits of randomness)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class TokenStore:
    """Access tokens of user devices."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.info = db.open_tree("accesstoken_info")
        self.by_device = db.open_tree("userdevice_token")

    async def lookup(self, token: str) -> TokenInfo | None:
        """The token's owner, or None if unknown."""
        raw = await self.info.get(hash_token(token))
        if raw is None:
            return None
        return TokenInfo(**json.loads(raw))

    def add_to_batch(self, batch, token: str, info: TokenInfo, old_hash: bytes | None) -> None:
        """
        Record C{token} for its device in C{batch}, replacing the device's
        previous token (whose hash is C{old_hash}).
        """
        key = hash_token(token)
        if old_hash is not None:
            batch.delete("accesstoken_info", old_hash)
        batch.put("accesstoken_info", key, json.dumps(asdict(info)).encode())
        batch.put("userdevice_token", join(info.user_id, info.device_id), key)

    async def device_token_hash(self, user_id: str, device_id: str) -> bytes | None:
        """The hash of the device's current token, if any."""
        return await self.by_device.get(join(user_id, device_id))

    async def set_token(self, token: str, info: TokenInfo) -> None:
        """Make C{token} the device's only access token."""
        old = await self.device_token_hash(info.user_id, info.device_id)
        batch = self.db.batch()
        self.add_to_batch(batch, token, info, old)
        await self.db.write(batch)

    def remove_device_in_batch(self, batch, user_id: str, device_id: str, old_hash: bytes | None) -> None:
        """Invalidate the device's token in C{batch}."""
        if old_hash is not None:
            batch.delete("accesstoken_info", old_hash)
        batch.delete("userdevice_token", join(user_id, device_id))
