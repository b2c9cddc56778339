"""
Filters uploaded by local users (client-server-api "Filtering",
C{POST /user/{userId}/filter}).

Layout::

    userfilterid_filter  user_id 0xFF filter_id -> canonical JSON of the filter

Filter IDs are content addressed: the first 16 hex digits of the sha256 of
the filter's canonical JSON. Uploading the same filter twice gives the
same ID (no duplicate rows from clients that upload on every start), an
ID never starts with C{{} as the spec requires, and no counter is needed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from conduit_tw.events.canonical_json import encode_canonical_json
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import join

FILTERS = "userfilterid_filter"


class FilterStore:
    """Stored filter definitions."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.tree = db.open_tree(FILTERS)

    async def add(self, user_id: str, definition: dict[str, Any]) -> str:
        """Store a (validated) filter and return its ID."""
        raw = encode_canonical_json(definition)
        filter_id = hashlib.sha256(raw).hexdigest()[:16]
        key = join(user_id, filter_id)
        if await self.tree.get(key) is None:
            await self.tree.insert(key, raw)
        return filter_id

    async def get(self, user_id: str, filter_id: str) -> dict[str, Any] | None:
        """A stored filter, or None."""
        if len(filter_id.encode("utf-8")) > 64:
            return None
        raw = await self.tree.get(join(user_id, filter_id))
        return json.loads(raw) if raw is not None else None
