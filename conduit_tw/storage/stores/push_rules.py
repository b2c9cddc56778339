"""
Per-user push rule changes (client-server-api "Push Rules"). Only what the
user changed is stored; the server-default rules come from
L{conduit_tw.handlers.push_rules_default} at read time, so a server upgrade
that changes the defaults reaches every user.

Layout::

    userid_pushrules  user_id -> JSON {
        "user":     {kind: [rule, ...]},   # user-defined rules, most important first
        "defaults": {rule_id: {"enabled": bool, "actions": [...]}}  # overrides of defaults
    }

A rule is stored as the client API shows it (C{rule_id}, C{enabled},
C{actions}, and C{conditions} or C{pattern}), without C{default}.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from conduit_tw.storage.interfaces import IKeyValueDatabase, IWriteBatch

if TYPE_CHECKING:
    from conduit_tw.storage.stores.account_data import AccountDataStore

PUSH_RULES = "userid_pushrules"


def empty_delta() -> dict[str, Any]:
    """The delta of a user who changed nothing."""
    return {"user": {}, "defaults": {}}


class PushRulesStore:
    """The C{userid_pushrules} tree."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.tree = db.open_tree(PUSH_RULES)

    async def get(self, user_id: str) -> dict[str, Any]:
        """The user's delta (empty if they changed nothing)."""
        raw = await self.tree.get(user_id.encode("utf-8"))
        return json.loads(raw) if raw is not None else empty_delta()

    async def put_with_account_data(
        self,
        user_id: str,
        delta: dict[str, Any],
        account_data: "AccountDataStore",
        event_type: str,
        content: dict[str, Any],
        position: int,
    ) -> None:
        """
        Replace the user's delta and, in the same batch, their global
        account data entry C{event_type} (the rendered rule set) at
        C{position}, so the two never disagree.
        """
        batch = self.db.batch()
        self.put_in_batch(batch, user_id, delta)
        await account_data.put_in_batch(batch, user_id, None, event_type, content, position)
        await self.db.write(batch)

    def put_in_batch(self, batch: IWriteBatch, user_id: str, delta: dict[str, Any]) -> None:
        """Replace the user's delta in C{batch}."""
        batch.put(
            PUSH_RULES,
            user_id.encode("utf-8"),
            json.dumps(delta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        )
