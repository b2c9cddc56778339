"""
The PostgreSQL backend's table layout, measured: one table keyed by
C{(tree, key)} (what C{conduit_tw/storage/postgresql.py} uses) against a
table of C{(key bytea primary key, value bytea)} per tree (issue 19: "measure
and choose").

Both layouts are created directly with psycopg in one throw-away cluster
(L{tests.postgresql.PostgreSQLCluster}, a database each; the backend is not
involved), loaded with the same rows in the same order, then measured with
the statements the backend issues:

  - point reads: C{SELECT value ... WHERE [tree = ? AND] key = ?}, random
    existing keys of random trees;
  - range scans: pages of 100 (C{key >= prefix AND key < end ORDER BY key
    LIMIT 100}) from random room prefixes;
  - batched writes: transactions of 100 upserts (C{INSERT ... ON CONFLICT DO
    UPDATE}, one C{executemany} per table, the whole transaction in one
    pipeline so that the layouts make the same number of round trips) mixing
    new rows of the large trees and overwrites in the small ones;
  - size: C{pg_total_relation_size} (heap, TOAST and indexes) after loading.

The time of each operation is given elapsed (what a caller waits: mostly
the round trip) and as CPU time of the server process (/proc; the work the
layout makes PostgreSQL do, much less disturbed by other load).

Each figure is the median of C{--repeats} runs; within a run the layouts
take turns every few operations, so that the load of a shared machine falls
on both alike. Commits are not fsynced (C{fsync=off}): the layouts do the same
number of commits, so fsync would only add the same constant to both.

    .venv/bin/python bench/pg_layout.py [--large-rows 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import struct
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.postgresql import PostgreSQLCluster, find_bin_dir  # noqa: E402

#: The large trees (events, timeline, state-like): rows of 100-1000 bytes.
LARGE = ["pduid_pdu", "eventid_outlierpdu", "shortstatehash_statediff"]
ROOMS_PER_LARGE_TREE = 1000
SMALL_TREES = 27


class Layout:
    """One layout in a database of its own: its DDL and statements."""

    def __init__(self, name: str, url: str, trees: list[str]) -> None:
        import psycopg

        self.name = name
        self.trees = trees
        self.conn = psycopg.connect(url, autocommit=True)
        #: The server process of this connection (its CPU time is read from /proc).
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def server_cpu(self) -> float:
        """CPU seconds the server process of this connection has used so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tables(self) -> list[str]:
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def load(self, rows: list[tuple[str, bytes, bytes]]) -> None:
        raise NotImplementedError

    def get(self, tree: str, key: bytes) -> Any:
        raise NotImplementedError

    def page(self, tree: str, lo: bytes, hi: bytes) -> list[Any]:
        raise NotImplementedError

    def write(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        raise NotImplementedError

    def size(self) -> int:
        """Heap, TOAST and indexes of every table of this layout."""
        return sum(
            self.conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
            for t in self.tables()
        )

    def vacuum(self) -> None:
        for t in self.tables():
            self.conn.execute(f"VACUUM ANALYZE {t}")


UPSERT = "ON CONFLICT ({conflict}) DO UPDATE SET value = EXCLUDED.value"


class OneTable(Layout):
    """C{conduit_kv (tree, key, value, primary key (tree, key))}: the backend's."""

    def tables(self) -> list[str]:
        return ["conduit_kv"]

    def create(self) -> None:
        self.conn.execute(
            "CREATE TABLE conduit_kv ("
            " tree text COLLATE \"C\" NOT NULL,"
            " key bytea NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 511),"
            " value bytea NOT NULL,"
            " PRIMARY KEY (tree, key))"
        )

    def load(self, rows: list[tuple[str, bytes, bytes]]) -> None:
        with self.conn.cursor() as cur:
            with cur.copy("COPY conduit_kv (tree, key, value) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def get(self, tree: str, key: bytes) -> Any:
        return self.conn.execute(
            "SELECT value FROM conduit_kv WHERE tree = %s AND key = %s", (tree, key)
        ).fetchone()

    def page(self, tree: str, lo: bytes, hi: bytes) -> list[Any]:
        return self.conn.execute(
            "SELECT key, value FROM conduit_kv WHERE tree = %s AND key >= %s AND key < %s"
            " ORDER BY key ASC LIMIT %s",
            (tree, lo, hi, 100),
        ).fetchall()

    def write(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        with self.conn.pipeline(), self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO conduit_kv (tree, key, value) VALUES (%s, %s, %s) "
                + UPSERT.format(conflict="tree, key"),
                batch,
            )


class TablePerTree(Layout):
    """A table C{t_<tree> (key bytea primary key, value bytea)} per tree."""

    def tables(self) -> list[str]:
        return [f"t_{tree}" for tree in self.trees]

    def create(self) -> None:
        for t in self.tables():
            self.conn.execute(
                f"CREATE TABLE {t} ("
                " key bytea PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 511),"
                " value bytea NOT NULL)"
            )

    def load(self, rows: list[tuple[str, bytes, bytes]]) -> None:
        by_tree: dict[str, list[tuple[bytes, bytes]]] = {}
        for tree, key, value in rows:
            by_tree.setdefault(tree, []).append((key, value))
        with self.conn.cursor() as cur:
            for tree, tree_rows in by_tree.items():
                with cur.copy(f"COPY t_{tree} (key, value) FROM STDIN") as copy:
                    for row in tree_rows:
                        copy.write_row(row)

    def get(self, tree: str, key: bytes) -> Any:
        return self.conn.execute(f"SELECT value FROM t_{tree} WHERE key = %s", (key,)).fetchone()

    def page(self, tree: str, lo: bytes, hi: bytes) -> list[Any]:
        return self.conn.execute(
            f"SELECT key, value FROM t_{tree} WHERE key >= %s AND key < %s"
            " ORDER BY key ASC LIMIT %s",
            (lo, hi, 100),
        ).fetchall()

    def write(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        by_tree: dict[str, list[tuple[bytes, bytes]]] = {}
        for tree, key, value in batch:
            by_tree.setdefault(tree, []).append((key, value))
        with self.conn.pipeline(), self.conn.transaction(), self.conn.cursor() as cur:
            for tree, rows in by_tree.items():
                cur.executemany(
                    f"INSERT INTO t_{tree} (key, value) VALUES (%s, %s) "
                    + UPSERT.format(conflict="key"),
                    rows,
                )


class Data:
    """The rows: a few large trees of room-prefixed keys, many small ones."""

    def __init__(self, large_rows: int, rng: random.Random) -> None:
        self.rng = rng
        self.small = [f"small_{i:02d}" for i in range(SMALL_TREES)]
        self.trees = LARGE + self.small
        #: Per large tree, its room prefixes (16-44 bytes, so keys are 24-52
        #: bytes with the 8-byte counter, up to 60 with a suffix).
        self.prefixes = {
            tree: [rng.randbytes(rng.randint(16, 44)) for _ in range(ROOMS_PER_LARGE_TREE)]
            for tree in LARGE
        }
        self.counter = 0
        self.keys: dict[str, list[bytes]] = {tree: [] for tree in self.trees}
        self.large_rows = large_rows

    def large_row(self, tree: str) -> tuple[str, bytes, bytes]:
        """A new row of a large tree: a random room, the next position."""
        self.counter += 1
        key = self.rng.choice(self.prefixes[tree]) + struct.pack(">Q", self.counter)
        if tree == "eventid_outlierpdu":
            key += self.rng.randbytes(self.rng.randint(0, 8))
        return tree, key, self.rng.randbytes(self.rng.randint(100, 1000))

    def small_row(self, tree: str, key: bytes | None = None) -> tuple[str, bytes, bytes]:
        key = key or self.rng.randbytes(self.rng.randint(20, 60))
        return tree, key, self.rng.randbytes(self.rng.randint(10, 200))

    def initial(self) -> list[tuple[str, bytes, bytes]]:
        """Every row, in the order a server would have written them (interleaved)."""
        rows = []
        sizes = {tree: self.rng.choice([100, 300, 1000, 3000, 10000]) for tree in self.small}
        for i in range(self.large_rows):
            for tree in LARGE:
                rows.append(self.large_row(tree))
            for tree in self.small:
                if i * sizes[tree] // self.large_rows != (i + 1) * sizes[tree] // self.large_rows:
                    rows.append(self.small_row(tree))
        for tree, key, _ in rows:
            self.keys[tree].append(key)
        return rows

    def random_key(self, trees: list[str]) -> tuple[str, bytes]:
        """An existing key of one of C{trees}."""
        tree = self.rng.choice(trees)
        return tree, self.rng.choice(self.keys[tree])

    def random_range(self) -> tuple[str, bytes, bytes]:
        """A room of a large tree, from its start or a random position in its first half."""
        tree = self.rng.choice(LARGE)
        room = self.rng.choice(self.prefixes[tree])
        start = 0 if self.rng.random() < 0.5 else self.rng.randint(0, self.counter // 2)
        return tree, room + struct.pack(">Q", start), _successor(room)

    def batch(self) -> list[tuple[str, bytes, bytes]]:
        """100 rows: 60 new ones in the large trees, 40 overwrites in 8 small trees."""
        rows = [self.large_row(self.rng.choice(LARGE)) for _ in range(60)]
        trees = self.rng.sample(self.small, 8)
        for _ in range(40):
            tree = self.rng.choice(trees)
            rows.append(self.small_row(tree, self.rng.choice(self.keys[tree])))
        self.rng.shuffle(rows)
        return rows


def _successor(prefix: bytes) -> bytes:
    """The first key after every key starting with C{prefix}."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else b"\xff" * 512


def timed(
    layouts: list[Layout], repeats: int, ops: list[Any], run: Callable[[Layout, Any], Any],
    chunk: int = 20, warmup: int = 1,
) -> dict[str, tuple[float, float]]:
    """
    Median microseconds per op of each layout (elapsed, and CPU of the
    server process) over C{repeats} runs of C{ops}
    (a first run warms the caches and prepares the statements). The layouts
    take turns every C{chunk} ops, the first one alternating, so that the
    load of a shared machine falls on both alike.
    """
    samples: dict[str, list[tuple[float, float]]] = {layout.name: [] for layout in layouts}
    for r in range(warmup + repeats):
        spent = {layout.name: [0.0, 0.0] for layout in layouts}
        for c in range(0, len(ops), chunk):
            for layout in layouts if (c // chunk + r) % 2 == 0 else layouts[::-1]:
                cpu = layout.server_cpu()
                start = time.perf_counter()
                for op in ops[c : c + chunk]:
                    run(layout, op)
                spent[layout.name][0] += time.perf_counter() - start
                spent[layout.name][1] += layout.server_cpu() - cpu
        if r >= warmup:
            for name, (seconds, cpu) in spent.items():
                samples[name].append((seconds / len(ops) * 1e6, cpu / len(ops) * 1e6))
    return {
        name: (statistics.median(e for e, _ in s), statistics.median(c for _, c in s))
        for name, s in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-rows", type=int, default=200_000, help="rows per large tree")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--scans", type=int, default=500)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed: `make postgresql` installs it")
    started = time.monotonic()
    cluster = PostgreSQLCluster(bin_dir)
    try:
        rng = random.Random(args.seed)
        data = Data(args.large_rows, rng)
        rows = data.initial()
        print(
            f"{len(rows)} rows in {len(data.trees)} trees "
            f"({len(LARGE)} of {args.large_rows}, {SMALL_TREES} of 100-10000); "
            f"PostgreSQL {cluster.admin('SHOW server_version')[0][0]}, "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        layouts: list[Layout] = []
        for cls, name in ((OneTable, "one table (tree, key)"), (TablePerTree, "table per tree")):
            db = cluster.create_database()
            layout = cls(name, cluster.url(db), data.trees)
            layout.create()
            t0 = time.perf_counter()
            layout.load(rows)
            layout.vacuum()
            print(f"  loaded {name} in {time.perf_counter() - t0:.1f} s", flush=True)
            layouts.append(layout)
        del rows

        sizes = {layout.name: layout.size() / 2**20 for layout in layouts}
        large_reads = [data.random_key(LARGE) for _ in range(args.reads)]
        small_reads = [data.random_key(data.small) for _ in range(args.reads)]
        scans = [data.random_range() for _ in range(args.scans)]
        batches = [data.batch() for _ in range((args.repeats + 1) * args.batches)]
        results = {
            "point read, large trees (µs)": timed(
                layouts, args.repeats, large_reads, lambda l, op: l.get(*op)
            ),
            "point read, small trees (µs)": timed(
                layouts, args.repeats, small_reads, lambda l, op: l.get(*op)
            ),
            "range scan, page of 100 (µs)": timed(
                layouts, args.repeats, scans, lambda l, op: l.page(*op)
            ),
        }
        # Writes: every run writes new batches (the same ones for each layout).
        write_runs = [
            timed(
                layouts, 1, batches[r * args.batches : (r + 1) * args.batches],
                lambda l, op: l.write(op), chunk=1, warmup=0,
            )
            for r in range(args.repeats + 1)
        ][1:]  # the first run warms up
        results["100-row write transaction (ms)"] = {
            layout.name: (
                statistics.median(run[layout.name][0] for run in write_runs) / 1e3,
                statistics.median(run[layout.name][1] for run in write_runs) / 1e3,
            )
            for layout in layouts
        }

        names = [layout.name for layout in layouts]
        rows_out: list[tuple[str, float, float]] = []
        for figure, values in results.items():
            rows_out.append((figure + ", elapsed", values[names[0]][0], values[names[1]][0]))
            rows_out.append((figure + ", server CPU", values[names[0]][1], values[names[1]][1]))
        rows_out.append(("size after loading (MiB)", sizes[names[0]], sizes[names[1]]))
        print()
        print(f"| figure | {' | '.join(names)} | per tree vs one table |")
        print("|---|" + "---:|" * (len(names) + 1))
        for figure, one, per in rows_out:
            # (CPU time is counted in clock ticks: a tiny run may show none.)
            change = f"{(per - one) / one * 100:+.1f}%" if one else "n/a"
            print(f"| {figure} | {one:.1f} | {per:.1f} | {change} |")
        print(
            f"\n{platform.node()} {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M %Z')},"
            f" {args.repeats} repeats, {time.monotonic() - started:.0f} s"
        )
        for layout in layouts:
            layout.conn.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
