"""
Registration and login memory benchmark: 200 accounts registered 16 at a
time, then 200 password logins 16 at a time, against conduit-tw and (when
importable) Synapse in the same run. Rate limits are off in both.

Password hashing is what costs memory here (argon2id holds
C{password_hash_memory_kib} per hash in flight; Synapse's bcrypt holds
almost nothing but burns more CPU), so the figures are:

- RSS as started (idle, after /versions answers);
- peak RSS (VmHWM) after the registrations and after the logins: target
  <= 150 MB for conduit-tw;
- RSS once the workload is over;
- registrations and logins per second (for reference: hashing is slow by
  design).

    .venv/bin/python bench/registrations.py [--users 200] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp

from _servers import (
    CONDUIT_OPEN, SynapseProcess, conduit_server, rss_mb, started, synapse_open, synapse_python,
)

PASSWORD = "bench password 123"


def status_mb(pid: int, field: str) -> float:
    """A C{Vm*} figure of C{/proc/<pid>/status} in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _call(session: aiohttp.ClientSession, base: str, path: str, body: Any) -> tuple[int, Any]:
    async with session.post(base + path, json=body) as r:
        return r.status, await r.json(content_type=None)


async def _retrying(session: aiohttp.ClientSession, base: str, path: str, body: Any) -> Any:
    """POST until it is not a 429 (honouring C{retry_after_ms}); the final 200 body."""
    while True:
        status, payload = await _call(session, base, path, body)
        if status == 429:
            await asyncio.sleep(payload.get("retry_after_ms", 500) / 1000)
            continue
        return status, payload


async def register(session: aiohttp.ClientSession, base: str, name: str) -> None:
    path = "/_matrix/client/v3/register"
    body: dict[str, Any] = {"username": name, "password": PASSWORD, "inhibit_login": True}
    status, payload = await _retrying(session, base, path, body)
    if status == 401:
        body["auth"] = {"type": "m.login.dummy", "session": payload.get("session")}
        status, payload = await _retrying(session, base, path, body)
    if status != 200:
        raise RuntimeError(f"register {name}: {status} {payload}")


async def login(session: aiohttp.ClientSession, base: str, name: str) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": name},
        "password": PASSWORD,
    }
    status, payload = await _retrying(session, base, "/_matrix/client/v3/login", body)
    if status != 200:
        raise RuntimeError(f"login {name}: {status} {payload}")


async def run_pool(concurrency: int, names: list[str], work: Any) -> float:
    """Run C{work(session, name)} over C{names}, C{concurrency} at a time; per second."""
    queue = list(reversed(names))

    async def worker() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
            while queue:
                await work(s, queue.pop())

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(names) / (time.monotonic() - began)


async def workload(base: str, pid: int, users: int, concurrency: int) -> dict[str, float]:
    out = {"idle_rss_mb": rss_mb(pid)}
    stamp = str(int(time.time() * 1000) % 10**8)
    names = [f"reg{stamp}u{i}" for i in range(users)]
    out["registrations_per_s"] = await run_pool(
        concurrency, names, lambda s, n: register(s, base, n)
    )
    out["peak_after_register_mb"] = status_mb(pid, "VmHWM")
    out["logins_per_s"] = await run_pool(concurrency, names, lambda s, n: login(s, base, n))
    out["peak_after_login_mb"] = status_mb(pid, "VmHWM")
    await asyncio.sleep(1)
    out["rss_after_mb"] = rss_mb(pid)
    return out


def bench(server: Any, users: int, concurrency: int) -> dict[str, float]:
    with started(server):
        out = asyncio.run(workload(server.base_url, server.proc.pid, users, concurrency))
    print(type(server).__name__, {k: round(v, 1) for k, v in out.items()}, flush=True)
    return out


ROWS = [
    # key, label, unit, target, higher is better
    ("idle_rss_mb", "RSS as started", "MB", 40.0, False),
    ("peak_after_register_mb", "peak RSS, registrations", "MB", 150.0, False),
    ("peak_after_login_mb", "peak RSS, + logins", "MB", 150.0, False),
    ("rss_after_mb", "RSS after the workload", "MB", 80.0, False),
    ("registrations_per_s", "registrations", "/s", None, True),
    ("logins_per_s", "password logins", "/s", None, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--no-synapse", action="store_true")
    parser.add_argument("--extra", default="", help="extra conduit-tw config lines")
    args = parser.parse_args()
    extra = CONDUIT_OPEN + args.extra.replace("\\n", "\n") + "\n"
    results = {
        f"conduit-tw/{args.backend}": bench(
            conduit_server(args.backend, extra), args.users, args.concurrency
        )
    }
    py = None if args.no_synapse else synapse_python()
    if py:
        results["synapse"] = bench(
            SynapseProcess(py, synapse_open(1000000)), args.users, args.concurrency
        )
    names = list(results)
    print(f"{args.users} users, {args.concurrency} at a time")
    print(f"{'figure':<26} {'unit':>5} {'target':>7} " + " ".join(f"{n:>18}" for n in names)
          + ("   ratio (synapse/ours)" if "synapse" in results else ""))
    for key, label, unit, target, _higher in ROWS:
        vals = [results[n][key] for n in names]
        line = f"{label:<26} {unit:>5} {target if target is not None else '':>7} " + " ".join(
            f"{v:>18.1f}" for v in vals
        )
        if "synapse" in results and vals[0] > 0:
            line += f"   {results['synapse'][key] / vals[0]:6.2f}"
        if target is not None and vals[0] > target:
            line += "   (misses target)"
        print(line)
    if "synapse" not in results:
        print("(Synapse not importable: run `make synapse` or set SYNAPSE_PYTHON)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
