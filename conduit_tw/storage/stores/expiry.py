"""
Time indexes for records kept for a while and then forgotten (client
transaction IDs): C{u64 ms · record key -> b""}, written in the same
batch as the record, so the records older than a time are one ordered
range and a sweep never scans the records themselves.
"""

from __future__ import annotations

from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import u64

#: Index entries removed per batch by L{purge_before}.
PAGE = 1000


def index_key(ts_ms: int, record_key: bytes) -> bytes:
    """The index entry of a record written at C{ts_ms}."""
    return u64(max(0, ts_ms)) + record_key


async def purge_before(
    db: IKeyValueDatabase, index: Any, index_name: str, record_name: str, before_ms: int,
    skip: int = 8,
) -> int:
    """
    Delete every record (of tree C{record_name}) indexed in C{index} with a
    time before C{before_ms}, and its index entry, a page per batch.
    The record key is the index key after its first C{skip} bytes (the
    time, and a separator if the index has one). Returns how many.
    """
    purged = 0
    while True:
        rows = await index.iter_range(b"", u64(max(0, before_ms)), limit=PAGE)
        if not rows:
            return purged
        batch = db.batch()
        for key, _ in rows:
            batch.delete(index_name, key)
            batch.delete(record_name, key[skip:])
        await db.write(batch)
        purged += len(rows)
        if len(rows) < PAGE:
            return purged

