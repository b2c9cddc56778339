"""
OpenID tokens (client-server-api "OpenID"; openid.yaml): tokens our users
hand to third-party services, which exchange them for the user ID with
C{GET /_matrix/federation/v1/openid/userinfo}.

Layout (C{·} is 0xFF; u64 is 8 big-endian bytes)::

    openidtoken_info     sha256(token)                -> JSON {"user_id", "expires_at"}
    openidtoken_expiry   u64 expires_at · sha256(token) -> b""

Only the SHA-256 of a token is stored, as for access tokens. The expiry
index lets every new token remove a few expired ones in its own batch, and
the periodic housekeeping all of them (L{OpenIdTokenStore.purge_expired}),
so tokens nobody exchanged do not pile up.
"""

from __future__ import annotations

import json

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, u64
from conduit_tw.storage.stores.expiry import purge_before
from conduit_tw.storage.stores.tokens import hash_token

INFO = "openidtoken_info"
EXPIRY = "openidtoken_expiry"

#: Expired tokens removed with each new one.
_PRUNE = 20


class OpenIdTokenStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.info = db.open_tree(INFO)
        self.expiry = db.open_tree(EXPIRY)

    async def add(self, token: str, user_id: str, expires_at: int, now: int) -> None:
        """Store a new token valid until C{expires_at} (ms); prune expired ones."""
        h = hash_token(token)
        batch = self.db.batch()
        for key, _ in await self.expiry.iter_range(b"", u64(now), limit=_PRUNE):
            batch.delete(EXPIRY, key)
            batch.delete(INFO, key[9:])
        value = json.dumps({"user_id": user_id, "expires_at": expires_at}).encode("utf-8")
        batch.put(INFO, h, value)
        batch.put(EXPIRY, u64(expires_at) + SEP + h, b"")
        await self.db.write(batch)

    async def user_for(self, token: str, now: int) -> str | None:
        """The user a token was issued to, or None if unknown or expired at C{now} (ms)."""
        raw = await self.info.get(hash_token(token))
        if raw is None:
            return None
        info = json.loads(raw)
        if info["expires_at"] <= now:
            return None
        return info["user_id"]

    async def purge_expired(self, now: int) -> int:
        """Delete every token expired at C{now} (ms); returns how many."""
        return await purge_before(self.db, self.expiry, EXPIRY, INFO, now, skip=9)
