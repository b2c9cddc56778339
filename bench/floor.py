"""
The cost floor of a request: server CPU per request for a ladder of
client-API requests, from one that does almost nothing to a message send,
against conduit-tw and (when importable) Synapse in the same run.

- C{GET /_matrix/client/versions}: no authentication, no storage, a
  constant answer: what the HTTP layer alone costs (parsing, routing, the
  response, the access log, the TCP syscalls);
- C{GET /account/whoami}: plus authenticating the access token;
- C{PUT /rooms/{room}/typing/{user}}: plus a JSON body and an ephemeral
  event (no storage write);
- C{PUT /rooms/{room}/send/...}, each client in a room of its own: plus
  building, hashing, signing, authorising and storing a PDU durably.

Eight clients on persistent connections, N requests each, median of the
rounds of utime + stime of the server process (/proc); rate limits off.
It shows how much of the send path's CPU (bench/sends.py) is the floor
every request pays before any Matrix work (docs/architecture.md, "Send path
and fan-out (issue 18)").

    .venv/bin/python bench/floor.py [--requests 200] [--rounds 3] [--backend sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp

from _servers import (
    CONDUIT_OPEN, SynapseProcess, conduit_server, started, synapse_open, synapse_python,
)
from rooms import cpu_seconds
import sync

C = "/_matrix/client/v3"
CLIENTS = 8

Step = Callable[[sync.Client, str, int], Awaitable[Any]]

LADDER: list[tuple[str, str, Step]] = [
    ("versions", "GET /versions (no auth)", lambda c, r, i: c.call("GET", "/_matrix/client/versions")),
    ("whoami", "GET /account/whoami", lambda c, r, i: c.call("GET", C + "/account/whoami")),
    (
        "typing",
        "PUT typing",
        lambda c, r, i: c.call(
            "PUT", f"{C}/rooms/{quote(r)}/typing/{quote(c.user_id)}", {"typing": False}
        ),
    ),
    ("send", "PUT send, own room", lambda c, r, i: c.send(r, f"message {i} from {c.user_id}")),
]


async def ladder(base: str, pid: int, requests: int, rounds: int) -> dict[str, float]:
    """Median server CPU (ms) per request of each step of L{LADDER}."""
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(CLIENTS)]
    out: dict[str, float] = {}
    try:
        clients = [sync.Client(s, base) for s in sessions]
        tag = str(int(time.time() * 1000) % 10**8)
        for i, c in enumerate(clients):
            await c.register(f"floor{tag}x{i}")
        rooms = [await c.create_room(preset="private_chat") for c in clients]
        for key, _, step in LADDER:

            async def run(c: sync.Client, room: str, n: int) -> None:
                for i in range(n):
                    await step(c, room, i)

            await asyncio.gather(*(run(c, r, 10) for c, r in zip(clients, rooms)))  # warm-up
            figures = []
            for _ in range(rounds):
                c0 = cpu_seconds(pid)
                await asyncio.gather(*(run(c, r, requests) for c, r in zip(clients, rooms)))
                figures.append((cpu_seconds(pid) - c0) / (requests * CLIENTS) * 1000)
            out[key] = statistics.median(figures)
    finally:
        for s in sessions:
            await s.close()
    return out


def bench(server: Any, args: argparse.Namespace) -> dict[str, float]:
    with started(server):
        return asyncio.run(ladder(server.base_url, server.proc.pid, args.requests, args.rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--no-synapse", action="store_true")
    args = parser.parse_args()
    results = {f"conduit-tw/{args.backend}": bench(conduit_server(args.backend, CONDUIT_OPEN), args)}
    py = None if args.no_synapse else synapse_python()
    if py:
        results["synapse"] = bench(SynapseProcess(py, synapse_open(1000000)), args)
    names = list(results)
    print(f"server CPU per request, ms ({CLIENTS} clients, load average {os.getloadavg()[0]:.1f})")
    print(f"{'request':<28}" + "".join(f"{n:>20}" for n in names))
    for key, label, _ in LADDER:
        line = f"{label:<28}" + "".join(f"{results[n][key]:>20.3f}" for n in names)
        if "synapse" in results:
            line += f"   {results['synapse'][key] / results[names[0]][key]:6.1f}x Synapse"
        print(line)


if __name__ == "__main__":
    main()
