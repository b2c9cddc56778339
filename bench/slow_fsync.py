"""
The reactor never waits on the disk: the embedded backends with a slow
disk simulated (C{conduit_tw.storage.durability.simulated_latency} seconds
added to every sync, as on an SD card), committing on the reactor thread
(as before the writer thread) and on the writer thread.

Workload, per configuration, in one process: C{--writers} loops each
writing a batch like a stored event (3 trees, ~1.5 KB) and awaiting its
acknowledgement, for C{--seconds}; meanwhile a "client" ticks every 5 ms,
reads a key and records how late the reactor served the tick. Printed:
acknowledged writes per second, and the reactor's lateness p50 / p99 /
max (what every other request would wait).

    .venv/bin/python bench/slow_fsync.py [--latency-ms 20] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from conduit_tw.storage import durability  # noqa: E402
from conduit_tw.storage.keys import u64  # noqa: E402
from conduit_tw.storage.lmdb import LMDBDatabase  # noqa: E402
from conduit_tw.storage.sqlite import SQLiteDatabase  # noqa: E402

TREES = ("pduid_pdu", "eventid_pduid", "roomid_index")
TICK = 0.005


async def run_one(reactor, backend: str, threaded: bool, args) -> tuple[float, list[float]]:
    path = tempfile.mkdtemp(prefix=f"slowfsync-{backend}-")
    cls = SQLiteDatabase if backend == "sqlite" else LMDBDatabase
    db = cls(path, {}, sync_thread=threaded)
    for name in TREES:
        db.open_tree(name)
    reader = db.open_tree(TREES[0])
    await reader.insert(b"probe", b"x")
    acks = [0]
    stop = [False]
    value = b"e" * 1500

    async def writer(w: int) -> None:
        n = 0
        while not stop[0]:
            batch = db.batch()
            k = u64(w) + u64(n)
            batch.put(TREES[0], k, value)
            batch.put(TREES[1], b"$event" + k, k)
            batch.put(TREES[2], k[::-1], b"")
            await db.write(batch)
            acks[0] += 1
            n += 1
            # The next write is the next request: it arrives on a later turn.
            await task.deferLater(reactor, 0, lambda: None)

    lateness: list[float] = []
    expected = [time.monotonic() + TICK]
    call = [None]

    def tick() -> None:
        now = time.monotonic()
        lateness.append(max(0.0, now - expected[0]))
        reader.get(b"probe")
        expected[0] = now + TICK
        call[0] = reactor.callLater(TICK, tick)

    call[0] = reactor.callLater(TICK, tick)
    started = time.monotonic()
    writers = [defer.ensureDeferred(writer(w)) for w in range(args.writers)]
    await task.deferLater(reactor, args.seconds, lambda: None)
    stop[0] = True
    call[0].cancel()
    elapsed = time.monotonic() - started
    count = acks[0]
    await defer.gatherResults(writers)
    db.close()
    return count / elapsed, lateness


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


async def main(reactor, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args(argv)
    print(
        f"{'backend':<7} {'sync on':<8} {'latency':>7} {'acks/s':>8} "
        f"{'lag p50 ms':>10} {'p99 ms':>8} {'max ms':>8}"
    )
    for latency in (0.0, args.latency_ms / 1000):
        durability.simulated_latency = latency
        for backend in ("sqlite", "lmdb"):
            for threaded in (False, True):
                rate, lag = await run_one(reactor, backend, threaded, args)
                print(
                    f"{backend:<7} {'thread' if threaded else 'reactor':<8} "
                    f"{latency * 1000:>5.0f}ms {rate:>8.0f} "
                    f"{statistics.median(lag) * 1000:>10.2f} {pct(lag, 0.99) * 1000:>8.2f} "
                    f"{max(lag) * 1000:>8.2f}"
                )
    durability.simulated_latency = 0.0


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
