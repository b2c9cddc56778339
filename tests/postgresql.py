"""
A throw-away PostgreSQL cluster for the tests of the postgresql backend.

One cluster per test process, made on first use: C{initdb} into a fresh
temporary directory, C{pg_ctl start} listening only on a unix socket in that
directory (no TCP port to collide on), stopped and removed when the process
exits. Each test gets a database of its own (L{PostgreSQLCluster.new_url}),
dropped in its cleanup.

The binaries are looked up on C{PATH}, then in Debian's
C{/usr/lib/postgresql/<version>/bin}. When they are missing the tests are
skipped, except under CI (C{CI} set), where that is an error: C{.ci/run}
installs the system's C{postgresql} package first. As root (CI), the
cluster runs as the C{postgres} user (C{nobody} if there is none): PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from typing import Any

from twisted.trial.unittest import SkipTest

_counter = itertools.count()


def find_bin_dir() -> str | None:
    """The directory holding C{initdb} and C{pg_ctl}, or C{None}."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    return None


class PostgreSQLCluster:
    """A running cluster in a temporary directory (see the module docstring)."""

    def __init__(self, bin_dir: str, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        #: Whether commits are fsynced (benchmarks); tests run without.
        self.durable = durable
        self.dir = tempfile.mkdtemp(prefix="conduit-pg-")
        self.data = os.path.join(self.dir, "data")
        self.socket_dir = self.dir
        self.prefix: list[str] = []
        self.user = pwd.getpwuid(os.getuid()).pw_name
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                entry = pwd.getpwnam("nobody")
            self.user = entry.pw_name
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", self.user, "--"]
        self._run(
            "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale", "C",
        )
        # The superuser logs in without a password; every other role needs
        # its own (tests of a refused login).
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all postgres trust\nlocal all all scram-sha-256\n")
        self.start_server()
        atexit.register(self.stop)

    def start_server(self) -> None:
        """Start the server (again), on the cluster's unix socket."""
        self._run(
            "pg_ctl", "-D", self.data, "-w", "-s", "-l", os.path.join(self.dir, "log"),
            "-o", f"-k {self.socket_dir} -c listen_addresses='' -c max_connections=200"
            + ("" if self.durable else " -c fsync=off -c full_page_writes=off"),
            "start",
        )

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server (C{fast}: disconnect every session), keeping the cluster."""
        self._run("pg_ctl", "-D", self.data, "-w", "-s", "-m", mode, "stop")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.prefix, os.path.join(self.bin_dir, tool), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def url(self, dbname: str = "postgres", user: str = "postgres", password: str = "") -> str:
        """A libpq URI for C{dbname} over the cluster's unix socket."""
        auth = user + (":" + password if password else "")
        return f"postgresql://{auth}@/{dbname}?host={self.socket_dir}"

    def admin(self, sql: str, *params: Any) -> Any:
        """Run one statement as the superuser in database C{postgres}."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else None

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"t{os.getpid()}_{next(_counter)}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop C{name}, ending any connection still open to it."""
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if os.path.exists(self.data):
            try:
                self._run("pg_ctl", "-D", self.data, "-w", "-s", "-m", "immediate", "stop")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


_cluster: PostgreSQLCluster | None = None


def cluster() -> PostgreSQLCluster:
    """
    The cluster of this process, started on first use.

    @raise SkipTest: PostgreSQL is not installed (outside CI only).
    """
    global _cluster
    if _cluster is None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            message = (
                "PostgreSQL is not installed (initdb not found); `make postgresql` "
                "(or .ci/run) installs it"
            )
            if os.environ.get("CI"):
                raise RuntimeError(message)
            raise SkipTest(message)
        _cluster = PostgreSQLCluster(bin_dir)
    return _cluster


def database_url(case: Any) -> str:
    """A URL of a fresh database, dropped when test C{case} is done."""
    c = cluster()
    name = c.create_database()
    case.addCleanup(c.drop_database, name)
    return c.url(name)
