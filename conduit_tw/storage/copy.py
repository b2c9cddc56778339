"""
Copying a whole database from one backend to another (SQLite, LMDB,
PostgreSQL or any plugin), tree by tree, through the storage interface
only: what moves a server between backends (the command is
L{conduit_tw.copy_database}; docs/deploying/postgresql.md).

  - Every tree the source lists (L{IKeyValueDatabase.tree_names}) is read
    in key order, in pages of L{PAGE} rows, and written to the tree of the
    same name in the target in batches of about L{BATCH_BYTES}; one batch
    is in flight while the next page is read.
  - The target must be empty (no tree holds a key): the copy never merges
    into, or overwrites, existing data.
  - While copying, each tree's row count and SHA-256 over its rows in order
    (L{TreeDigest}) are computed; the verification pass then reads the
    target and the source again and compares both with them, so a row lost
    or altered on the way, or a source that changed during the copy (a
    server still running on it), is reported.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred

from conduit_tw.storage.interfaces import IKeyValueDatabase, IKeyValueTree

#: Rows per read of a tree.
PAGE = 1000
#: A batch is written once it holds this many bytes of keys and values...
BATCH_BYTES = 4 << 20
#: ... or this many rows.
BATCH_ROWS = 5000

_LENGTHS = struct.Struct(">IQ")


class CopyError(Exception):
    """The copy cannot be made or did not verify; the message is for the operator."""


class TargetNotEmpty(CopyError):
    """The target database already holds data."""


@dataclass
class TreeDigest:
    """The row count and the SHA-256 of the rows of one tree, in key order."""

    name: str
    rows: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def update(self, rows: list[tuple[bytes, bytes]]) -> None:
        """Add the next rows (in key order)."""
        h = self._hash
        for key, value in rows:
            h.update(_LENGTHS.pack(len(key), len(value)))
            h.update(key)
            h.update(value)
        self.rows += len(rows)

    @property
    def sha256(self) -> str:
        """The hex digest of the rows so far."""
        return self._hash.hexdigest()


@dataclass
class Progress:
    """Where a copy or verification is, for the command's progress bar."""

    phase: str
    """C{"copy"} or C{"verify"}."""
    tree: str
    tree_index: int
    """1-based index of C{tree} among L{trees}."""
    trees: int
    tree_rows: int
    """Rows of C{tree} done so far."""
    rows: int
    """Rows done so far in this phase, over all trees."""
    tree_done: bool = False


async def scan(
    tree: IKeyValueTree,
    on_page: Callable[[list[tuple[bytes, bytes]]], Awaitable[None] | None],
    page: int = PAGE,
) -> None:
    """
    Read every row of C{tree} in key order, C{page} rows at a time, and
    call C{on_page} with each page (awaited if it returns an awaitable).
    Each page starts at the last key of the previous one (keys have no
    successor of bounded length), which is skipped.
    """
    rows = await tree.iter_from(b"", limit=page)
    while rows:
        result = on_page(rows)
        if result is not None:
            await result
        if len(rows) < page:
            return
        last = rows[-1][0]
        rows = await tree.iter_from(last, limit=page + 1)
        if rows and rows[0][0] == last:
            rows = rows[1:]
        elif rows and rows[0][0] < last:
            raise CopyError(f"tree {tree.name!r}: the backend returned keys out of order")


async def check_empty(db: IKeyValueDatabase) -> None:
    """
    @raise TargetNotEmpty: some tree of C{db} holds a key.
    """
    for name in await db.tree_names():
        if await db.open_tree(name).iter_from(b"", limit=1):
            raise TargetNotEmpty(
                f"the target database is not empty (tree {name!r} holds data); "
                "copy only into a new, empty database"
            )


async def digest_tree(tree: IKeyValueTree, on_page: Callable[[int], None] | None = None) -> TreeDigest:
    """The L{TreeDigest} of C{tree}; C{on_page} is told the rows read so far."""
    digest = TreeDigest(tree.name)

    def page(rows: list[tuple[bytes, bytes]]) -> None:
        digest.update(rows)
        if on_page is not None:
            on_page(digest.rows)

    await scan(tree, page)
    return digest


async def copy_database(
    source: IKeyValueDatabase,
    target: IKeyValueDatabase,
    progress: Callable[[Progress], None] = lambda p: None,
) -> list[TreeDigest]:
    """
    Copy every tree of C{source} into the empty C{target}.

    @return: the digest of each tree as read from the source, by name.
    @raise TargetNotEmpty: C{target} holds data (nothing was written).
    """
    await check_empty(target)
    names = await source.tree_names()
    digests: list[TreeDigest] = []
    total = 0
    for index, name in enumerate(names, 1):
        src = source.open_tree(name)
        target.open_tree(name)
        digest = TreeDigest(name)
        digests.append(digest)
        batch = target.batch()
        size = 0
        in_flight: list[Deferred[Any]] = []

        async def send() -> None:
            nonlocal batch, size
            if in_flight:
                await in_flight.pop()
            if len(batch):
                in_flight.append(target.write(batch))
            batch, size = target.batch(), 0

        async def page(rows: list[tuple[bytes, bytes]]) -> None:
            nonlocal size, total
            digest.update(rows)
            total += len(rows)
            for key, value in rows:
                batch.put(name, key, value)
                size += len(key) + len(value)
            if size >= BATCH_BYTES or len(batch) >= BATCH_ROWS:
                await send()
            progress(Progress("copy", name, index, len(names), digest.rows, total))

        await scan(src, page)
        await send()
        if in_flight:
            await in_flight.pop()
        progress(Progress("copy", name, index, len(names), digest.rows, total, True))
    return digests


async def verify_copy(
    source: IKeyValueDatabase,
    target: IKeyValueDatabase,
    copied: list[TreeDigest],
    progress: Callable[[Progress], None] = lambda p: None,
) -> list[TreeDigest]:
    """
    Read both databases again and compare every tree's count and checksum
    with C{copied} (from L{copy_database}).

    @return: the digests of the target's trees.
    @raise CopyError: a tree differs; the message names it and says how.
    """
    names = [d.name for d in copied]
    extra = sorted(set(await target.tree_names()) - set(names))
    for name in extra:
        if await target.open_tree(name).iter_from(b"", limit=1):
            raise CopyError(f"verification failed: the target has a tree {name!r} the source has not")
    now = sorted(set(await source.tree_names()) - set(names))
    for name in now:
        if await source.open_tree(name).iter_from(b"", limit=1):
            raise CopyError(
                f"the source changed during the copy (new tree {name!r}): stop the "
                "server before copying its database, empty the target and copy again"
            )
    done = 0
    checked: list[TreeDigest] = []
    for index, expected in enumerate(copied, 1):
        name = expected.name

        def report(rows: int, final: bool = False) -> None:
            progress(Progress("verify", name, index, len(copied), rows, done + rows, final))

        got = await digest_tree(target.open_tree(name), report)
        if (got.rows, got.sha256) != (expected.rows, expected.sha256):
            raise CopyError(
                f"verification failed: tree {name!r} has {got.rows} rows "
                f"(sha256 {got.sha256[:16]}) in the target but {expected.rows} "
                f"(sha256 {expected.sha256[:16]}) were copied"
            )
        again = await digest_tree(source.open_tree(name))
        if (again.rows, again.sha256) != (expected.rows, expected.sha256):
            raise CopyError(
                f"the source changed during the copy (tree {name!r}): stop the server "
                "before copying its database, empty the target and copy again"
            )
        report(got.rows, True)
        done += got.rows
        checked.append(got)
    return checked
