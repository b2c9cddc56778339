"""
Tests for L{conduit_tw.lazy_tls}: the reactor and the whole server import
without the TLS stack, which loads on first use and then works (a real
handshake: C{listenSSL} on one side, C{startTLS} on the other).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from twisted.trial import unittest

import tests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))

SCRIPT = textwrap.dedent(
    """
    import sys
    from conduit_tw import lazy_tls
    assert lazy_tls.install()
    assert not lazy_tls.install()  # once is enough
    from twisted.internet import reactor
    import conduit_tw.tap
    print("at start:", "OpenSSL" in sys.modules, "cryptography" in sys.modules)

    from twisted.internet import protocol, ssl
    from tests.integration.test_twistd import _self_signed

    cert, key = _self_signed(sys.argv[1])
    got = []

    class Hello(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(b"hello over tls")
            self.transport.loseConnection()

    class Client(protocol.Protocol):
        def connectionMade(self):
            self.transport.startTLS(ssl.ClientContextFactory())
            self.transport.write(b"")

        def dataReceived(self, data):
            got.append(data)

        def connectionLost(self, reason):
            reactor.stop()

    server = protocol.ServerFactory.forProtocol(Hello)
    port = reactor.listenSSL(
        0, server, ssl.DefaultOpenSSLContextFactory(key, cert), interface="127.0.0.1"
    )
    protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port.getHost().port)
    reactor.callLater(20, reactor.stop)
    reactor.run()
    print("received:", b"".join(got).decode())
    """
)


class LazyTLSTests(unittest.TestCase):
    def test_tls_loads_on_first_use(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, directory],
            capture_output=True, text=True, env=env, timeout=120,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[0], "at start: False False")
        self.assertEqual(lines[-1], "received: hello over tls")
