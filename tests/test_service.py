"""The service tree: listening, graceful shutdown order."""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from conduit_tw.service import make_service
from tests.integration.process import free_port
from tests.server import make_config


class GracefulShutdownTests(unittest.TestCase):
    """SIGTERM path: stop listening, finish in-flight requests, close the DB."""

    async def test_inflight_request_finishes_before_db_closes(self) -> None:
        path = os.path.abspath(self.mktemp())
        port = free_port()
        service = make_service(make_config(database_path=path, port=port), reactor)
        hs = service.homeserver
        release: defer.Deferred[None] = defer.Deferred()
        closed = []
        original_close = hs.close
        hs.close = lambda: (closed.append(True), original_close())[1]  # type: ignore[method-assign]

        async def slow(request):
            await release
            return {"done": True}

        service.startService()
        await service.ready
        hs.router.add("GET", "/_test/slow", slow)
        agent = Agent(reactor)
        response_d = agent.request(b"GET", b"http://127.0.0.1:%d/_test/slow" % port)
        await deferLater(reactor, 0.2, lambda: None)
        stopping = defer.ensureDeferred(defer.maybeDeferred(service.stopService))
        await deferLater(reactor, 0.1, lambda: None)
        # No longer listening, but the request is still being served.
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0)
        self.assertEqual(closed, [])
        self.assertFalse(stopping.called)
        release.callback(None)
        response = await response_d
        self.assertEqual(await readBody(response), b'{"done":true}')
        await stopping
        self.assertEqual(closed, [True])

    async def test_idle_keep_alive_connection_closed(self) -> None:
        """
        A connection another server keeps open after its request (a
        federation pool) is closed by the shutdown, not left to the reactor.
        """
        path = os.path.abspath(self.mktemp())
        port = free_port()
        service = make_service(make_config(database_path=path, port=port), reactor)
        service.startService()
        await service.ready
        sock = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(sock.close)
        sock.sendall(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(service.site._channels), 1)
        await defer.maybeDeferred(service.stopService)
        self.assertEqual(service.site._channels, {})
        sock.settimeout(2)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:40])


class FatalDatabaseTests(unittest.TestCase):
    """A failed COMMIT makes the server exit non-zero instead of serving on."""

    def test_fail_stop_exits(self) -> None:
        from twisted.internet.task import Clock

        from conduit_tw.homeserver import HomeServer
        from conduit_tw.service import ConduitService

        class FakeReactor(Clock):
            def __init__(self) -> None:
                super().__init__()
                self.stopped = False
                self.triggers: list[tuple] = []

            def stop(self) -> None:
                self.stopped = True

            def addSystemEventTrigger(self, *args) -> None:
                self.triggers.append(args)

        fake = FakeReactor()
        path = os.path.abspath(self.mktemp())
        hs = HomeServer(make_config(database_path=path, port=free_port()), fake)
        self.addCleanup(hs.close)
        ConduitService(hs)
        hs.db.on_fatal(RuntimeError("disk full"))
        fake.advance(0)
        self.assertTrue(fake.stopped)
        self.assertEqual([t[:2] for t in fake.triggers], [("after", "shutdown")])
        self.assertEqual(fake.triggers[0][3], 1)


class StartingUpTests(unittest.TestCase):
    """A request that arrives before the API is mounted waits for it."""

    async def test_request_before_setup_is_answered_after(self) -> None:
        from conduit_tw.api.resource import InFlightTracker, MatrixSite
        from conduit_tw.homeserver import HomeServer
        from tests.server import FakeClient

        path = self.mktemp()
        os.makedirs(path)
        hs = HomeServer(make_config(database_path=path), reactor)
        self.addCleanup(hs.close)
        site = MatrixSite(hs.resource, max_request_size=1 << 20, tracker=InFlightTracker())
        site.timeOut = None
        pending = FakeClient(site).request("GET", "/_matrix/client/versions")
        self.assertFalse(pending.called)  # held, not answered M_UNRECOGNIZED
        await hs.setup()
        response = await pending
        self.assertEqual(response.code, 200, response.body)
        self.assertIn("versions", response.json)


class TLSReloadTests(unittest.TestCase):
    """[global.tls]: SIGHUP reloads the certificate files; unusable files keep the old one."""

    async def served_certificate(self, port: int) -> bytes:
        import ssl

        from twisted.internet.threads import deferToThread

        def fetch() -> bytes:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    return t.getpeercert(binary_form=True)

        return await deferToThread(fetch)

    async def test_sighup_reloads_certificate(self) -> None:
        import shutil
        import signal

        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        from tests.integration.test_twistd import _self_signed

        first, second = (os.path.abspath(self.mktemp()) for _ in range(2))
        os.makedirs(first)
        os.makedirs(second)
        cert, key = _self_signed(first)
        new_cert, new_key = _self_signed(second)
        port = free_port()
        config = make_config(
            database_path=os.path.join(first, "data"), address=["127.0.0.1"], port=port,
            tls={"certs": cert, "key": key},
        )
        previous = signal.getsignal(signal.SIGHUP)
        service = make_service(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        before = await self.served_certificate(port)
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        os.kill(os.getpid(), signal.SIGHUP)
        await deferLater(reactor, 0.2, lambda: None)
        after = await self.served_certificate(port)
        self.assertNotEqual(after, before)
        with open(new_cert, "rb") as f:
            new_der = x509.load_pem_x509_certificate(f.read()).public_bytes(Encoding.DER)
        self.assertEqual(after, new_der)
        # A broken file: the current certificate stays.
        with open(cert, "w") as f:
            f.write("not a certificate")
        self.assertFalse(service.tls.reload())
        self.assertEqual(await self.served_certificate(port), after)
        await service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous, "handler restored")


class DualProtocolTimeoutTests(unittest.TestCase):
    """A client that never sends its first byte is dropped after the timeout."""

    def test_silent_client_dropped(self) -> None:
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport
        from twisted.web.server import Site
        from twisted.web.resource import Resource

        from conduit_tw import dual_protocol
        from conduit_tw.service import _tls_context
        from tests.integration.test_twistd import _self_signed

        directory = self.mktemp()
        os.makedirs(directory)
        clock = Clock()
        factory = dual_protocol.DualProtocolFactory(
            Site(Resource()), _tls_context(*_self_signed(directory))
        )
        proto = factory.buildProtocol(None)
        proto.callLater = clock.callLater  # type: ignore[attr-defined]
        transport = StringTransport()
        transport.abortConnection = transport.loseConnection  # type: ignore[attr-defined]
        proto.makeConnection(transport)
        clock.advance(dual_protocol.FIRST_BYTE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        clock.advance(2)
        self.assertTrue(transport.disconnecting)
