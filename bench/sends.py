"""
Send-path benchmark: server CPU per message, fan-out to long-polling
members and disk growth, against conduit-tw and (when importable) Synapse
in the same run, with ratios. Rate limits are off in both.

Figures (targets for conduit-tw, issue 18):

- server CPU per message, 8 senders in one shared public room (all 8
  joined): <= 0.7 ms;
- the same with each sender in a room of its own: <= 0.5 ms;
  (utime + stime of the server process from /proc over 8 x N concurrent
  sends on persistent connections, median of the rounds)
- one message fanned out to 200 long-polling members: the time until all
  have it <= 75 ms, and the p99 of the single deliveries <= 150 ms (each
  response is timestamped when its body has arrived, before it is parsed,
  so the client's JSON decoding does not count); also reported, with no
  target: the server's CPU time (every thread, from schedstat) from the send
  until the last member has the message;
- database growth per 1,000 messages sent by 8 senders into the shared
  room (stop, measure, send, stop, measure: checkpoints and WAL files do
  not blur it): <= 2 MB;
- the server's RSS after the workloads (6 s later, heap trimmed): <= 80 MB
  (after the fan-out it holds 200 more users and their long-polls).

    .venv/bin/python bench/sends.py [--backends sqlite,lmdb] [--rounds 5]
    .venv/bin/python bench/sends.py --only cpu --profile /tmp/send.prof

C{--profile} runs conduit-tw under cProfile (twistd --profiler=cprofile)
and saves the stats when it stops; read them with C{python -m pstats}.
C{--py-spy FILE} samples it with py-spy (when installed in the venv: it
is not a dependency) and writes collapsed stacks; bench/stacks.py sums
them per function. C{--baseline DIR} also runs conduit-tw from another
source tree (e.g. C{git archive main | tar -x -C DIR}) in the same run.
The client is asyncio + aiohttp in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

from _servers import (
    CONDUIT_OPEN, SynapseProcess, conduit_server, rss_mb, started, synapse_open, synapse_python,
)
from rooms import cpu_seconds, dir_size
import sync
from sync import gather_limited, pct

SENDERS = 8
C = "/_matrix/client/v3"


class Client(sync.Client):
    """L{sync.Client} with a /sync that returns the raw body and when it arrived."""

    async def sync_raw(self, **params: Any) -> tuple[float, bytes]:
        """A /sync: (time its body had arrived, raw body)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.get(
            self.base + C + "/sync", params={k: str(v) for k, v in params.items()}, headers=headers
        ) as r:
            raw = await r.read()
            at = time.perf_counter()
            if r.status != 200:
                raise RuntimeError(f"/sync: {r.status} {raw[:200]!r}")
            return at, raw


def persistent() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))


async def cpu_per_message(
    clients: list[Client], rooms: list[str], pid: int, per_sender: int, rounds: int
) -> float:
    """Median over C{rounds} of server CPU per message, every client sending C{per_sender}."""

    async def burst(c: Client, room: str, n: int) -> None:
        for i in range(n):
            await c.send(room, f"message {i} from {c.user_id}")

    await asyncio.gather(*(burst(c, r, 10) for c, r in zip(clients, rooms)))  # warm-up
    out = []
    for _ in range(rounds):
        c0 = cpu_seconds(pid)
        await asyncio.gather(*(burst(c, r, per_sender) for c, r in zip(clients, rooms)))
        out.append((cpu_seconds(pid) - c0) / (per_sender * len(clients)))
    return statistics.median(out) * 1000


