"""
CI's counting (.ci/summarize): run trial on a small generated test module and
check the closing line CI reads, so expected failures without an issue and
skips cannot hide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent
SUMMARIZE = ROOT / ".ci" / "summarize"

_MODULE = """
from twisted.trial import unittest

class T(unittest.TestCase):
    def test_ok(self):
        pass

    def test_skip(self):
        raise unittest.SkipTest("needs a thing")
{extra}
"""


class SummarizeTests(unittest.TestCase):
    """The closing line of .ci/summarize."""

    def _summarize(self, extra: str) -> tuple[int, str]:
        base = Path(self.mktemp())
        pkg = base / "citarget"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "test_target.py").write_text(_MODULE.format(extra=textwrap.dedent(extra)))
        env = dict(os.environ, PYTHONPATH=str(base))
        trial = subprocess.run(
            [sys.executable, "-m", "twisted.trial", "citarget"],
            cwd=base, env=env, capture_output=True, text=True,
        )
        log = base / "trial.log"
        log.write_text(trial.stdout + trial.stderr)
        out = subprocess.run(["bash", str(SUMMARIZE), str(log)], capture_output=True, text=True)
        return out.returncode, out.stdout

    def test_skips_reported(self) -> None:
        """Skips are counted on the closing line and listed with their reason."""
        rc, out = self._summarize("")
        self.assertEqual(rc, 0)
        lines = out.strip().splitlines()
        self.assertEqual(lines[-1], "1 passed, 0 failed, 1 skipped")
        self.assertIn("needs a thing", out)

    def test_todo_naming_issue_passes(self) -> None:
        """An expected failure whose reason names an issue counts as passed."""
        rc, out = self._summarize(
            """
            class U(unittest.TestCase):
                def test_todo(self):
                    self.fail("later")
                test_todo.todo = "issue 12: federation"
            """
        )
        self.assertEqual(rc, 0)
        self.assertEqual(out.strip().splitlines()[-1], "2 passed, 0 failed, 1 skipped")

    def test_todo_without_issue_fails(self) -> None:
        """An expected failure without an issue counts as failed and fails CI."""
        rc, out = self._summarize(
            """
            class U(unittest.TestCase):
                def test_todo(self):
                    self.fail("later")
                test_todo.todo = "some day"
            """
        )
        self.assertEqual(rc, 1)
        self.assertEqual(out.strip().splitlines()[-1], "1 passed, 1 failed, 1 skipped")

    def test_failure_fails(self) -> None:
        """A plain failure is counted and fails CI."""
        rc, out = self._summarize(
            """
            class U(unittest.TestCase):
                def test_bad(self):
                    self.fail("no")
            """
        )
        self.assertEqual(rc, 1)
        self.assertEqual(out.strip().splitlines()[-1], "1 passed, 1 failed, 1 skipped")
