"""
Several real L{HomeServer}s in one process, each serving its real resource
tree over plain HTTP on a loopback port, and a plain-HTTP stand-in for the
federation client (server discovery and TLS are the federation client's;
these tests are about what travels over the connection).

Use L{LoopbackTestCase}: C{await self.start_server("a.test", ...)}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.api.resource import InFlightTracker, MatrixSite
from conduit_tw.homeserver import HomeServer
from conduit_tw.http.client import OutgoingHTTPClient
from tests.server import make_config


class FederationRequestFailed(Exception):
    """A non-200 answer."""


class LoopbackFederation:
    """
    C{fetch_json} (the keyring's view of the federation client) over plain
    HTTP to the loopback port registered for each server name.

    @ivar requests: C{(destination, method, path)} of every request made.
    """

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.http = OutgoingHTTPClient(reactor, make_config(ip_range_denylist=[]))
        self.requests: list[tuple[str, str, str]] = []

    async def fetch_json(
        self,
        destination: str,
        path: str,
        args: dict[str, Any] | None = None,
        *,
        method: str = "GET",
        body: Any = None,
    ) -> Any:
        """One request to C{destination}; the JSON answer, or raise."""
        self.requests.append((destination, method, path))
        if destination not in self.ports:
            raise ConnectionRefusedError(destination)
        url = f"http://127.0.0.1:{self.ports[destination]}{path}"
        if body is not None:
            response = await self.http.post_json(url, body)
        else:
            response = await self.http.request(method, url)
        if response.code != 200:
            raise FederationRequestFailed(response.code, response.body)
        return response.json()

    def close(self) -> Deferred[None]:
        """Close the idle connections (the HomeServer does on close)."""
        return self.http.close()


@dataclass
class Running:
    """One started server."""

    hs: HomeServer
    port: Any
    federation: LoopbackFederation
    path: str


def _tick() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class LoopbackTestCase(unittest.TestCase):
    """Starts servers on demand; everything is stopped after the test."""

    def setUp(self) -> None:
        self.ports: dict[str, int] = {}
        self.running: dict[str, Running] = {}
        self.addCleanup(self._stop_all)

    async def start_server(self, server_name: str, path: str | None = None, **config: Any) -> Running:
        """
        Start (or, with the C{path} of an earlier one, restart) a server
        called C{server_name}; its federation client is a
        L{LoopbackFederation} that reaches the other started servers.
        """
        if path is None:
            path = self.mktemp()
            os.makedirs(path)
        config.setdefault("trusted_servers", [])
        cfg = make_config(server_name=server_name, database_path=path, **config)
        hs = HomeServer(cfg, reactor)
        await hs.setup()
        site = MatrixSite(hs.resource, max_request_size=cfg.max_request_size, tracker=InFlightTracker())
        site.timeOut = None
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.ports[server_name] = port.getHost().port
        federation = LoopbackFederation(self.ports)
        hs.federation_client = federation  # type: ignore[assignment]
        running = self.running[server_name] = Running(hs, port, federation, path)
        return running

    async def stop_server(self, server_name: str) -> None:
        """Stop one server (its database stays for a restart)."""
        running = self.running.pop(server_name)
        self.ports.pop(server_name, None)
        await running.port.stopListening()
        await running.hs.close()

    async def _stop_all(self) -> None:
        for name in list(self.running):
            await self.stop_server(name)
        # Let the server side of closed client connections go away too.
        for _ in range(5):
            await _tick()
