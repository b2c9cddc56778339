"""
Rooms and messaging benchmark: the real servers over HTTP on loopback, the
same workload against conduit-tw and (when importable) Synapse in the same
run, with ratios. Rate limits are off in both.

Figures (targets for conduit-tw; Synapse 1.163.2 for reference):

- server CPU per sent message (sequential sends, from /proc/<pid>/stat
  utime+stime over batches of sends, median of the batches) and the
  median request latency: <= 1 ms;
- sends from 8 concurrent clients (one persistent connection each):
  >= 1,000 events/s;
- room creation from 8 concurrent clients: >= 100 rooms/s;
- GET /messages returning 1,000 events (dir=b, limit=1000; median of 10)
  and walking the same 1,000 events in pages of 100: <= 50 ms;
- database growth per 1,000 messages (stop, measure, send 1,000, stop,
  measure, so checkpoints and WAL files do not blur it): <= 2 MB.

    .venv/bin/python bench/rooms.py [--duration 4] [--backends sqlite,postgresql]
        [--synapse-backends sqlite,postgresql]
    SYNAPSE_PYTHON=/tmp/synapse-venv/bin/python .venv/bin/python bench/rooms.py

The client is asyncio + aiohttp in this process; check its own CPU figure
in the output to see that it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

import aiohttp

from _servers import (
    CONDUIT_OPEN, SynapseProcess, conduit_server, postgresql_size, started, synapse_open,
    synapse_python,
)

CLIENTS = 8
TICK = os.sysconf("SC_CLK_TCK")

CONDUIT_EXTRA = CONDUIT_OPEN
SYNAPSE_EXTRA = synapse_open(1000000)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Client:
    """One simulated client: a persistent connection and a token."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session
        self.token: str | None = None
        self.user_id = ""
        self.txn = 0

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = 200) -> Any:
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        data = json.dumps(body) if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=data, headers=headers) as r:
            payload = await r.json(content_type=None)
            if expect is not None and r.status != expect:
                raise RuntimeError(f"{method} {path}: {r.status} {payload}")
            return payload

    async def register(self, name: str) -> None:
        path = "/_matrix/client/v3/register"
        body = {"username": name, "password": "bench password 123", "inhibit_login": False}
        first = await self.call("POST", path, body, expect=None)
        if "access_token" not in first:
            body["auth"] = {"type": "m.login.dummy", "session": first.get("session")}
            first = await self.call("POST", path, body)
        self.token = first["access_token"]
        self.user_id = first["user_id"]

    async def send(self, room_id: str, text: str) -> str:
        self.txn += 1
        body = await self.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/b{self.txn}",
            {"msgtype": "m.text", "body": text},
        )
        return body["event_id"]