async def workload(
    base: str, pid: int, args: argparse.Namespace,
    restart: Callable[[], Any], size: Callable[[], int],
) -> dict[str, float]:
    out: dict[str, float] = {}
    tag = str(int(time.time() * 1000) % 10**8)
    sessions = [persistent() for _ in range(SENDERS)]
    try:
        senders = [Client(s, base) for s in sessions]
        for i, c in enumerate(senders):
            await c.register(f"s{tag}x{i}")
        owner = senders[0]
        shared = (await owner.call("POST", C + "/createRoom", {"preset": "public_chat"}))["room_id"]
        for c in senders[1:]:
            await c.call("POST", f"{C}/join/{quote(shared)}", {})
        own = [
            (await c.call("POST", C + "/createRoom", {"preset": "private_chat"}))["room_id"]
            for c in senders
        ]

        if "disk" in args.only:
            for s in sessions:
                await s.close()
            pid = await restart()
            before = size()
            sessions = [persistent() for _ in range(SENDERS)]
            for c, s in zip(senders, sessions):
                c.session = s
            await cpu_per_message(senders, [shared] * SENDERS, pid, 1000 // SENDERS, 1)
            for s in sessions:
                await s.close()
            pid = await restart()
            # 1,000 measured messages + 80 warm-up ones.
            out["disk_mb_per_1000"] = (size() - before) / 1e6 * 1000 / (1000 + 10 * SENDERS)
            sessions = [persistent() for _ in range(SENDERS)]
            for c, s in zip(senders, sessions):
                c.session = s

        if "cpu" in args.only:
            spy = await py_spy(pid, args.py_spy and args.py_spy + ".cpu")
            out["cpu_shared_ms"] = await cpu_per_message(
                senders, [shared] * SENDERS, pid, args.per_sender, args.rounds
            )
            out["cpu_own_ms"] = await cpu_per_message(
                senders, own, pid, args.per_sender, args.rounds
            )
            spy()
    finally:
        for s in sessions:
            await s.close()

    if "fanout" in args.only:
        out.update(await fanout(
            base, tag, args.members, args.fanout_rounds,
            lambda: py_spy(pid, args.py_spy and args.py_spy + ".fanout"), pid,
        ))
    return out


async def py_spy(pid: int, path: str | None) -> Callable[[], None]:
    """Start sampling C{pid} into C{path} (if given); returns the function that stops it."""
    if not path:
        return lambda: None
    spy = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid", str(pid),
         "--format", "raw", "--rate", "250", "--output", path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1)

    def stop() -> None:
        spy.send_signal(signal.SIGINT)
        spy.wait()

    return stop


