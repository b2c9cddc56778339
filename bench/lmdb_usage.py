"""
What an LMDB database's pages hold, per tree: entries, key and value
bytes, branch/leaf/overflow pages, depth and how full the pages are; the
pages no tree holds are free (reclaimed pages waiting for reuse) or the
main and free-list databases.

    .venv/bin/python bench/lmdb_usage.py DIR       # one database (data.mdb in DIR)
    .venv/bin/python bench/lmdb_usage.py --sends   # bench/sends.py's disk workload:
                                                   # what 1,000 messages added, per tree

C{--sends} runs conduit-tw on LMDB (C{--source DIR} runs another source tree,
e.g. C{git archive} of the code before a change) and takes the usage after
each restart, as sends.py measures the disk growth. Fill is key + value +
10 bytes per entry (node header and pointer) over the pages' 4,096 bytes
(of the pages added, with C{--sends}: over 100% when the pages there before
were part-filled).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import lmdb

PAGE = 4096
ENTRY_OVERHEAD = 10


def usage(path: str) -> dict[str, Any]:
    """Per tree: C{txn.stat} plus C{key_bytes}, C{val_bytes}; C{"_file"}, C{"_used"}."""
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=1024, subdir=True)
    try:
        with env.begin() as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
        out: dict[str, Any] = {}
        for name in names:
            db = env.open_db(name, create=False)
            with env.begin(db=db) as txn:
                stat = dict(txn.stat(db))
                stat["key_bytes"] = stat["val_bytes"] = 0
                for k, v in txn.cursor():
                    stat["key_bytes"] += len(k)
                    stat["val_bytes"] += len(v)
            out[name.decode()] = stat
        main = env.stat()
        out["_main"] = main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
        out["_used"] = env.info()["last_pgno"] + 1
    finally:
        env.close()
    out["_file"] = os.path.getsize(os.path.join(path, "data.mdb"))
    return out


def pages(stat: dict[str, int]) -> int:
    return stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]


def report(after: dict[str, Any], before: dict[str, Any] | None = None) -> None:
    """Print L{usage} (or what changed since C{before}), biggest trees first."""
    empty = dict(branch_pages=0, leaf_pages=0, overflow_pages=0, entries=0, key_bytes=0, val_bytes=0)
    before = before or {"_file": 0, "_used": 0, "_main": 0}
    rows = []
    for name, stat in after.items():
        if name.startswith("_"):
            continue
        old = before.get(name, empty)
        d = {k: stat[k] - old[k] for k in empty}
        rows.append((pages(d), name, d, stat["depth"]))
    rows.sort(reverse=True)
    print(f"{'tree':<28}{'pages':>7}{'entries':>9}{'key B':>10}{'value B':>11}{'fill':>6}"
          f"{'branch':>8}{'leaf':>6}{'ovfl':>6}{'depth':>6}")
    total = 0
    for n, name, d, depth in rows:
        if not n and not d["entries"]:
            continue
        total += n
        used = d["key_bytes"] + d["val_bytes"] + ENTRY_OVERHEAD * d["entries"]
        fill = f"{100 * used / (n * PAGE):.0f}%" if n else "-"
        print(f"{name:<28}{n:>7}{d['entries']:>9}{d['key_bytes']:>10}{d['val_bytes']:>11}{fill:>6}"
              f"{d['branch_pages']:>8}{d['leaf_pages']:>6}{d['overflow_pages']:>6}{depth:>6}")
    used = after["_used"] - before["_used"]
    main = after["_main"] - before["_main"]
    print(f"tree pages {total}, main database {main}, free and free list "
          f"{used - total - main - (0 if before['_used'] else 2)} (meta pages 2); "
          f"file {after['_file'] - before['_file']:,} bytes")


async def _sends(source: str | None) -> None:
    import sends
    from _servers import CONDUIT_OPEN, conduit_server, started
    from rooms import dir_size

    server = conduit_server("lmdb", CONDUIT_OPEN)
    if source:
        server.env["PYTHONPATH"] = os.path.abspath(source)
    path = os.path.join(server.workdir, "data")
    snapshots = []

    def size() -> int:
        snapshots.append(usage(path))
        return dir_size(os.path.join(path, "**"))

    async def restart() -> int:
        server.stop()
        server.start()
        return server.proc.pid

    with started(server):
        args = argparse.Namespace(only={"disk"}, py_spy=None)
        figures = await sends.workload(server.base_url, server.proc.pid, args, restart, size)
    report(snapshots[1], snapshots[0])
    print(f"disk growth per 1,000 messages: {figures['disk_mb_per_1000']:.3f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="an LMDB database directory")
    parser.add_argument("--sends", action="store_true", help="run bench/sends.py's disk workload")
    parser.add_argument("--source", help="with --sends: run conduit-tw from this source tree")
    args = parser.parse_args()
    if args.sends:
        asyncio.run(_sends(args.source))
    elif args.path:
        report(usage(args.path))
    else:
        parser.error("give a database directory or --sends")


if __name__ == "__main__":
    main()
