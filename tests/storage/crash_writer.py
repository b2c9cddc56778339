"""
Child process of L{tests.storage.test_crash}: writes numbered batches
forever and prints each number once its write has been acknowledged.

    python -m tests.storage.crash_writer BACKEND PATH

It issues L{PER_TURN} batches at a time (one group commit with SQLite).
Batch C{n} puts L{KEYS_PER_TREE} keys C{u64(n) + u64(j)} in each of
L{TREES}, and C{b"last"} = C{u64(n)} in the first tree. On a database that
already has batches it goes on from C{last + 1}.
"""

from __future__ import annotations

import sys

from twisted.internet import defer, task

from conduit_tw.storage.database import open_database
from conduit_tw.storage.keys import from_u64, u64

TREES = ("crash_timeline", "crash_index", "crash_state")
KEYS_PER_TREE = 3
PAD = b"." * 2048
PER_TURN = 3


def key(n: int, j: int) -> bytes:
    """The key of change C{j} of batch C{n}."""
    return u64(n) + u64(j)


def value(tree: str, n: int, j: int) -> bytes:
    """The value of change C{j} of batch C{n} in C{tree}."""
    return b"%s:%d:%d:" % (tree.encode(), n, j) + PAD


async def run(backend: str, path: str) -> None:
    db = open_database(backend, path)
    for name in TREES:
        db.open_tree(name)
    last = await db.open_tree(TREES[0]).get(b"last")
    n = 0 if last is None else from_u64(last) + 1  # go on after a crash
    out = sys.stdout
    while True:
        # Several batches per reactor turn, so that SQLite's group commit
        # puts them in one COMMIT; each is reported once its own Deferred
        # has fired (they fire in order).
        writes = []
        for i in range(PER_TURN):
            batch = db.batch()
            for name in TREES:
                for j in range(KEYS_PER_TREE):
                    batch.put(name, key(n + i, j), value(name, n + i, j))
            batch.put(TREES[0], b"last", u64(n + i))
            writes.append(db.write(batch))
        for i, d in enumerate(writes):
            await d
            out.write(f"{n + i}\n")  # acknowledged: the write's Deferred has fired
            out.flush()
        n += PER_TURN


def main(reactor: object, backend: str, path: str) -> defer.Deferred[None]:
    return defer.ensureDeferred(run(backend, path))


if __name__ == "__main__":
    task.react(main, sys.argv[1:3])
