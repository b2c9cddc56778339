"""
Moving a server between backends with the copy command
(conduit_tw/copy_database.py): a real server on SQLite is populated through
the client API, stopped, copied SQLite -> PostgreSQL -> LMDB with the
command line, every tree is identical in the three databases, and the
server started on each copy still has its users, rooms and history.
Refusals (non-empty target, bad target, the source itself) are one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.storage.copy import digest_tree
from conduit_tw.storage.database import open_database
from tests.integration.nio_support import OPEN_REGISTRATION, server_config
from tests.integration.process import TWISTD, ServerProcess
from tests.postgresql import database_url

COPY = [os.path.join(os.path.dirname(sys.executable), "conduit-copy-database")]


def register(server: ServerProcess, name: str) -> str:
    """Register C{name} (open registration, m.login.dummy); its access token."""
    body = {"username": name, "password": f"pw-{name}-long-enough"}
    status, answer = server.call("POST", "/_matrix/client/v3/register", body)
    assert status == 401, answer
    body["auth"] = {"type": "m.login.dummy", "session": answer["session"]}
    status, answer = server.call("POST", "/_matrix/client/v3/register", body)
    assert status == 200, answer
    return answer["access_token"]


def login(server: ServerProcess, name: str) -> str:
    """Log C{name} in with its password; the access token."""
    status, answer = server.call("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": name},
        "password": f"pw-{name}-long-enough",
    })
    assert status == 200, answer
    return answer["access_token"]


class CopyDatabaseTests(unittest.TestCase):
    """The copy command on real servers and a throw-away PostgreSQL cluster."""

    def make_server(self, workdir: str, data: str, extra: str = "", env: dict | None = None) -> ServerProcess:
        server = ServerProcess(workdir, extra_env=env)
        with open(server.config_path, "w") as f:
            f.write(server_config(data, server.port, OPEN_REGISTRATION + "rc_message_per_second = 0\n" + extra))
        self.addCleanup(server.stop)
        return server

    def copy(self, config: str, target: str, env: dict | None = None, twistd: bool = False) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
        environ.update(env or {})
        if twistd:
            cmd = TWISTD + ["conduit", "--config", config, "--copy-database-to", target]
        else:
            cmd = COPY + ["--config", config, target]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=environ)

    def assertCopied(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("verified:", proc.stdout)
        self.assertNotIn("Traceback", proc.stdout + proc.stderr)

    def assertRefused(self, proc: subprocess.CompletedProcess[str], text: str) -> None:
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertIn(text, proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)

    def populate(self, server: ServerProcess) -> dict:
        """Two users, two rooms, messages; what the copy must keep."""
        alice, bob = register(server, "alice"), register(server, "bob")
        rooms = {}
        for name in ("general", "random"):
            status, answer = server.call(
                "POST", "/_matrix/client/v3/createRoom",
                {"name": name, "preset": "public_chat", "room_alias_name": name}, alice,
            )
            assert status == 200, answer
            room = answer["room_id"]
            assert server.call("POST", f"/_matrix/client/v3/join/{room}", {}, bob)[0] == 200
            for i in range(30):
                token = alice if i % 2 else bob
                status, answer = server.call(
                    "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t{name}{i}",
                    {"msgtype": "m.text", "body": f"{name} {i}"}, token,
                )
                assert status == 200, answer
            rooms[name] = room
        return rooms

    def history(self, server: ServerProcess, room: str, token: str) -> list[str]:
        status, answer = server.call(
            "GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100", None, token
        )
        assert status == 200, answer
        return [e["content"]["body"] for e in answer["chunk"] if e["type"] == "m.room.message"]

    def check_server(self, server: ServerProcess, rooms: dict, expected: dict) -> None:
        """Users log in with their passwords, rooms and history are all there."""
        server.start(timeout=60)
        try:
            alice = login(server, "alice")
            bob = login(server, "bob")
            status, joined = server.call("GET", "/_matrix/client/v3/joined_rooms", None, bob)
            self.assertEqual((status, sorted(joined["joined_rooms"])), (200, sorted(rooms.values())))
            for name, room in rooms.items():
                self.assertEqual(self.history(server, room, alice), expected[name])
                status, answer = server.call(
                    "GET", f"/_matrix/client/v3/directory/room/%23{name}:localhost"
                )
                self.assertEqual((status, answer.get("room_id")), (200, room))
            # And it goes on: a new message on the copy.
            room = rooms["general"]
            status, _ = server.call(
                "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/after",
                {"msgtype": "m.text", "body": "after the move"}, alice,
            )
            self.assertEqual(status, 200)
            self.assertEqual(self.history(server, room, bob)[0], "after the move")
        finally:
            server.stop()

    async def digests(self, backend: str, path: str, options: dict) -> dict:
        db = open_database(backend, path, options)
        try:
            from conduit_tw.storage.database import database_ready

            await database_ready(db)
            out = {}
            for name in await db.tree_names():
                d = await digest_tree(db.open_tree(name))
                if d.rows:
                    out[name] = (d.rows, d.sha256)
            return out
        finally:
            db.close()

    def test_sqlite_to_postgresql_to_lmdb(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._round_trip())

    async def _round_trip(self) -> None:
        base = os.path.abspath(self.mktemp())
        data = os.path.join(base, "sqlite-data")
        source = self.make_server(os.path.join(base, "sqlite"), data)
        source.start(timeout=60)
        rooms = self.populate(source)
        token = login(source, "alice")
        expected = {name: self.history(source, room, token) for name, room in rooms.items()}
        self.assertEqual(len(expected["general"]), 30)
        source.stop()

        # SQLite -> PostgreSQL, with the console script.
        url = database_url(self)
        proc = self.copy(source.config_path, url)
        self.assertCopied(proc)
        self.assertIn("database_backend = \"postgresql\"", proc.stdout)
        # Copying again is refused: the target holds data now.
        self.assertRefused(self.copy(source.config_path, url), "not empty")

        # PostgreSQL -> LMDB, with twistd, the config naming PostgreSQL.
        pg = self.make_server(
            os.path.join(base, "pg"), data, 'database_backend = "postgresql"\n',
            env={"CONDUIT_DATABASE_URL": url},
        )
        lmdb_dir = os.path.join(base, "lmdb-data")
        # While a server runs on it, PostgreSQL refuses the copy (advisory lock).
        pg.start(timeout=60)
        refused = self.copy(pg.config_path, f"lmdb:{lmdb_dir}", {"CONDUIT_DATABASE_URL": url})
        self.assertRefused(refused, "in use by another conduit-tw process")
        self.assertNotIn("copied", refused.stdout)
        pg.stop()
        shutil.rmtree(lmdb_dir, ignore_errors=True)
        proc = self.copy(pg.config_path, f"lmdb:{lmdb_dir}", {"CONDUIT_DATABASE_URL": url}, twistd=True)
        self.assertCopied(proc)

        # The three databases hold the same trees, row for row.
        sqlite_trees = await self.digests("sqlite", data, {})
        self.assertIn("global", sqlite_trees)
        self.assertGreater(len(sqlite_trees), 20)
        pg_trees = await self.digests("postgresql", self.mktemp(), {"database_url": url})
        lmdb_trees = await self.digests("lmdb", lmdb_dir, {})
        self.assertEqual(pg_trees, sqlite_trees)
        self.assertEqual(lmdb_trees, sqlite_trees)

        # The server runs on each copy (media would stay in database_path).
        self.check_server(pg, rooms, expected)
        on_lmdb = self.make_server(
            os.path.join(base, "lmdb"), lmdb_dir, 'database_backend = "lmdb"\n'
        )
        self.check_server(on_lmdb, rooms, expected)

    def test_refusals(self) -> None:
        """Bad targets and a missing source stop with one line, exit status 1."""
        base = os.path.abspath(self.mktemp())
        data = os.path.join(base, "data")
        server = self.make_server(os.path.join(base, "s"), data)
        server.start(timeout=60)
        server.stop()
        config = server.config_path
        self.assertRefused(self.copy(config, "/some/where"), "expected postgresql://")
        self.assertRefused(self.copy(config, "nosuchbackend:/x"), "unknown database_backend")
        self.assertRefused(self.copy(config, f"sqlite:{data}"), "the configured database itself")
        self.assertRefused(self.copy(config, "postgresql://postgres@127.0.0.1:1/x?connect_timeout=3"),
                           "cannot connect")
        # An LMDB target that holds data is refused untouched.
        target = os.path.join(base, "lmdb")
        self.assertCopied(self.copy(config, f"lmdb:{target}"))
        self.assertRefused(self.copy(config, f"lmdb:{target}"), "not empty")
        missing = self.make_server(os.path.join(base, "m"), os.path.join(base, "nothing"))
        self.assertRefused(self.copy(missing.config_path, f"lmdb:{base}/x"), "is not a directory")
