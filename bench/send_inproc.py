"""
Server CPU per message sent, measured in-process: a HomeServer on the real
reactor and a temporary SQLite (or LMDB) database, requests fed to its
twisted.web site through in-memory transports (tests/server.py
C{FakeClient}: parsing, routing, authentication, the send and the response
all run; only the TCP syscalls do not). CPU is C{getrusage(RUSAGE_SELF)}
(every thread: the writer thread's fsyncs count) over 8 senders x N
concurrent sends, in one shared room (all 8 joined) and in a room each.

    .venv/bin/python bench/send_inproc.py [--rounds 5] [--per-sender 50]
    .venv/bin/python bench/send_inproc.py --compare DIR [--runs 3]

C{--compare DIR} runs this script alternately on this tree and on DIR (an
older source tree, e.g. C{git archive main | tar -x -C DIR}), each run in
its own process, and prints the medians side by side: less noisy than two
servers over TCP on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def workload(args: argparse.Namespace) -> dict[str, float]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults

    from conduit_tw.homeserver import HomeServer
    from conduit_tw.api.resource import InFlightTracker, MatrixSite
    from tests.server import FakeClient, make_config, record_federation

    path = tempfile.mkdtemp(prefix="send_inproc")
    config = make_config(
        database_path=path,
        database_backend=args.backend,
        allow_registration=True,
        yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse=True,
        rc_message_per_second=0,
        rc_registration_per_second=0,
        rc_login_per_second=0,
        rc_joins_per_second=0,
    )
    hs = HomeServer(config, reactor)
    record_federation(hs)
    await hs.setup()
    site = MatrixSite(
        hs.resource, max_request_size=config.max_request_size,
        trusted_proxies=config.trusted_proxies, tracker=InFlightTracker(),
    )
    site.timeOut = None
    client = FakeClient(site)

    async def call(method: str, p: str, body: Any = None, token: str | None = None) -> Any:
        r = await client.request(method, "/_matrix/client/v3" + p, body, access_token=token)
        if r.code != 200:
            raise RuntimeError(f"{method} {p}: {r.code} {r.body[:200]!r}")
        return r.json

    tokens = []
    for i in range(8):
        r = await call(
            "POST", "/register",
            {"username": f"u{i}", "password": "pw-" + "x" * 12, "auth": {"type": "m.login.dummy"}},
        )
        tokens.append(r["access_token"])
    shared = (await call("POST", "/createRoom", {"preset": "public_chat"}, tokens[0]))["room_id"]
    for t in tokens[1:]:
        await call("POST", f"/join/{shared}", {}, t)
    own = [(await call("POST", "/createRoom", {}, t))["room_id"] for t in tokens]

    counter = [0]

    async def sender(token: str, room: str) -> None:
        for _ in range(args.per_sender):
            counter[0] += 1
            await call(
                "PUT", f"/rooms/{room}/send/m.room.message/t{counter[0]}",
                {"msgtype": "m.text", "body": f"message {counter[0]} hello world"}, token,
            )

    async def round_(rooms: list[str]) -> float:
        start = cpu()
        await gatherResults([
            Deferred.fromCoroutine(sender(t, r)) for t, r in zip(tokens, rooms)
        ])
        return (cpu() - start) / (len(tokens) * args.per_sender) * 1000

    out: dict[str, list[float]] = {"shared": [], "own": []}
    await round_([shared] * 8)  # warm-up
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for _ in range(args.rounds):
        out["shared"].append(await round_([shared] * 8))
        out["own"].append(await round_(own))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    await hs.close()
    return {k: statistics.median(v) for k, v in out.items()}


def compare(args: argparse.Namespace) -> None:
    trees = {"after": os.path.dirname(HERE), "before": os.path.abspath(args.compare)}
    res: dict[str, dict[str, list[float]]] = {k: {"shared": [], "own": []} for k in trees}
    for run in range(args.runs):
        order = list(trees) if run % 2 == 0 else list(reversed(list(trees)))
        for name in order:
            tree = trees[name]
            cmd = [
                sys.executable, os.path.join(HERE, "send_inproc.py"), "--json-out",
                "--rounds", str(args.rounds), "--per-sender", str(args.per_sender),
                "--backend", args.backend,
            ]
            env = dict(os.environ, PYTHONPATH=tree)
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
            if proc.returncode != 0 and not line:
                sys.exit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            figures = json.loads(line[-1])
            print(f"run {run} {name:6}: shared {figures['shared']:.3f} ms  own {figures['own']:.3f} ms",
                  flush=True)
            for k in ("shared", "own"):
                res[name][k].append(figures[k])
    for k in ("shared", "own"):
        b = statistics.median(res["before"][k])
        a = statistics.median(res["after"][k])
        print(f"{k:6}: before {b:.3f} ms  after {a:.3f} ms  ({(a - b) / b * 100:+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-sender", type=int, default=50)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--compare", help="another source tree to run alternately")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", help="cProfile the measured rounds, stats to this file")
    parser.add_argument("--json-out", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    import atexit

    from twisted.internet import defer, task

    result: dict[str, float] = {}

    async def main_() -> None:
        result.update(await workload(args))

    def report() -> None:
        if args.json_out:
            print(json.dumps(result), flush=True)
        elif result:
            print(f"shared {result['shared']:.3f} ms  own {result['own']:.3f} ms", flush=True)

    atexit.register(report)  # task.react exits the process
    sys.path.insert(0, os.getcwd())
    task.react(lambda _r: defer.Deferred.fromCoroutine(main_()))


if __name__ == "__main__":
    main()
