"""
Start-up benchmark: seconds from spawning the process to the first answer
on /_matrix/client/versions on a fresh database, and resident memory right
after start. Runs conduit-tw (both backends) and, when available, Synapse
in the same run, and prints ratios. Targets: <= 0.5 s and <= 40 MB.

The row "sqlite, TLS eager" is conduit-tw started with the TLS stack
imported before the reactor (as before C{conduit_tw.lazy_tls}), and
"sqlite, h2+admin eager" with what the second round made lazy imported
first (the C{h2} modules C{twisted.web} imported, the admin room's command
table), for the differences in the same run.

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

from _servers import SynapseProcess, conduit_server, rss_mb, started, synapse_python


#: twistd with TLS imported first: what the reactor loaded before lazy_tls.
EAGER_TLS = [
    sys.executable, "-c",
    "import sys, twisted.protocols.tls; from twisted.scripts.twistd import run; "
    "sys.argv[0] = 'twistd'; run()",
]

#: twistd with the h2 modules (imported by twisted.web.http, even when
#: HTTP/2 then turns out unavailable) and the admin command table imported
#: first: the state before they were made lazy.
EAGER_H2_ADMIN = [
    sys.executable, "-c",
    "import sys; from conduit_tw import lazy_tls; lazy_tls.install(); "
    "import h2.config, h2.connection, h2.errors, h2.events, h2.exceptions; "
    "import conduit_tw.handlers.admin_groups; "
    "from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
]


def measure(
    make_server: Callable[[], Any], runs: int, cmd: list[str] | None = None
) -> tuple[float, float]:
    """Median seconds to the first answer and RSS (MB) just after, over C{runs} fresh servers."""
    times, mems = [], []
    for _ in range(runs):
        server = make_server()
        if cmd is not None:
            start = server.start
            server.start = lambda: start(
                timeout=120.0, cmd=cmd + ["-n", "--pidfile=", "conduit"] + server.args
            )
        with started(server) as seconds:
            times.append(seconds)
            time.sleep(0.5)
            mems.append(rss_mb(server.proc.pid))
    return statistics.median(times), statistics.median(mems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for backend in ("sqlite", "lmdb"):
        results[f"conduit-tw/{backend}"] = measure(lambda: conduit_server(backend), args.runs)
    results["sqlite, TLS eager"] = measure(lambda: conduit_server("sqlite"), args.runs, EAGER_TLS)
    results["sqlite, h2+admin eager"] = measure(
        lambda: conduit_server("sqlite"), args.runs, EAGER_H2_ADMIN
    )
    py = synapse_python()
    if py:
        results["synapse"] = measure(lambda: SynapseProcess(py), max(1, args.runs // 2))
    print(f"{'server':<20} {'start-up s':>10} {'RSS MB':>8}")
    for name, (t, m) in results.items():
        print(f"{name:<20} {t:>10.3f} {m:>8.1f}")
    if "synapse" in results:
        st, sm = results["synapse"]
        for name, (t, m) in results.items():
            if name != "synapse":
                print(f"{name}: start-up {st / t:.1f}x faster, {sm / m:.1f}x less memory than Synapse")
    else:
        print("(Synapse not importable: set SYNAPSE_PYTHON or run bench/setup-synapse.sh)")


if __name__ == "__main__":
    main()
