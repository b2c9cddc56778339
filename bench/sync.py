"""
/sync benchmark: conduit-tw and, when available, Synapse in the same run
(same client, same workloads), with ratios. Rate limits are off in both.

Workloads and targets (Synapse's figures from our reference run in brackets):

1. initial sync of a user in 200 rooms x 20 messages      <= 0.25 s  [2.4 s]
2. an empty incremental sync (timeout=0)                   <= 2 ms    [7 ms]
3. send -> receive through a long-polling /sync, p50/p99  <= 5/20 ms [46/170 ms]
4. one message fanned out to 200 long-polling members     <= 0.1 s   [1.28 s]
5. resident memory after these workloads                  <= 80 MB   [230 MB]

    .venv/bin/python bench/sync.py [--rooms 200] [--events 20] [--members 200]
        [--backends sqlite,postgresql] [--synapse-backends sqlite,postgresql]
    SYNAPSE_PYTHON=/path/to/python-with-synapse .venv/bin/python bench/sync.py

Without Synapse the script runs conduit-tw alone. Each initial sync uses
a distinct (equivalent) inline filter, so Synapse's 2-minute sync
response cache cannot answer it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from _servers import (
    CONDUIT_OPEN, SynapseProcess, conduit_server, rss_mb, started, synapse_open, synapse_python,
)

CONDUIT_EXTRA = CONDUIT_OPEN
SYNAPSE_EXTRA = synapse_open(100000)

C = "/_matrix/client/v3"


class Client:
    """A tiny Matrix client over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token = ""
        self.user_id = ""
        self._txn = 0

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method, self.base + path, json=body, params=params or None, headers=headers
        ) as r:
            data = await r.json(content_type=None)
            if r.status != 200 and not (r.status == 401 and "flows" in data):
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def register(self, name: str) -> None:
        body: dict[str, Any] = {"username": name, "password": "bench-password-" + name}
        first = await self.call("POST", C + "/register", body)
        if "access_token" not in first:
            body["auth"] = {"type": "m.login.dummy", "session": first.get("session")}
            first = await self.call("POST", C + "/register", body)
        self.token = first["access_token"]
        self.user_id = first["user_id"]

    async def create_room(self, **body: Any) -> str:
        return (await self.call("POST", C + "/createRoom", body))["room_id"]

    async def send(self, room: str, text: str) -> str:
        self._txn += 1
        path = f"{C}/rooms/{quote(room)}/send/m.room.message/b{self._txn}.{time.monotonic_ns()}"
        return (await self.call("PUT", path, {"msgtype": "m.text", "body": text}))["event_id"]

    async def join(self, room: str) -> None:
        await self.call("POST", f"{C}/join/{quote(room)}", {})

    async def sync(self, **params: Any) -> dict[str, Any]:
        return await self.call("GET", C + "/sync", **{k: str(v) for k, v in params.items()})


