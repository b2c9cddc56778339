"""
The idle memory floor (docs/architecture.md, "Memory floor"): a server
started as C{twistd conduit} starts it (fresh database, no TLS listener,
default configuration) has not loaded what only some requests need. Run in
a fresh interpreter: trial itself imports everything. That these parts
work once loaded is tested where they are (tests/test_lazy_tls.py,
tests/api/test_admin_room.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from twisted.trial import unittest

import tests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))

#: Loaded on first use only: TLS, HTTP/2, the admin room's command table.
LAZY = ("OpenSSL", "cryptography", "h2", "hpack", "conduit_tw.handlers.admin_groups")

SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    import conduit_tw.tap  # installs lazy_tls before the reactor, as twistd does
    from twisted.internet import reactor
    from conduit_tw.config import load_config
    from conduit_tw.service import make_service

    directory = sys.argv[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = os.path.join(directory, "conduit.toml")
    with open(path, "w") as f:
        f.write(
            '[global]\\nserver_name = "localhost"\\n'
            f'database_path = "{directory}/data"\\naddress = "127.0.0.1"\\nport = {port}\\n'
        )
    service = make_service(load_config(path))
    service.startService()
    reactor.callLater(1.0, reactor.stop)
    reactor.run()
    print(json.dumps(sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)))
    """
)


class IdleFootprintTests(unittest.TestCase):
    def test_started_server_has_not_loaded_lazy_parts(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, directory, json.dumps(LAZY)],
            capture_output=True, text=True, env=env, timeout=120, cwd=directory,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout.splitlines()[-1]), [])
