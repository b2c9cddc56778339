"""
Tests for L{conduit_tw.lazy_tls}: the reactor and the whole server import
without the TLS stack, which loads on first use and then works (a real
handshake: C{listenSSL} on one side, C{startTLS} on the other); nor with
HTTP/2, which is offered as it would be and, when installed, answers a real
HTTP/2 client over the server's TLS listener.
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


#: The server imported as by twistd: is h2 loaded, and is HTTP/2 offered?
HTTP2_AT_START = textwrap.dedent(
    """
    import sys
    from conduit_tw import lazy_tls
    assert lazy_tls.install()
    from twisted.internet import reactor
    import conduit_tw.tap
    from twisted.web import http
    print("h2 at start:", "h2" in sys.modules, "offered:", http.H2_ENABLED)
    """
)


def _run(case: unittest.TestCase, script: str, *args: str) -> list[str]:
    """The output lines of C{script} run by a fresh interpreter (it must succeed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, env=env, timeout=120,
    )
    case.assertEqual(out.returncode, 0, out.stderr)
    return out.stdout.splitlines()


class LazyTLSTests(unittest.TestCase):
    def test_tls_loads_on_first_use(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        lines = _run(self, SCRIPT, directory)
        self.assertEqual(lines[0], "at start: False False")
        self.assertEqual(lines[-1], "received: hello over tls")

    def test_http2_offered_as_without_lazy_loading(self) -> None:
        """
        h2 is not imported at start, and HTTP/2 is offered exactly when
        Twisted would offer it (this trial process imported
        C{twisted.web.http} eagerly: its C{H2_ENABLED} is the reference).
        """
        from twisted.web import http

        lines = _run(self, HTTP2_AT_START)
        self.assertEqual(lines[-1], f"h2 at start: False offered: {http.H2_ENABLED}")

    def test_http2_over_tls_listener(self) -> None:
        """
        With h2 and priority installed, a client that chooses h2 by ALPN
        on C{twistd conduit}'s TLS listener gets its answer over HTTP/2
        (h2 loaded then).
        """
        from twisted.web import http

        if not http.H2_ENABLED:
            raise unittest.SkipTest("HTTP/2 needs h2 and priority (twisted[http2])")
        import socket
        import ssl

        import h2.config
        import h2.connection
        import h2.events

        from tests.integration.test_twistd import ListenerTests, tls_server

        server, cert = tls_server(self)
        self.assertIsNotNone(ListenerTests._versions(server, "https", cert))
        context = ssl.create_default_context(cafile=cert)
        context.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                self.assertEqual(tls.selected_alpn_protocol(), "h2")
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                stream = conn.get_next_available_stream_id()
                conn.send_headers(stream, [
                    (":method", "GET"), (":scheme", "https"),
                    (":authority", f"127.0.0.1:{server.port}"),
                    (":path", "/_matrix/client/versions"),
                ], end_stream=True)
                tls.sendall(conn.data_to_send())
                status, body, ended = None, b"", False
                while not ended:
                    data = tls.recv(65536)
                    self.assertTrue(data, "connection closed before the response ended")
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.ResponseReceived):
                            status = dict(event.headers)[b":status"]
                        elif isinstance(event, h2.events.DataReceived):
                            body += event.data
                            conn.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                        elif isinstance(event, h2.events.StreamEnded):
                            ended = True
                    tls.sendall(conn.data_to_send())
        self.assertEqual(status, b"200")
        self.assertIn("v1.1", json.loads(body)["versions"])
