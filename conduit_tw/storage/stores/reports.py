"""
Content reports (client-server-api "Reporting content"): kept for the
server's administrators (the admin room will list and act on them).

Layout::

    report  u64 report id -> compact JSON {"kind", "reporter", "room_id",
                             "event_id", "user_id", "reason", "ts"}

C{kind} is C{event}, C{room} or C{user}; the fields that do not apply are
absent. Ids grow by one (the next id is the last key plus one, loaded on
first use), so reports read newest first with one reverse scan.
"""

from __future__ import annotations

import json
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import from_u64, u64

REPORTS = "report"


class ReportStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.tree = db.open_tree(REPORTS)
        self._last: int | None = None

    async def _next_id(self) -> int:
        if self._last is None:
            rows = await self.tree.iter_from(b"\xff" * 8, reverse=True, limit=1)
            last = from_u64(rows[0][0]) if rows else 0
            if self._last is None:  # nobody loaded it meanwhile
                self._last = last
        self._last += 1
        return self._last

    async def add(self, report: dict[str, Any]) -> int:
        """Store a report; returns its id."""
        report_id = await self._next_id()
        raw = json.dumps(report, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        await self.tree.insert(u64(report_id), raw)
        return report_id

    async def get(self, report_id: int) -> dict[str, Any] | None:
        """One report, or None."""
        raw = await self.tree.get(u64(report_id))
        return json.loads(raw) if raw is not None else None

    async def recent(self, limit: int = 50, before: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """Reports newest first, C{(id, report)}, older than id C{before} if given."""
        start = u64(before - 1) if before is not None else b"\xff" * 8
        if before is not None and before <= 1:
            return []
        rows = await self.tree.iter_from(start, reverse=True, limit=limit)
        return [(from_u64(k), json.loads(v)) for k, v in rows]

    async def delete(self, report_id: int) -> None:
        """Forget a report (an administrator dealt with it)."""
        await self.tree.remove(u64(report_id))
