"""The outgoing client is built on first use (its imports cost ~13 MB at start-up)."""

from __future__ import annotations

import subprocess
import sys

from twisted.internet import reactor
from twisted.trial import unittest

from conduit_tw.http.lazy import LazyOutgoingHTTPClient
from tests.server import make_config


class LazyClientTests(unittest.TestCase):
    def test_start_up_imports_no_client_stack(self) -> None:
        """Building a HomeServer imports neither the client nor twisted.internet.endpoints."""
        code = (
            "import sys\n"
            "from twisted.internet import reactor\n"
            "from conduit_tw.homeserver import HomeServer\n"
            "from tests.server import make_config\n"
            "import tempfile\n"
            "hs = HomeServer(make_config(database_path=tempfile.mkdtemp()), reactor)\n"
            "print(sorted(m for m in ('conduit_tw.http.client', 'twisted.internet.endpoints') if m in sys.modules))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)

    async def test_built_on_first_use_and_closed(self) -> None:
        lazy = LazyOutgoingHTTPClient(reactor, make_config())
        await lazy.close()  # never used: nothing to close
        self.assertIsNone(lazy._client)
        pool = lazy.pool
        self.assertIs(lazy.client.pool, pool)
        await lazy.close()