async def gather_limited(n: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def workload(
    base: str, rooms: int, events: int, members: int, samples: int, pid: int | None = None
) -> dict[str, float]:
    out: dict[str, float] = {}

    def stage(name: str) -> None:
        if pid is not None:
            out["rss_after_" + name] = rss_mb(pid)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tag = str(int(time.time()))[-5:]
        # -- 1. initial sync in many rooms
        # conduit-tw makes its first user an admin, joined to #admins: not the reader.
        await Client(session, base).register("first" + tag)
        user = Client(session, base)
        await user.register("reader" + tag)
        room_ids = await gather_limited(10, [user.create_room(name=f"room {i}") for i in range(rooms)])

        async def fill(room: str) -> None:
            for j in range(events):
                await user.send(room, f"message {j}")

        await gather_limited(20, [fill(r) for r in room_ids])
        stage("setup")
        times = []
        body: dict[str, Any] = {}
        for run in range(3):
            # Equivalent filters, distinct strings (defeats response caches).
            flt = '{"room":{"timeline":{"limit":10}}}' + " " * run
            began = time.perf_counter()
            body = await user.sync(filter=flt)
            times.append(time.perf_counter() - began)
        joined = len(body.get("rooms", {}).get("join", {}))
        assert joined == rooms, f"initial sync returned {joined} rooms"
        out["initial_sync_s"] = statistics.median(times)
        stage("initial")

        # -- 2. empty incremental sync
        since = body["next_batch"]
        for _ in range(5):  # settle presence etc.
            since = (await user.sync(since=since, timeout=0))["next_batch"]
        times = []
        for _ in range(samples):
            began = time.perf_counter()
            b = await user.sync(since=since, timeout=0)
            times.append(time.perf_counter() - began)
            since = b["next_batch"]
        out["empty_incremental_ms"] = statistics.median(times) * 1000

        # -- 3. send -> receive through a long-polling /sync
        alice, bob = Client(session, base), Client(session, base)
        await alice.register("alice" + tag)
        await bob.register("bob" + tag)
        room = await alice.create_room(preset="public_chat")
        await bob.join(room)
        since = (await bob.sync(timeout=0))["next_batch"]
        lat = []
        for i in range(samples):
            want = f"ping {i}"

            async def receive(since: str) -> tuple[float, str]:
                while True:
                    b = await bob.sync(since=since, timeout=30000)
                    since = b["next_batch"]
                    evs = b.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
                    if any(e.get("content", {}).get("body") == want for e in evs):
                        return time.perf_counter(), since

            task = asyncio.create_task(receive(since))
            await asyncio.sleep(0.02)
            sent_at = time.perf_counter()
            await alice.send(room, want)
            got_at, since = await task
            lat.append((got_at - sent_at) * 1000)
        out["latency_p50_ms"] = pct(lat, 50)
        out["latency_p99_ms"] = pct(lat, 99)
        stage("latency")

        # -- 4. fan-out to many long-polling members
        host = Client(session, base)
        await host.register("host" + tag)
        big = await host.create_room(preset="public_chat")
        clients = [Client(session, base) for _ in range(members)]
        await gather_limited(20, [c.register(f"m{tag}x{i}") for i, c in enumerate(clients)])
        await gather_limited(20, [c.join(big) for c in clients])
        tokens = await gather_limited(
            50, [c.sync(timeout=0, filter='{"room":{"timeline":{"limit":1}}}') for c in clients]
        )
        sinces = [t["next_batch"] for t in tokens]
        stage("members")
        fan = []
        for i in range(3):
            want = f"fan {i}"
            arrivals: list[float] = []

            async def poll(k: int) -> None:
                s = sinces[k]
                while True:
                    b = await clients[k].sync(since=s, timeout=60000)
                    s = b["next_batch"]
                    evs = b.get("rooms", {}).get("join", {}).get(big, {}).get("timeline", {}).get("events", [])
                    if any(e.get("content", {}).get("body") == want for e in evs):
                        arrivals.append(time.perf_counter())
                        sinces[k] = s
                        return

            tasks = [asyncio.create_task(poll(k)) for k in range(members)]
            await asyncio.sleep(1.5)
            sent_at = time.perf_counter()
            await host.send(big, want)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            fan.append(max(arrivals) - sent_at)
        out["fanout_s"] = statistics.median(fan)
    return out


TARGETS = {
    "initial_sync_s": ("initial sync, {rooms} rooms x {events} events (s)", 0.25),
    "empty_incremental_ms": ("empty incremental sync (ms)", 2.0),
    "latency_p50_ms": ("send -> long-poll receive p50 (ms)", 5.0),
    "latency_p99_ms": ("send -> long-poll receive p99 (ms)", 20.0),
    "fanout_s": ("fan-out to {members} long-pollers (s)", 0.1),
    "rss_mb": ("RSS after the workloads (MB)", 80.0),
}


def run_server(args: argparse.Namespace, server: Any) -> dict[str, float]:
    """The workloads against C{server} (conduit or Synapse), then its memory."""
    with started(server):
        figures = asyncio.run(workload(server.base_url, args.rooms, args.events, args.members, args.samples, server.proc.pid))
        figures["rss_mb"] = rss_mb(server.proc.pid)
        return figures


def run_conduit(args: argparse.Namespace, backend: str) -> dict[str, float]:
    return run_server(args, conduit_server(backend, CONDUIT_EXTRA + args.conduit_extra.replace("\\n", "\n")))


def run_synapse(args: argparse.Namespace, python: str, backend: str = "sqlite") -> dict[str, float]:
    return run_server(args, SynapseProcess(python, SYNAPSE_EXTRA, backend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite,lmdb,postgresql")
    parser.add_argument(
        "--synapse-backends", default="sqlite",
        help="Synapse's databases, comma-separated: sqlite,postgresql",
    )
    parser.add_argument("--no-synapse", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--conduit-extra", default="",
        help='extra conduit.toml lines for experiments, e.g. "db_cache_capacity_mb = 16"',
    )
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends.split(","):
        results[f"conduit-tw/{backend}"] = run_conduit(args, backend)
    py = None if args.no_synapse else synapse_python()
    if py:
        for backend in args.synapse_backends.split(","):
            results[f"synapse/{backend}"] = run_synapse(args, py, backend)
    names = list(results)
    print(f"{'workload':<46}" + "".join(f"{n:>20}" for n in names) + f"{'target':>10}")
    for key, (label, target) in TARGETS.items():
        label = label.format(**vars(args))
        row = f"{label:<46}" + "".join(f"{results[n][key]:>20.3f}" for n in names)
        print(row + f"{target:>10}")
    stages = sorted({k for r in results.values() for k in r if k.startswith("rss_after_")})
    for key in stages:
        print(f"{key:<46}" + "".join(f"{results[n].get(key, float('nan')):>20.1f}" for n in names))
    # Each conduit-tw backend against Synapse on the same database kind
    # (else Synapse's first).
    synapses = [n for n in names if n.startswith("synapse/")]
    for n in names:
        if not n.startswith("conduit-tw/") or not synapses:
            continue
        same = "synapse/" + n.split("/", 1)[1]
        name = same if same in results else synapses[0]
        syn = results[name]
        ratios = ", ".join(f"{k} {syn[k] / results[n][k]:.1f}x" for k in TARGETS if results[n][k])
        print(f"{n} vs {name} (higher is better): {ratios}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
