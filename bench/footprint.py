"""
What the idle memory floor is made of: imports the server the way
C{twistd conduit} does, stage by stage, printing the RSS after each, then
starts it on a fresh database (no TLS listener, federation as configured
by default) and prints the Python heap by top-level package (tracemalloc,
which counts only allocations made by Python code: the rest of the RSS is
the interpreter, shared libraries and C extensions' own memory).

    .venv/bin/python bench/footprint.py [--top 15]

For the RSS of the real process next to Synapse, see bench/startup.py
(as started) and bench/registrations.py (after a workload).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tracemalloc

# --heap: trace Python allocations from the start (this inflates the RSS
# figures: run without it for those).
if "--heap" in sys.argv:
    tracemalloc.start()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def package_of(filename: str) -> str:
    """The top-level package a source file belongs to (or the stdlib)."""
    parts = filename.replace("\\", "/").split("/")
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else "?"
    if "conduit_tw" in parts:
        i = parts.index("conduit_tw")
        return "conduit_tw." + parts[i + 1].removesuffix(".py") if i + 1 < len(parts) else "conduit_tw"
    if filename.startswith("<"):
        return filename
    return "(stdlib)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--heap", action="store_true", help="tracemalloc, by package")
    parser.add_argument(
        "--eager-tls", action="store_true", help="import TLS with the reactor, as before"
    )
    parser.add_argument(
        "--eager-h2-admin", action="store_true",
        help="import h2 with twisted.web and the admin command table with the server, as before",
    )
    args = parser.parse_args()
    stages = [("python", rss_mb())]

    from conduit_tw import lazy_tls

    if args.eager_tls:
        import twisted.protocols.tls  # noqa: F401
    else:
        lazy_tls.install()
    from twisted.internet import reactor

    stages.append((f"reactor (TLS {'eager' if args.eager_tls else 'lazy'})", rss_mb()))
    if args.eager_h2_admin:
        # What twisted.web.http imported before lazy_tls stood in for _http2.
        import h2.config, h2.connection, h2.errors, h2.events, h2.exceptions  # noqa: F401,E401
    import twisted.web.server  # noqa: F401

    stages.append(("twisted.web.server", rss_mb()))
    from conduit_tw.config import load_config

    stages.append(("conduit_tw.config", rss_mb()))
    import conduit_tw.tap  # noqa: F401  (homeserver, service, handlers, api)

    if args.eager_h2_admin:
        import conduit_tw.handlers.admin_groups  # noqa: F401  (built at start before)

    stages.append(("conduit_tw.tap (every module)", rss_mb()))
    from conduit_tw.service import make_service

    workdir = tempfile.mkdtemp(prefix="footprint-")
    path = os.path.join(workdir, "conduit.toml")
    with open(path, "w") as f:
        f.write(
            '[global]\nserver_name = "localhost"\n'
            f'database_path = "{workdir}/data"\naddress = "127.0.0.1"\n'
        )
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(path, "a") as f:
        f.write(f"port = {port}\n")
    service = make_service(load_config(path))
    service.startService()
    reactor.callLater(2.0, reactor.stop)
    reactor.run()
    stages.append(("started, idle 2 s (heap trimmed)", rss_mb()))
    print(f"{'stage':<32} {'RSS MB':>7} {'+MB':>6}")
    last = 0.0
    for name, mb in stages:
        print(f"{name:<32} {mb:>7.1f} {mb - last:>+6.1f}")
        last = mb
    print("TLS loaded:", "OpenSSL" in sys.modules)
    # Code is most of the heap: the compiled modules loaded, by package.
    code: dict[str, list[int]] = {}
    for name, module in list(sys.modules.items()):
        cached = getattr(module, "__cached__", None)
        if cached and os.path.exists(cached):
            top = name.split(".")[0]
            if top == "conduit_tw" and "." in name:
                top = ".".join(name.split(".")[:2])
            entry = code.setdefault(top, [0, 0])
            entry[0] += 1
            entry[1] += os.path.getsize(cached)
    print(f"\nmodules loaded: {sum(n for n, _ in code.values())}; compiled code (.pyc bytes) by package:")
    for key, (n, size) in sorted(code.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"  {key:<40} {n:>4} modules {size / 2**20:>6.2f} MB")
    if not args.heap:
        return
    snapshot = tracemalloc.take_snapshot()
    per: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        key = package_of(stat.traceback[0].filename)
        per[key] = per.get(key, 0) + stat.size
    total = sum(per.values())
    print(f"\nPython heap (tracemalloc): {total / 2**20:.1f} MB; by the file that allocated it")
    print("(<frozen importlib...> is module code and namespaces being loaded):")
    for key, size in sorted(per.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {key:<40} {size / 2**20:>6.2f} MB")

if __name__ == "__main__":
    main()
