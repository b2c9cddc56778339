"""
Registration tokens made by the admins (C{!admin tokens create}), beyond
the static C{registration_token} of the config (client-server-api "Token-
authenticated registration").

Layout::

    registrationtokens   token -> compact JSON {"uses_allowed": int|null,
                                  "completed": int, "expiry_time": ms|null,
                                  "created_ts": ms}

Tokens are few and checked synchronously while building the registration
flows, so they are read into memory by L{load} and kept in step with
every write.
"""

from __future__ import annotations

import json
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase

TOKENS = "registrationtokens"


class RegistrationTokenStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.tree = db.open_tree(TOKENS)
        self._tokens: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        """Read every token (call once at start)."""
        rows = await self.tree.scan_prefix(b"")
        self._tokens = {k.decode("utf-8"): json.loads(v) for k, v in rows}

    def has_any(self) -> bool:
        """Whether any token exists (used or not)."""
        return bool(self._tokens)

    def get(self, token: str) -> dict[str, Any] | None:
        """A token's record."""
        info = self._tokens.get(token)
        return dict(info) if info is not None else None

    def all(self) -> dict[str, dict[str, Any]]:
        """Every token with its record."""
        return {t: dict(i) for t, i in sorted(self._tokens.items())}

    def valid(self, token: str, now_ms: int) -> bool:
        """Whether C{token} exists, has not expired and has uses left."""
        info = self._tokens.get(token)
        if info is None:
            return False
        if info.get("expiry_time") is not None and now_ms >= info["expiry_time"]:
            return False
        uses = info.get("uses_allowed")
        return uses is None or info.get("completed", 0) < uses

    async def _put(self, token: str, info: dict[str, Any]) -> None:
        batch = self.db.batch()
        batch.put(TOKENS, token.encode("utf-8"), json.dumps(info, separators=(",", ":")).encode("utf-8"))
        await self.db.write(batch)
        self._tokens[token] = info

    async def create(
        self, token: str, uses_allowed: int | None, expiry_time: int | None, created_ts: int
    ) -> bool:
        """Add a token; False if it exists already."""
        if token in self._tokens:
            return False
        await self._put(
            token,
            {"uses_allowed": uses_allowed, "completed": 0, "expiry_time": expiry_time,
             "created_ts": created_ts},
        )
        return True

    async def use(self, token: str) -> None:
        """Count one completed registration with C{token}."""
        info = self._tokens.get(token)
        if info is not None:
            await self._put(token, {**info, "completed": info.get("completed", 0) + 1})

    async def delete(self, token: str) -> bool:
        """Remove a token; False if there was none."""
        if token not in self._tokens:
            return False
        batch = self.db.batch()
        batch.delete(TOKENS, token.encode("utf-8"))
        await self.db.write(batch)
        del self._tokens[token]
        return True
