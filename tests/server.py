"""
In-process API tests: a real L{HomeServer} on a temporary database, driven
through the real twisted.web pipeline (Site, HTTPChannel, the resource tree)
over an in-memory transport — no sockets.

Use L{HomeserverTestCase}: C{self.hs}, C{await self.request(...)}.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web.http import HTTPChannel

from conduit_tw.api.resource import InFlightTracker, MatrixSite
from conduit_tw.config import Config, load_config
from conduit_tw.homeserver import HomeServer


@dataclass
class Response:
    """A parsed HTTP response."""

    code: int
    headers: dict[str, list[str]]
    body: bytes

    @property
    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive)."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse_response(raw: bytes) -> Response:
    """Parse one HTTP/1.1 response (Content-Length or chunked)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ")[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if headers.get("transfer-encoding") == ["chunked"]:
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        return Response(code, headers, body)
    return Response(code, headers, rest)


class FakeClient:
    """Sends raw HTTP requests into a L{MatrixSite} and parses the answers."""

    def __init__(self, site: MatrixSite) -> None:
        self.site = site

    def request(
        self,
        method: str,
        path: str,
        content: Any = None,
        access_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        raw_body: bytes | None = None,
        client_ip: str = "127.0.0.1",
    ) -> Deferred[Response]:
        """
        Issue one request; the Deferred fires with the L{Response} once the
        server has finished answering.
        """
        if raw_body is None:
            raw_body = b"" if content is None else json.dumps(content).encode()
        lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
        if access_token is not None:
            lines.append(f"Authorization: Bearer {access_token}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        chunked = any(k.lower() == "transfer-encoding" for k in (headers or {}))
        if (raw_body or method in ("POST", "PUT")) and not chunked:
            lines.append(f"Content-Length: {len(raw_body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + raw_body

        protocol = self.site.buildProtocol(IPv4Address("TCP", client_ip, 1234))
        transport = StringTransport(peerAddress=IPv4Address("TCP", client_ip, 1234))
        protocol.makeConnection(transport)
        # Site wraps HTTPChannel in a protocol-negotiating shim.
        channel: HTTPChannel = getattr(protocol, "_channel", protocol)
        done: Deferred[Response] = Deferred()
        original = channel.requestDone

        def request_done(request: Any) -> None:
            original(request)
            if not done.called:
                response = parse_response(transport.value())
                channel.connectionLost(Failure(ConnectionDone()))
                done.callback(response)

        channel.requestDone = request_done  # type: ignore[method-assign]
        protocol.dataReceived(data)
        if not done.called and transport.disconnecting:
            # The server closed the connection without finishing a request
            # (e.g. a malformed request answered by twisted.web itself).
            done.callback(parse_response(transport.value()))
        return done


def make_config(**overrides: Any) -> Config:
    """A config for tests: server name C{test}, defaults otherwise."""
    values: dict[str, Any] = {"server_name": "test"}
    values.update(overrides)
    return load_config(None, {}, values)


def record_federation(hs: Any) -> list[tuple[str, str, Any]]:
    """
    Make C{hs}'s federation sender record its transactions instead of
    sending them (in-process tests name made-up servers that no DNS
    knows); returns the list they are appended to as
    C{(destination, path, body)}.
    """
    sent: list[tuple[str, str, Any]] = []

    async def put_json(destination: str, path: str, body: Any, **kwargs: Any) -> Any:
        sent.append((destination, path, body))
        return {"pdus": {}}

    hs.federation_sender.put_json = put_json
    return sent


class HomeserverTestCase(unittest.TestCase):
    """
    Base for API tests: a fresh server per test on a temporary database.
    Subclasses may set C{config_overrides} or C{backend}; the environment
    variable C{CONDUIT_TEST_BACKEND} changes the default (C{sqlite}) for
    every test, e.g. C{postgresql}, which runs on a throw-away cluster
    (tests/postgresql.py), or C{deferred}: SQLite answering every call on a
    later reactor turn (tests/storage/deferred.py).
    """

    config_overrides: Mapping[str, Any] = {}
    backend = os.environ.get("CONDUIT_TEST_BACKEND") or "sqlite"

    async def _start(self) -> None:
        path = self.mktemp()
        os.makedirs(path)
        overrides = dict(self.config_overrides)
        if self.backend == "postgresql" and "database_url" not in overrides:
            from tests.postgresql import database_url

            overrides["database_url"] = database_url(self)
        # "deferred" is SQLite behind a wrapper (make_homeserver).
        backend = "sqlite" if self.backend == "deferred" else self.backend
        self.config = make_config(database_path=path, database_backend=backend, **overrides)
        self.hs = self.make_homeserver()
        self.addCleanup(self.hs.close)
        #: Federation transactions the server would have sent.
        self.sent = record_federation(self.hs)
        await self.hs.setup()
        self.site = MatrixSite(
            self.hs.resource,
            max_request_size=self.config.max_request_size,
            trusted_proxies=self.config.trusted_proxies,
            tracker=InFlightTracker(),
        )
        # No idle-connection timers on the global reactor: each fake
        # connection lives for one request.
        self.site.timeOut = None
        self.client = FakeClient(self.site)

    def make_homeserver(self) -> HomeServer:
        """A new server on C{self.config} (its database), for L{backend}."""
        db = None
        if self.backend == "deferred":
            # Every read and write answers on a later reactor turn, as a
            # network backend does (tests/storage/deferred.py).
            from conduit_tw.storage.database import open_database
            from tests.storage.deferred import DeferredDatabase

            db = DeferredDatabase(
                open_database("sqlite", self.config.database_path, self.config.database_options())
            )
        return HomeServer(self.config, reactor, db=db)

    def setUp(self) -> Deferred[None]:
        """Start the server."""
        return Deferred.fromCoroutine(self._start())

    def commit(self) -> None:
        """
        Make the writes applied so far durable now and run what waits for
        them. SQLite commits once per reactor turn (group commit); a test
        that drives a fake clock and awaits only already-fired Deferreds
        never gives it one.
        """
        flush = getattr(self.hs.db, "flush", None)
        if flush is not None:
            flush()

    def request(self, method: str, path: str, content: Any = None, **kw: Any) -> Deferred[Response]:
        """See L{FakeClient.request}."""
        return self.client.request(method, path, content, **kw)

    def assertMatrixError(self, response: Response, code: int, errcode: str) -> None:
        """Assert an error response with this status and errcode."""
        self.assertEqual(
            (response.code, response.json.get("errcode")), (code, errcode), response.body
        )
        self.assertIsInstance(response.json.get("error"), str)


def on_backend(backend: str, namespace: dict[str, Any], *cases: type) -> None:
    """
    Define in C{namespace} (a test module's C{globals()}) a subclass of each
    test case of C{cases} that runs on storage C{backend}, named
    C{<Case>On<backend>}.
    """
    module = namespace["__name__"]
    for case in cases:
        name = f"{case.__name__}On{backend.capitalize()}"
        namespace[name] = type(name, (case,), {"backend": backend, "__module__": module})
