"""An announced body over C{max_request_size}, over a real TCP connection."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from tests.server import HomeserverTestCase


class _RawClient(Protocol):
    """Sends raw bytes, collects everything the server answers until it closes."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.closed.callback(self.received)


class DeclaredTooLargeTests(HomeserverTestCase):
    """client-server-api "API standards": 413 M_TOO_LARGE, answered at once."""

    config_overrides = {"max_request_size": 1000}

    async def _send_head(self, extra: bytes = b"") -> bytes:
        """
        Announce 50 MB, send 5 bytes of it and never the rest; return all
        the server sent before it closed the connection.
        """
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = _RawClient()
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client
        )
        self.addCleanup(lambda: client.transport.abortConnection())
        client.transport.write(
            b"POST /_matrix/client/v3/login HTTP/1.1\r\n"
            b"Host: localhost\r\n"
            b"Content-Type: application/json\r\n" + extra +
            b"Content-Length: 50000000\r\n\r\n"
            b'{"a":'
        )
        return await client.closed.addTimeout(10, reactor)

    def assertTooLarge(self, raw: bytes) -> None:
        """One 413 M_TOO_LARGE JSON response, marked C{Connection: close}."""
        head, _, body = raw.partition(b"\r\n\r\n")
        status, *headers = head.split(b"\r\n")
        self.assertEqual(status.split(b" ")[:2], [b"HTTP/1.1", b"413"], raw)
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in headers)}
        self.assertEqual(fields[b"content-type"], b"application/json")
        self.assertEqual(fields[b"connection"], b"close")
        self.assertEqual(int(fields[b"content-length"]), len(body))
        self.assertEqual(json.loads(body)["errcode"], "M_TOO_LARGE")

    async def test_answered_before_the_body_and_closed(self) -> None:
        self.assertTooLarge(await self._send_head())

    async def test_no_100_continue(self) -> None:
        """C{Expect: 100-continue} gets the 413 instead of an invitation to send."""
        self.assertTooLarge(await self._send_head(b"Expect: 100-continue\r\n"))

    async def test_within_limit_still_served(self) -> None:
        """The same connection path with a body under the limit reaches the handler."""
        r = await self.request(
            "POST", "/_matrix/client/v3/login", raw_body=b'{"type": "m.login.magic"}'
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request("POST", "/_matrix/client/v3/login", raw_body=b"x" * 5000)
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
