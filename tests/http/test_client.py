"""
The shared outgoing HTTP client (conduit_tw/http/client.py) against real
servers on 127.0.0.1 (plain and TLS with a self-signed certificate).
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.ssl import PrivateCertificate
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from conduit_tw import __version__
from conduit_tw.config import DEFAULT_IP_RANGE_DENYLIST
from conduit_tw.http.client import (
    DeniedDestinationError,
    InvalidURLError,
    IPDenylist,
    OutgoingHTTPClient,
    RequestTimeoutError,
    ResponseTooLargeError,
)
from tests.server import make_config


class Target(Resource):
    """The server the client talks to; records the paths it was asked for."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[bytes] = []
        self.lost: list[Deferred[None]] = []

    def render(self, request: Any) -> Any:
        self.paths.append(request.path)
        path = request.path
        if path == b"/ok":
            return b"hello"
        if path == b"/echo":
            request.setHeader(b"content-type", b"text/plain")
            ua = request.getHeader(b"user-agent") or b""
            ctype = request.getHeader(b"content-type") or b""
            return ua + b"|" + ctype + b"|" + request.content.read()
        if path == b"/redirect":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/ok")
            return b""
        if path == b"/big":  # declared length over the cap
            return b"x" * (2 * 1024 * 1024)
        if path == b"/stream":  # no length: chunked, over the cap
            finished = request.notifyFinish()
            self.lost.append(finished)
            request.write(b"y" * (4 * 1024 * 1024))
            return NOT_DONE_YET
        if path == b"/slow":  # never answers
            self.lost.append(request.notifyFinish())
            return NOT_DONE_YET
        if path == b"/trickle":  # a byte every 0.2 s, never done
            finished = request.notifyFinish()
            self.lost.append(finished)
            request.setHeader(b"content-type", b"text/plain")

            calls = []

            def drip() -> None:
                request.write(b".")
                calls.append(reactor.callLater(0.2, drip))

            def stop(result: Any) -> Any:
                if calls[-1].active():
                    calls[-1].cancel()
                return result

            drip()
            finished.addBoth(stop)
            return NOT_DONE_YET
        request.setResponseCode(404)
        return b""


class CountingSite(Site):
    """
    Counts accepted connections (proves a refused request never connected)
    and those the other side closed since (idle connection pools).
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.connections = 0
        self.closed = 0
        self.timeOut = None

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        protocol = super().buildProtocol(addr)
        lost = protocol.connectionLost

        def connection_lost(reason: Any) -> None:
            self.closed += 1
            lost(reason)

        protocol.connectionLost = connection_lost
        return protocol


def self_signed() -> PrivateCertificate:
    """A certificate for C{localhost} and C{127.0.0.1}, signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return PrivateCertificate.loadPEM(pem)


class ClientTestCase(unittest.TestCase):
    """A plain and a TLS server on 127.0.0.1, and clients that are closed after each test."""

    def setUp(self) -> None:
        self.target = Target()
        self.site = CountingSite(self.target)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.tls_port = reactor.listenSSL(
            0, self.site, self_signed().options(), interface="127.0.0.1"
        )
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.tls_base = f"https://127.0.0.1:{self.tls_port.getHost().port}"
        self.clients: list[OutgoingHTTPClient] = []
        self.addCleanup(self._cleanup)

    async def _cleanup(self) -> None:
        for client in self.clients:
            await client.close()
        for finished in self.target.lost:  # the server saw the abort
            try:
                await finished
            except Exception:
                pass
        # Let the server side of closed client connections go away too.
        for _ in range(5):
            await _tick()
        await self.port.stopListening()
        await self.tls_port.stopListening()

    def client(self, **config: Any) -> OutgoingHTTPClient:
        c = OutgoingHTTPClient(reactor, make_config(**config))
        self.clients.append(c)
        return c


