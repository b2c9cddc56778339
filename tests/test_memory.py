"""Tests for L{conduit_tw.memory}."""

from __future__ import annotations

import sys

from twisted.trial import unittest

from conduit_tw import memory


class TrimHeapTests(unittest.TestCase):
    def test_trims_on_glibc(self) -> None:
        """On Linux (glibc) the heap is trimmed; elsewhere it is a no-op."""
        blocks = [bytearray(4096) for _ in range(2000)]
        del blocks
        result = memory.trim_heap()
        if sys.platform.startswith("linux"):
            self.assertTrue(result)
        self.assertEqual(memory.trim_heap(), result)  # looked up once, callable again
