"""
Bench helpers: start conduit-tw and, when available, a local Synapse on
free loopback ports, so every figure is a same-run ratio.

Synapse is found through $SYNAPSE_PYTHON (a Python that can import
`synapse`), else the current interpreter if it can. bench/setup-synapse.sh
creates such an environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator, Union

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.integration.process import ServerProcess, free_port  # noqa: E402
from tests.postgresql import PostgreSQLCluster, find_bin_dir  # noqa: E402

_cluster: PostgreSQLCluster | None = None


def postgresql_cluster() -> PostgreSQLCluster:
    """
    The PostgreSQL cluster of this bench run, shared by conduit-tw and
    Synapse on PostgreSQL (a database each): initdb in a temporary directory,
    unix socket only, with fsync on (commits durable, like SQLite's), removed
    at exit.
    """
    global _cluster
    if _cluster is None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise SystemExit("PostgreSQL is not installed: `make postgresql` installs it")
        _cluster = PostgreSQLCluster(bin_dir, durable=True)
    return _cluster


def postgresql_size(name: str) -> int:
    """The size of database C{name} in bytes (pg_database_size)."""
    return int(postgresql_cluster().admin("SELECT pg_database_size(%s)", name)[0][0])


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synapse_python() -> str | None:
    """A Python interpreter that can import synapse, or None."""
    candidates = [os.environ.get("SYNAPSE_PYTHON"), sys.executable,
                  os.path.join(os.path.dirname(HERE), ".venv-synapse", "bin", "python")]
    for py in candidates:
        if py and os.path.exists(py):
            ok = subprocess.run([py, "-c", "import synapse"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


class SynapseProcess:
    """
    A throwaway Synapse on a free loopback port, with SQLite or, with
    C{backend="postgresql"}, a database of L{postgresql_cluster} (psycopg2
    in Synapse's environment: bench/setup-synapse.sh installs it).
    """

    def __init__(self, python: str, extra_config: str = "", backend: str = "sqlite") -> None:
        self.python = python
        self.backend = backend
        #: The PostgreSQL database's name, with C{backend="postgresql"}.
        self.dbname: str | None = None
        self.dir = tempfile.mkdtemp(prefix="bench-synapse-")
        self.port = free_port()
        self.config = os.path.join(self.dir, "homeserver.yaml")
        subprocess.run(
            [python, "-m", "synapse.app.homeserver", "--server-name", "localhost",
             "--config-path", self.config, "--data-directory", self.dir,
             "--generate-config", "--report-stats=no"],
            check=True, capture_output=True, cwd=self.dir,
        )
        with open(self.config) as f:
            text = f.read()
        text = re.sub(r"port: 8008", f"port: {self.port}", text)
        text = text.replace("bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']")
        text += "\nsuppress_key_server_warning: true\ntrusted_key_servers: []\n" + extra_config
        if backend == "postgresql":
            pg = postgresql_cluster()
            self.dbname = pg.create_database()
            text, n = re.subn(
                r"database:\n  name: sqlite3\n  args:\n    database: .*\n",
                "database:\n  name: psycopg2\n  args:\n"
                f"    user: postgres\n    database: {self.dbname}\n    host: {pg.socket_dir}\n"
                "    cp_min: 5\n    cp_max: 10\n",
                text,
            )
            if n != 1:
                raise RuntimeError("Synapse's generated config has no SQLite database section")
        with open(self.config, "w") as f:
            f.write(text)
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> float:
        """Start and wait for /versions; returns seconds to the first answer."""
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [self.python, "-m", "synapse.app.homeserver", "-c", self.config],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        while time.monotonic() - began < timeout:
            try:
                with urllib.request.urlopen(self.base_url + "/_matrix/client/versions", timeout=1):
                    return time.monotonic() - began
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("synapse did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


#: conduit-tw config lines: open registration, rate limits off.
CONDUIT_OPEN = (
    "allow_registration = true\n"
    "yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse = true\n"
    "rc_message_per_second = 0\n"
    "rc_registration_per_second = 0\n"
    "rc_login_per_second = 0\n"
    "rc_joins_per_second = 0\n"
)


def synapse_open(rate: int) -> str:
    """Synapse config lines: open registration, every rate limit at C{rate}/s (and burst)."""
    r = f"{{per_second: {rate}, burst_count: {rate}}}"
    return f"""
enable_registration: true
enable_registration_without_verification: true
rc_message: {r}
rc_registration: {r}
rc_login: {{address: {r}, account: {r}, failed_attempts: {r}}}
rc_joins: {{local: {r}, remote: {r}}}
rc_joins_per_room: {r}
rc_room_creation: {r}
rc_invites: {{per_room: {r}, per_user: {r}, per_issuer: {r}}}
rc_presence: {{per_user: {r}}}
"""


class ConduitProcess(ServerProcess):
    """A throwaway conduit-tw: L{cleanup} stops it and deletes its directory."""

    #: The PostgreSQL database's name, on the postgresql backend.
    dbname: str | None = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def conduit_server(backend: str = "sqlite", extra: str = "") -> ConduitProcess:
    """
    A throwaway conduit-tw server process; on C{postgresql}, with a database
    of L{postgresql_cluster} (its name in the server's C{dbname}).
    """
    workdir = tempfile.mkdtemp(prefix="bench-conduit-")
    port = free_port()
    dbname = None
    if backend == "postgresql":
        pg = postgresql_cluster()
        dbname = pg.create_database()
        extra = f'database_url = "{pg.url(dbname)}"\n' + extra
    text = (
        "[global]\n"
        'server_name = "localhost"\n'
        f'database_path = "{workdir}/data"\n'
        f'database_backend = "{backend}"\n'
        'address = "127.0.0.1"\n'
        f"port = {port}\n" + extra
    )
    server = ConduitProcess(workdir, config_text=text)
    server.port = port
    server.dbname = dbname
    return server


@contextlib.contextmanager
def started(server: Union[ConduitProcess, SynapseProcess]) -> Iterator[float]:
    """Start C{server}, yield the seconds it took to answer, and always clean it up."""
    try:
        yield server.start()
    finally:
        server.cleanup()
