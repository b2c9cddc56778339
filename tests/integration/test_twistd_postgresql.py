"""
`twistd conduit` on the postgresql backend: it starts on a throw-away
cluster (tests/postgresql.py), and a bad URL, an unreachable server, a
refused login or a database in use stop start-up with one line naming
C{database_url}, never a traceback.
"""

from __future__ import annotations

import os
import subprocess

from twisted.trial import unittest

from tests.integration.process import TWISTD, ServerProcess
from tests.postgresql import cluster, database_url


class TwistdPostgreSQLTests(unittest.TestCase):
    """The real command line with C{database_backend = "postgresql"}."""

    def server(self, url: str, extra: str = "") -> ServerProcess:
        server = ServerProcess(self.mktemp(), extra_env={"CONDUIT_DATABASE_URL": url})
        self.addCleanup(server.stop)
        with open(server.config_path, "a") as f:
            f.write('database_backend = "postgresql"\n' + extra)
        return server

    def refused(self, server: ServerProcess) -> str:
        proc = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "conduit", "--config", server.config_path],
            capture_output=True, text=True, timeout=60, cwd=server.workdir, env=server.env,
        )
        output = proc.stdout + proc.stderr
        self.assertNotEqual(proc.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertIn("database_url", output)
        return output

    def test_starts_and_restarts(self) -> None:
        """The server runs on PostgreSQL and finds its data (its key) again."""
        server = self.server(database_url(self))
        server.start(timeout=60)
        status, body = server.get("/_matrix/key/v2/server")
        self.assertEqual(status, 200)
        server.stop()
        server.start(timeout=60)
        self.assertEqual(server.get("/_matrix/key/v2/server")[1]["verify_keys"], body["verify_keys"])

    def test_password_file(self) -> None:
        """The password may come from database_password_file."""
        c = cluster()
        name = database_url(self).split("@/", 1)[1].split("?")[0]
        if not c.admin("SELECT 1 FROM pg_roles WHERE rolname = 'alice_pf'"):
            c.admin("CREATE ROLE alice_pf LOGIN PASSWORD 'right'")
        c.admin(f'ALTER DATABASE "{name}" OWNER TO alice_pf')
        secret = os.path.abspath(self.mktemp())
        with open(secret, "w") as f:
            f.write("right\n")
        server = self.server(
            c.url(name, user="alice_pf"), f'database_password_file = "{secret}"\n'
        )
        server.start(timeout=60)
        self.assertEqual(server.get("/_matrix/client/versions")[0], 200)

    def test_bad_url(self) -> None:
        output = self.refused(self.server("this is not a url"))
        self.assertIn("not a libpq URI", output)

    def test_unreachable(self) -> None:
        output = self.refused(self.server("postgresql://postgres@127.0.0.1:1/x?connect_timeout=3"))
        self.assertIn("cannot connect", output)

    def test_wrong_password(self) -> None:
        c = cluster()
        if not c.admin("SELECT 1 FROM pg_roles WHERE rolname = 'bob_wp'"):
            c.admin("CREATE ROLE bob_wp LOGIN PASSWORD 'right'")
        output = self.refused(self.server(c.url("postgres", user="bob_wp", password="wrong")))
        self.assertIn("password authentication failed", output)

    def test_database_in_use(self) -> None:
        """A second server on the same database is refused (advisory lock)."""
        url = database_url(self)
        first = self.server(url)
        first.start(timeout=60)
        output = self.refused(self.server(url))
        self.assertIn("in use by another conduit-tw process", output)