def run_ns(pid: int) -> int:
    """CPU time of every thread of C{pid}, in nanoseconds (schedstat: finer than C{/proc/stat}'s ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return total


async def fanout(
    base: str, tag: str, members: int, rounds: int, spy: Callable[[], Any], pid: int
) -> dict[str, float]:
    """
    One message to C{members} long-polling members, C{rounds} times; also
    the server's CPU time from the send until every member has it.
    """
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        host = Client(session, base)
        await host.register("host" + tag)
        room = (await host.call("POST", C + "/createRoom", {"preset": "public_chat"}))["room_id"]
        clients = [Client(session, base) for _ in range(members)]
        await gather_limited(20, [c.register(f"m{tag}x{i}") for i, c in enumerate(clients)])
        await gather_limited(20, [c.call("POST", f"{C}/join/{quote(room)}", {}) for c in clients])
        flt = '{"room":{"timeline":{"limit":1}}}'
        first = await gather_limited(50, [c.sync_raw(timeout=0, filter=flt) for c in clients])
        sinces = [json.loads(raw)["next_batch"] for _, raw in first]
        alls: list[float] = []
        singles: list[float] = []
        cpus: list[float] = []
        stop: Callable[[], None] = lambda: None
        for i in range(rounds):
            if i == 1:  # round 0 settles presence and lazy-loading state
                stop = await spy()
            want = f"fan {i} {tag}".encode()
            arrivals: list[float] = []

            async def poll(k: int) -> None:
                s = sinces[k]
                while True:
                    at, raw = await clients[k].sync_raw(since=s, timeout=60000, filter=flt)
                    s = json.loads(raw)["next_batch"]
                    if want in raw:
                        arrivals.append(at)
                        sinces[k] = s
                        return

            tasks = [asyncio.create_task(poll(k)) for k in range(members)]
            await asyncio.sleep(1.5)
            cpu_at = run_ns(pid)
            sent_at = time.perf_counter()
            await host.send(room, want.decode())
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            cpus.append((run_ns(pid) - cpu_at) / 1e6)
            alls.append((max(arrivals) - sent_at) * 1000)
            singles.extend((a - sent_at) * 1000 for a in arrivals)
            await asyncio.sleep(0.5)
        stop()
        return {
            "fanout_all_ms": statistics.median(alls),
            "fanout_p50_ms": pct(singles, 50),
            "fanout_p99_ms": pct(singles, 99),
            "fanout_cpu_ms": statistics.median(cpus),
        }


def bench_server(server: Any, args: argparse.Namespace, db_files: str) -> dict[str, float]:
    with started(server):

        async def restart() -> int:
            server.stop()
            server.start()
            return server.proc.pid

        size = lambda: dir_size(db_files)  # noqa: E731
        out = asyncio.run(workload(server.base_url, server.proc.pid, args, restart, size))
        time.sleep(6)  # conduit-tw trims its heap every 5 s
        out["rss_after_mb"] = rss_mb(server.proc.pid)
        return out


def bench_conduit(backend: str, args: argparse.Namespace, source: str | None = None) -> dict[str, float]:
    server = conduit_server(backend, CONDUIT_OPEN + args.conduit_extra.replace("\\n", "\n"))
    if source:
        server.env["PYTHONPATH"] = os.path.abspath(source)
    if args.profile:
        from tests.integration.process import TWISTD

        start = server.start
        cmd = TWISTD + [
            "-n", "--pidfile=", f"--profile={args.profile}", "--profiler=cprofile", "--savestats",
            "conduit",
        ] + server.args
        server.start = lambda timeout=20.0: start(timeout, cmd)  # type: ignore[method-assign]
    return bench_server(server, args, os.path.join(server.workdir, "data", "**"))


def bench_synapse(python: str, args: argparse.Namespace) -> dict[str, float]:
    syn = SynapseProcess(python, synapse_open(1000000))
    return bench_server(syn, args, os.path.join(syn.dir, "homeserver.db*"))


ROWS = [
    ("cpu_shared_ms", f"CPU/message, shared room, {SENDERS} senders", "ms", 0.7),
    ("cpu_own_ms", f"CPU/message, own rooms, {SENDERS} senders", "ms", 0.5),
    ("fanout_all_ms", "fan-out: all members have it", "ms", 75.0),
    ("fanout_p50_ms", "fan-out: single deliveries p50", "ms", None),
    ("fanout_p99_ms", "fan-out: single deliveries p99", "ms", 150.0),
    ("fanout_cpu_ms", "fan-out: server CPU, send to all have it", "ms", None),
    ("disk_mb_per_1000", "disk growth / 1,000 messages", "MB", 2.0),
    ("rss_after_mb", "RSS after the workloads", "MB", 80.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite,lmdb")
    parser.add_argument("--rounds", type=int, default=5, help="CPU rounds (median)")
    parser.add_argument("--per-sender", type=int, default=50, help="messages per sender per CPU round")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--fanout-rounds", type=int, default=5)
    parser.add_argument("--only", default="cpu,fanout,disk", help="comma-separated: cpu,fanout,disk")
    parser.add_argument("--no-synapse", action="store_true")
    parser.add_argument("--profile", help="run conduit-tw under cProfile, stats to this file")
    parser.add_argument(
        "--py-spy",
        help="sample conduit-tw with py-spy (collapsed stacks to FILE.cpu during the CPU "
        "rounds, FILE.fanout during the fan-out rounds after the first)",
    )
    parser.add_argument(
        "--baseline",
        help="also run conduit-tw from this source tree (e.g. `git archive main` unpacked), "
        "to compare before and after in the same run",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--conduit-extra", default="", help="extra conduit.toml lines")
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends.split(","):
        results[f"conduit-tw/{backend}"] = bench_conduit(backend, args)
        if args.baseline:
            results[f"baseline/{backend}"] = bench_conduit(backend, args, args.baseline)
    py = None if args.no_synapse or args.profile else synapse_python()
    if py:
        results["synapse"] = bench_synapse(py, args)
    names = list(results)
    print(f"{'figure':<42} {'unit':>4} {'target':>7}" + "".join(f"{n:>20}" for n in names))
    for key, label, unit, target in ROWS:
        if not all(key in results[n] for n in names):
            continue
        line = f"{label:<42} {unit:>4} {target if target is not None else '':>7}" + "".join(
            f"{results[n][key]:>20.3f}" for n in names
        )
        if "synapse" in results:
            ours, theirs = results[names[0]][key], results["synapse"][key]
            if ours > 0:
                line += f"   {theirs / ours:6.1f}x Synapse"
        if target is not None and results[names[0]][key] > target:
            line += "   (misses target)"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