def _tick() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class DenylistTests(ClientTestCase):
    """C{ip_range_denylist} is checked after resolution, before connecting."""

    async def test_ip_literal_refused_when_listed(self) -> None:
        client = self.client(ip_range_denylist=["127.0.0.0/8"])
        with self.assertRaises(DeniedDestinationError) as e:
            await client.request("GET", self.base + "/ok")
        self.assertEqual(e.exception.addresses, ["127.0.0.1"])
        self.assertEqual(self.site.connections, 0, "refused before connecting")

    async def test_default_denylist_refuses_loopback(self) -> None:
        client = self.client()
        with self.assertRaises(DeniedDestinationError):
            await client.request("GET", self.base + "/ok")
        self.assertEqual(self.site.connections, 0)

    async def test_hostname_checked_after_resolution(self) -> None:
        client = self.client(ip_range_denylist=["127.0.0.0/8", "::1/128"])
        port = self.port.getHost().port
        with self.assertRaises(DeniedDestinationError) as e:
            await client.request("GET", f"http://localhost:{port}/ok")
        self.assertIn("127.0.0.1", e.exception.addresses)
        self.assertEqual(e.exception.host, "localhost")
        self.assertEqual(self.site.connections, 0)

    async def test_ipv4_mapped_ipv6_literal_refused(self) -> None:
        client = self.client(ip_range_denylist=["127.0.0.0/8"])
        port = self.port.getHost().port
        with self.assertRaises(DeniedDestinationError):
            await client.request("GET", f"http://[::ffff:127.0.0.1]:{port}/ok")
        self.assertEqual(self.site.connections, 0)

    async def test_allowed_when_denylist_empty(self) -> None:
        client = self.client(ip_range_denylist=[])
        r = await client.request("GET", self.base + "/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))
        port = self.port.getHost().port
        # A hostname too (localhost may resolve to ::1 first, where
        # nothing listens: the next address is tried).
        r = await client.request("GET", f"http://localhost:{port}/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))

    def test_denylist_matching(self) -> None:
        deny = IPDenylist(DEFAULT_IP_RANGE_DENYLIST)
        for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1",
                   "fe80::1%lo", "::ffff:10.0.0.1", "fd00::1"):
            self.assertTrue(deny.denies(ip), ip)
        for ip in ("8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
            self.assertFalse(deny.denies(ip), ip)


class BehaviourTests(ClientTestCase):
    """Redirects, size cap, timeout, headers, URL validation."""

    async def test_redirect_not_followed(self) -> None:
        client = self.client(ip_range_denylist=[])
        r = await client.request("GET", self.base + "/redirect")
        self.assertEqual(r.code, 302)
        self.assertEqual(r.headers.getRawHeaders(b"location"), [b"/ok"])
        self.assertEqual(self.target.paths, [b"/redirect"], "/ok was never requested")

    async def test_declared_oversize_aborted(self) -> None:
        client = self.client(ip_range_denylist=[])
        with self.assertRaises(ResponseTooLargeError):
            await client.request("GET", self.base + "/big")
        # The default cap is 1 MiB; a larger one accepts the body.
        r = await client.request("GET", self.base + "/big", max_size=3 * 1024 * 1024)
        self.assertEqual(len(r.body), 2 * 1024 * 1024)

    async def test_streamed_oversize_aborted(self) -> None:
        client = self.client(ip_range_denylist=[])
        with self.assertRaises(ResponseTooLargeError) as e:
            await client.request("GET", self.base + "/stream", max_size=100_000)
        self.assertEqual(e.exception.max_size, 100_000)
        # The server sees the connection go: the client did not read on.
        with self.assertRaises(Exception):
            await self.target.lost[0]

    async def test_timeout(self) -> None:
        client = self.client(ip_range_denylist=[], request_timeout=30)
        start = reactor.seconds()
        with self.assertRaises(RequestTimeoutError):
            await client.request("GET", self.base + "/slow", timeout=0.3)
        self.assertLess(reactor.seconds() - start, 10)
        with self.assertRaises(Exception):
            await self.target.lost[0]

    async def test_total_timeout(self) -> None:
        """request_total_timeout ends a request that keeps sending slowly."""
        client = self.client(ip_range_denylist=[], request_timeout=30, request_total_timeout=1)
        start = reactor.seconds()
        with self.assertRaises(RequestTimeoutError) as e:
            await client.request("GET", self.base + "/trickle")
        self.assertEqual(e.exception.timeout, 1)
        self.assertLess(reactor.seconds() - start, 5)
        # A caller's longer timeout does not lift it.
        with self.assertRaises(RequestTimeoutError) as e:
            await client.request("GET", self.base + "/trickle", timeout=30)
        self.assertEqual(e.exception.timeout, 1)

    async def test_read_timeout(self) -> None:
        """request_timeout: the longest silence, reset by every bit of the body."""
        client = self.client(ip_range_denylist=[], request_timeout=1, request_total_timeout=60)
        start = reactor.seconds()
        with self.assertRaises(RequestTimeoutError) as e:
            await client.request("GET", self.base + "/slow")
        self.assertEqual(e.exception.timeout, 1)
        self.assertLess(reactor.seconds() - start, 5)
        # A body that keeps coming is not stopped by it, only by the total.
        start = reactor.seconds()
        with self.assertRaises(RequestTimeoutError) as e:
            await client.request("GET", self.base + "/trickle", timeout=2.5)
        self.assertEqual(e.exception.timeout, 2.5)
        self.assertGreaterEqual(reactor.seconds() - start, 2.4)

    async def test_idle_timeout(self) -> None:
        """request_idle_timeout: a pooled connection is closed after that long unused."""
        client = self.client(ip_range_denylist=[], request_idle_timeout=1)
        await client.request("GET", self.base + "/ok")
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.site.closed, 0, "kept for reuse")
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.site.closed, 1)

    async def test_user_agent_and_post_json(self) -> None:
        client = self.client(ip_range_denylist=[])
        r = await client.post_json(self.base + "/echo", {"a": 1})
        self.assertEqual(r.code, 200)
        self.assertEqual(
            r.body, f"conduit-tw/{__version__}|application/json|{{\"a\": 1}}".encode()
        )

    async def test_invalid_urls(self) -> None:
        client = self.client(ip_range_denylist=[])
        for url in ("ftp://127.0.0.1/x", "http:///nohost", "/relative", "http://h:99999/"):
            with self.assertRaises(InvalidURLError, msg=url):
                await client.request("GET", url)
        self.assertEqual(self.site.connections, 0)


class TLSTests(ClientTestCase):
    """Certificate verification follows C{allow_invalid_tls_certificates} only."""

    async def test_self_signed_refused_by_default(self) -> None:
        client = self.client(ip_range_denylist=[])
        with self.assertRaises(Exception) as e:
            await client.request("GET", self.tls_base + "/ok")
        self.assertNotIsInstance(e.exception, DeniedDestinationError)
        self.assertIn("certificate verify failed", str(e.exception))
        self.assertEqual(self.target.paths, [], "no request over an unverified connection")

    async def test_self_signed_accepted_when_allowed(self) -> None:
        client = self.client(ip_range_denylist=[], allow_invalid_tls_certificates=True)
        r = await client.request("GET", self.tls_base + "/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))
        port = self.tls_port.getHost().port
        r = await client.request("GET", f"https://localhost:{port}/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))

    async def test_denylist_applies_to_tls(self) -> None:
        client = self.client(allow_invalid_tls_certificates=True)
        with self.assertRaises(DeniedDestinationError):
            await client.request("GET", self.tls_base + "/ok")
        self.assertEqual(self.site.connections, 0)