async def run_workload(base: str, pid: int, duration: float, restart: Callable[[], Any], size: Callable[[], int]) -> dict[str, float]:
    out: dict[str, float] = {}
    stamp = str(int(time.time() * 1000) % 10**8)

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, force_close=False))

    # -- accounts and rooms
    sessions = [session() for _ in range(CLIENTS)]
    clients = [Client(base, s) for s in sessions]
    for i, c in enumerate(clients):
        await c.register(f"bench{stamp}u{i}")
    owner = clients[0]
    room = (await owner.call("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"}))["room_id"]
    history_room = (await owner.call("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"}))["room_id"]
    for c in clients[1:]:
        await c.call("POST", f"/_matrix/client/v3/join/{room}", {})
        await c.call("POST", f"/_matrix/client/v3/join/{history_room}", {})
    for s in sessions:
        await s.close()

    # -- database growth over 1,000 messages (stop/start around them)
    pid = await restart()
    before = size()
    sessions = [session() for _ in range(CLIENTS)]
    for c, s in zip(clients, sessions):
        c.session = s

    async def send_n(c: Client, n: int, room_id: str) -> None:
        for i in range(n):
            await c.send(room_id, f"history message {i} from {c.user_id}")

    await asyncio.gather(*(send_n(c, 1000 // CLIENTS, history_room) for c in clients))
    for s in sessions:
        await s.close()
    pid = await restart()
    out["db_growth_mb_per_1000"] = (size() - before) / 1e6
    sessions = [session() for _ in range(CLIENTS)]
    for c, s in zip(clients, sessions):
        c.session = s

    # -- sequential sends: CPU per message and latency
    await asyncio.gather(*(c.send(room, "warm-up") for c in clients))
    for _ in range(20):
        await owner.send(room, "warm-up")
    latencies: list[float] = []
    cpu_per_msg: list[float] = []
    for _batch in range(5):
        c0 = cpu_seconds(pid)
        for i in range(100):
            t = time.perf_counter()
            await owner.send(room, f"sequential {i}")
            latencies.append(time.perf_counter() - t)
        cpu_per_msg.append((cpu_seconds(pid) - c0) / 100)
    out["cpu_ms_per_send"] = statistics.median(cpu_per_msg) * 1000
    out["send_latency_ms"] = statistics.median(latencies) * 1000

    # -- concurrent sends
    async def sender(c: Client, deadline: float, counter: list[int]) -> None:
        while time.monotonic() < deadline:
            await c.send(room, "concurrent")
            counter[0] += 1

    counter = [0]
    mine0 = own_cpu()
    began = time.monotonic()
    await asyncio.gather(*(sender(c, began + duration, counter) for c in clients))
    elapsed = time.monotonic() - began
    out["sends_per_s"] = counter[0] / elapsed
    out["client_cpu_share"] = (own_cpu() - mine0) / elapsed

    # -- concurrent room creation
    async def creator(c: Client, deadline: float, counter: list[int]) -> None:
        while time.monotonic() < deadline:
            await c.call("POST", "/_matrix/client/v3/createRoom", {"name": "bench"})
            counter[0] += 1

    counter = [0]
    began = time.monotonic()
    await asyncio.gather(*(creator(c, began + duration, counter) for c in clients))
    out["rooms_per_s"] = counter[0] / (time.monotonic() - began)

    # -- /messages over the 1,000-event room
    path = f"/_matrix/client/v3/rooms/{history_room}/messages?dir=b&limit=1000"
    times = []
    for _ in range(11):
        t = time.perf_counter()
        body = await owner.call("GET", path)
        times.append(time.perf_counter() - t)
    assert len(body["chunk"]) == 1000, len(body["chunk"])
    out["messages_1000_ms"] = statistics.median(times[1:]) * 1000
    walks = []
    for _ in range(5):
        t = time.perf_counter()
        token = None
        got = 0
        while got < 1000:
            p = f"/_matrix/client/v3/rooms/{history_room}/messages?dir=b&limit=100"
            if token:
                p += "&from=" + token
            body = await owner.call("GET", p)
            got += len(body["chunk"])
            token = body.get("end")
            if token is None:
                break
        walks.append(time.perf_counter() - t)
    out["messages_walk_1000_ms"] = statistics.median(walks) * 1000
    for s in sessions:
        await s.close()
    return out


def dir_size(pattern: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def bench_server(server: Any, duration: float, db_files: str) -> dict[str, float]:
    """
    The workload against C{server} (conduit or Synapse); C{db_files} globs
    its database files, or is the name of its PostgreSQL database.
    """
    with started(server):

        async def restart() -> int:
            server.stop()
            server.start()
            return server.proc.pid

        if getattr(server, "dbname", None) == db_files:
            size = lambda: postgresql_size(db_files)  # noqa: E731
        else:
            size = lambda: dir_size(db_files)  # noqa: E731
        return asyncio.run(run_workload(server.base_url, server.proc.pid, duration, restart, size))


def bench_conduit(backend: str, duration: float) -> dict[str, float]:
    server = conduit_server(backend, CONDUIT_EXTRA)
    if server.dbname is not None:
        return bench_server(server, duration, server.dbname)
    return bench_server(server, duration, os.path.join(server.workdir, "data", "**"))


def bench_synapse(python: str, duration: float, backend: str = "sqlite") -> dict[str, float]:
    syn = SynapseProcess(python, SYNAPSE_EXTRA, backend)
    if syn.dbname is not None:
        return bench_server(syn, duration, syn.dbname)
    return bench_server(syn, duration, os.path.join(syn.dir, "homeserver.db*"))


ROWS = [
    # key, label, unit, target, higher is better
    ("cpu_ms_per_send", "server CPU per send", "ms", 1.0, False),
    ("send_latency_ms", "send latency (median)", "ms", None, False),
    ("sends_per_s", f"sends, {CLIENTS} clients", "ev/s", 1000.0, True),
    ("rooms_per_s", f"createRoom, {CLIENTS} clients", "rooms/s", 100.0, True),
    ("messages_1000_ms", "/messages limit=1000", "ms", 50.0, False),
    ("messages_walk_1000_ms", "/messages 10 x 100", "ms", 50.0, False),
    ("db_growth_mb_per_1000", "DB growth / 1000 msgs", "MB", 2.0, False),
    ("client_cpu_share", "bench client CPU share", "cores", None, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per throughput phase")
    parser.add_argument(
        "--backends", "--backend", default="sqlite",
        help="conduit-tw backends, comma-separated: sqlite,lmdb,postgresql",
    )
    parser.add_argument(
        "--synapse-backends", default="sqlite",
        help="Synapse's databases, comma-separated: sqlite,postgresql",
    )
    parser.add_argument("--no-synapse", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends.split(","):
        results[f"conduit-tw/{backend}"] = bench_conduit(backend, args.duration)
    py = None if args.no_synapse else synapse_python()
    if py:
        for backend in args.synapse_backends.split(","):
            results[f"synapse/{backend}"] = bench_synapse(py, args.duration, backend)
    names = list(results)
    print(f"{'figure':<26} {'unit':>7} {'target':>7} " + " ".join(f"{n:>22}" for n in names))
    for key, label, unit, target, higher in ROWS:
        vals = [results[n][key] for n in names]
        line = f"{label:<26} {unit:>7} {target if target is not None else '':>7} " + " ".join(
            f"{v:>22.3f}" for v in vals
        )
        if target is not None:
            ok = vals[0] >= target if higher else vals[0] <= target
            line += "" if ok else "   (first misses target)"
        print(line)
    # Each conduit-tw backend against Synapse on the same database kind
    # (else Synapse's first).
    for name in names:
        if not name.startswith("conduit-tw/"):
            continue
        backend = name.split("/", 1)[1]
        syn = f"synapse/{backend}" if f"synapse/{backend}" in results else next(
            (n for n in names if n.startswith("synapse/")), None
        )
        if syn is None:
            continue
        ratios = []
        for key, label, unit, target, higher in ROWS:
            ours, theirs = results[name][key], results[syn][key]
            if key != "client_cpu_share" and ours > 0 and theirs > 0:
                ratio = ours / theirs if higher else theirs / ours
                ratios.append(f"{key} {ratio:.1f}x")
        print(f"{name} vs {syn} (higher is better): " + ", ".join(ratios))
    if not py:
        print("(Synapse not importable: set SYNAPSE_PYTHON or run bench/setup-synapse.sh)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
