"""
Faults on the postgresql backend with the real server (issue 19):
PostgreSQL stopped and started again under a send loop (the sends in the
gap fail with a 503, the client's retries with the same transaction IDs
succeed once it is back, nothing acknowledged is lost or doubled, the
server recovers by itself), and C{kill -9} of our server under a send
loop (everything acknowledged is there after a restart).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from twisted.trial import unittest

from tests.integration.nio_support import OPEN_REGISTRATION, server_config
from tests.integration.process import ServerProcess
from tests.integration.test_copy_database import register
from tests.postgresql import PostgreSQLCluster, cluster, database_url


class SendLoop(threading.Thread):
    """
    Sends messages 0..count-1 to a room, each retried with the same
    transaction ID until it is acknowledged (200) or the loop is stopped.
    """

    def __init__(self, server: ServerProcess, room: str, token: str, count: int) -> None:
        super().__init__(daemon=True)
        self.server, self.room, self.token, self.count = server, room, token, count
        #: Message number -> event ID, for every acknowledged send.
        self.acked: dict[int, str] = {}
        #: Status codes of refused attempts, and exceptions (server gone).
        self.refused: list[int] = []
        self.errors: list[BaseException] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        for i in range(self.count):
            while not self.stopped.is_set():
                try:
                    status, body = self.server.call(
                        "PUT",
                        f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/loop{i}",
                        {"msgtype": "m.text", "body": f"m {i}"}, self.token,
                    )
                except Exception as e:
                    self.errors.append(e)
                    return
                if status == 200:
                    self.acked[i] = body["event_id"]
                    break
                self.refused.append(status)
                time.sleep(0.1)
            if self.stopped.is_set():
                return

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            if time.monotonic() > deadline or not self.is_alive():
                raise AssertionError(f"only {len(self.acked)} sends acknowledged: {self.errors}")
            time.sleep(0.02)


class PostgreSQLFaultTests(unittest.TestCase):
    """The real server on PostgreSQL, with faults."""

    def make_server(self, url: str) -> ServerProcess:
        server = ServerProcess(self.mktemp(), extra_env={"CONDUIT_DATABASE_URL": url})
        with open(server.config_path, "w") as f:
            f.write(server_config(
                server.data, server.port,
                OPEN_REGISTRATION + "rc_message_per_second = 0\n"
                'database_backend = "postgresql"\n',
            ))
        self.addCleanup(server.stop)
        return server

    def room_with_user(self, server: ServerProcess) -> tuple[str, str]:
        token = register(server, "alice")
        status, answer = server.call("POST", "/_matrix/client/v3/createRoom", {}, token)
        self.assertEqual(status, 200, answer)
        return answer["room_id"], token

    def send_loop(self, url: str, count: int, acked: int) -> tuple[ServerProcess, str, str, SendLoop]:
        """A server on C{url} with a room, and a L{SendLoop} of C{count} that has C{acked} acknowledged."""
        server = self.make_server(url)
        server.start(timeout=60)
        room, token = self.room_with_user(server)
        loop = SendLoop(server, room, token, count)
        loop.start()
        self.addCleanup(loop.stopped.set)
        loop.wait_for(acked)
        return server, room, token, loop

    def history(self, server: ServerProcess, room: str, token: str) -> list[tuple[str, str]]:
        """(body, event ID) of every message of the room, oldest first."""
        out: list[tuple[str, str]] = []
        start = ""
        while True:
            status, page = server.call(
                "GET",
                f"/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100{start}", None, token,
            )
            self.assertEqual(status, 200, page)
            out += [
                (e["content"]["body"], e["event_id"])
                for e in page["chunk"] if e["type"] == "m.room.message"
            ]
            if not page["chunk"] or "end" not in page:
                return out
            start = f"&from={page['end']}"

    def assertAllThere(self, server: ServerProcess, room: str, token: str, loop: SendLoop) -> list[tuple[str, str]]:
        history = self.history(server, room, token)
        found = dict(history)
        for i, event_id in loop.acked.items():
            self.assertEqual(found.get(f"m {i}"), event_id, f"acknowledged message {i} lost")
        bodies = [body for body, _ in history]
        self.assertEqual(len(bodies), len(set(bodies)), "a retried message was stored twice")
        return history

    def test_postgresql_restart_under_send_loop(self) -> None:
        """
        PostgreSQL stops and starts again while messages are being sent:
        the sends in the gap get a 503, their retries succeed afterwards,
        every acknowledged message is there once, in order.
        """
        bin_dir = cluster().bin_dir  # skips (or fails under CI) without PostgreSQL
        # A cluster of its own: stopping it must not disturb other tests.
        pg = PostgreSQLCluster(bin_dir)
        self.addCleanup(pg.stop)
        server, room, token, loop = self.send_loop(pg.url(pg.create_database()), 120, 20)
        pg.stop_server()
        time.sleep(1.5)  # sends go on failing meanwhile
        down = len(loop.refused)
        pg.start_server()
        loop.join(120)
        self.assertFalse(loop.is_alive(), "the send loop did not finish")
        self.assertEqual(loop.errors, [])
        self.assertEqual(len(loop.acked), 120)
        self.assertGreater(down, 0, "no send failed while PostgreSQL was down")
        self.assertEqual(set(loop.refused), {503})
        self.assertIsNone(server.proc.poll(), "the server exited")

        history = self.assertAllThere(server, room, token, loop)
        self.assertEqual([b for b, _ in history], [f"m {i}" for i in range(120)])
        # Sync works on and the server keeps its data over a restart.
        status, body = server.call("GET", "/_matrix/client/v3/sync", None, token)
        self.assertEqual(status, 200, body)
        self.assertIn(room, body["rooms"]["join"])
        log = server.log()
        with open(os.path.join(server.workdir, "first-run.log"), "w") as f:
            f.write(log)
        # The failures are logged in one line each, no traceback.
        self.assertIn("lost the connection to PostgreSQL", log)
        self.assertNotIn("Traceback", log)
        server.stop()
        server.start(timeout=60)
        self.assertEqual(self.history(server, room, token), history)

    def test_kill_9_under_send_loop(self) -> None:
        """kill -9 of the server mid-loop: everything acknowledged survives."""
        server, room, token, loop = self.send_loop(database_url(self), 10_000, 40)
        server.kill()
        loop.join(60)
        self.assertFalse(loop.is_alive())
        acked = dict(loop.acked)
        self.assertGreaterEqual(len(acked), 40)
        server.start(timeout=60)  # the advisory lock of the killed one is gone
        self.assertAllThere(server, room, token, loop)
        # And it goes on.
        status, _ = server.call(
            "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/after",
            {"msgtype": "m.text", "body": "after"}, token,
        )
        self.assertEqual(status, 200)
