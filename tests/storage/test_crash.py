"""
Crash safety: a writer killed with SIGKILL mid-stream loses nothing it
reported as written, and leaves no batch half-applied.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from twisted.trial import unittest

import tests
from conduit_tw.storage.database import open_database
from conduit_tw.storage.keys import from_u64, u64
from tests.storage.crash_writer import KEYS_PER_TREE, TREES, key, value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))
WANTED = 40  # acknowledged batches to read before the kill
DEADLINE = 20.0


if TYPE_CHECKING:  # a mixin for TestCase: let type checkers see its methods
    _Base = unittest.TestCase
else:
    _Base = object


class CrashMixin(_Base):
    """The kill -9 test, for L{backend}."""

    backend: str

    def test_kill_during_writes(self) -> None:
        path = os.path.abspath(self.mktemp())
        reported = self.run_and_kill(path)
        self.check(path, reported)
        # Once more on the same database: it reopens after a crash and the
        # writer goes on from the last batch it finds.
        more = self.run_and_kill(path)
        self.assertGreater(more[0], reported[-1])
        self.check(path, more)

    def run_and_kill(self, path: str) -> list[int]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (ROOT, env.get("PYTHONPATH")) if p
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.storage.crash_writer", self.backend, path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

        def reap() -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()

        self.addCleanup(reap)
        reported: list[int] = []
        stdout = proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + DEADLINE
        while len(reported) < WANTED:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                proc.kill()
                proc.wait()
                raise self.failureException(
                    f"writer gave {len(reported)} numbers; stderr:\n"
                    + proc.stderr.read().decode(errors="replace")
                )
            if select.select([stdout], [], [], left)[0]:
                line = stdout.readline()
                if line.endswith(b"\n"):
                    reported.append(int(line))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        # Lines printed before the kill but not read yet were acknowledged too.
        for line in stdout.read().split(b"\n")[:-1]:
            reported.append(int(line))
        self.assertEqual(
            reported, list(range(reported[0], reported[0] + len(reported)))
        )
        return reported

    def check(self, path: str, reported: list[int]) -> None:
        db = open_database(self.backend, path)
        try:
            trees = {name: db.open_tree(name) for name in TREES}
            per_batch: dict[int, int] = {}
            for name, tree in trees.items():
                for k, v in self.successResultOf(tree.iter_from(b"")):
                    if k == b"last":
                        continue
                    n, j = from_u64(k[:8]), from_u64(k[8:])
                    self.assertEqual(v, value(name, n, j))
                    per_batch[n] = per_batch.get(n, 0) + 1
            # No batch is partly there ...
            partial = {n: c for n, c in per_batch.items() if c != len(TREES) * KEYS_PER_TREE}
            self.assertEqual(partial, {})
            # ... every acknowledged one is, and there are no gaps (batches
            # committed but not yet reported may follow).
            last = from_u64(self.successResultOf(trees[TREES[0]].get(b"last")))
            self.assertGreaterEqual(last, reported[-1])
            self.assertEqual(sorted(per_batch), list(range(last + 1)))
            for n in reported[-3:]:
                got = self.successResultOf(trees[TREES[1]].get(key(n, 0)))
                self.assertEqual(got, value(TREES[1], n, 0))
            self.assertEqual(self.successResultOf(db.open_tree("global").get(b"schema_version")), u64(1))
        finally:
            db.close()


class SQLiteCrashTests(CrashMixin, unittest.TestCase):
    backend = "sqlite"


class LMDBCrashTests(CrashMixin, unittest.TestCase):
    backend = "lmdb"
