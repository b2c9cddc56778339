"""
The Twisted service tree: L{ConduitService} (a MultiService) owning the
L{HomeServer} and one listener service per address.

Shutdown (SIGTERM/SIGINT through twistd) runs in order: stop listening,
let in-flight requests finish for up to L{SHUTDOWN_GRACE_SECONDS}, then
close the database. MultiService stops its children all at once, so the
order is enforced here.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, endpoints
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel

from conduit_tw.api.resource import InFlightTracker, MatrixSite
from conduit_tw.config import Config
from conduit_tw.homeserver import HomeServer
from conduit_tw.logging import configure as configure_logging
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.service")

#: How long shutdown waits for requests that are still being answered.
SHUTDOWN_GRACE_SECONDS = 10.0


class ConduitService(MultiService):
    """The whole server as one service."""

    def __init__(self, homeserver: HomeServer) -> None:
        super().__init__()
        self.config = homeserver.config
        self.reactor = homeserver.reactor
        self.homeserver = homeserver
        self.tracker = InFlightTracker()
        self.site: MatrixSite | None = None
        self.ready: Deferred[None] = Deferred()

    def startService(self) -> None:
        """Open the database, set up the server, then start listening."""
        for notice in self.config.notices:
            log.warn("{notice}", notice=notice)
        self.site = MatrixSite(
            self.homeserver.resource,
            max_request_size=self.config.max_request_size,
            trusted_proxies=self.config.trusted_proxies,
            tracker=self.tracker,
        )
        for description, endpoint in listen_endpoints(self.config, self.reactor):
            svc = StreamServerEndpointService(endpoint, self.site)
            svc._raiseSynchronously = True
            svc.setName(description)
            svc.setServiceParent(self)

        d = Deferred.fromCoroutine(self.homeserver.setup())

        def started(_: object) -> None:
            MultiService.startService(self)
            log.info(
                "conduit-tw serving {server_name} on {where}",
                server_name=self.config.server_name,
                where=", ".join(s.name for s in self),
            )
            self.ready.callback(None)

        def failed(f: Any) -> None:
            log.critical("Start-up failed: {error}", error=f.getErrorMessage())
            log.failure("Start-up failure", f, level=LogLevel.debug)
            self.ready.errback(f)
            # Exit non-zero so supervisord/systemd see the failure.
            self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            self.reactor.stop()

        d.addCallback(started)
        d.addErrback(failed)

    @defer.inlineCallbacks
    def stopService(self):
        """Stop listeners, drain in-flight requests, close the database."""
        self.running = False
        yield defer.gatherResults(
            [defer.maybeDeferred(s.stopService) for s in list(self) if s.running],
            consumeErrors=True,
        )
        drained = self.tracker.wait_idle()
        timer = self.reactor.callLater(SHUTDOWN_GRACE_SECONDS, drained.cancel)
        try:
            yield drained
        except defer.CancelledError:
            log.warn(
                "{n} requests still running after {s}s; closing anyway",
                n=self.tracker.count,
                s=SHUTDOWN_GRACE_SECONDS,
            )
        else:
            timer.cancel()
        self.homeserver.close()


def listen_endpoints(config: Config, reactor: Any) -> list[tuple[str, Any]]:
    """
    The server endpoints for the config: a UNIX socket when
    C{unix_socket_path} is set, else every C{address} x C{port}
    combination; TLS when C{[global.tls]} gives a certificate and key.
    """
    if config.unix_socket_path:
        path = config.unix_socket_path
        mode = config.unix_socket_mode
        if os.path.exists(path):
            os.unlink(path)
        return [(f"unix:{path}", endpoints.UNIXServerEndpoint(reactor, path, mode=mode))]
    result = []
    tls = getattr(config, "tls", None)
    context_factory = None
    if tls is not None and tls.certs and tls.key:
        from twisted.internet import ssl

        with open(tls.certs, "rb") as f:
            chain = f.read()
        with open(tls.key, "rb") as f:
            key = f.read()
        certs = ssl.Certificate.loadPEM(chain)
        private = ssl.PrivateCertificate.fromCertificateAndKeyPair(
            certs, ssl.KeyPair.load(key, 1)
        )
        context_factory = private.options()
    for address, port in config.listen_addresses():
        if context_factory is not None:
            ep: Any = endpoints.SSL4ServerEndpoint(
                reactor, port, context_factory, interface=address
            )
            desc = f"https://{_host(address)}:{port}"
        elif ":" in address:
            ep = endpoints.TCP6ServerEndpoint(reactor, port, interface=address)
            desc = f"http://[{address}]:{port}"
        else:
            ep = endpoints.TCP4ServerEndpoint(reactor, port, interface=address)
            desc = f"http://{address}:{port}"
        result.append((desc, ep))
    return result


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class StartupError(Exception):
    """The server cannot start; the message says why, for the operator."""


def make_service(config: Config, reactor: Any = None) -> ConduitService:
    """
    Build the service tree for C{config} (used by the plugin and the .tac).
    The database is opened here so that a wrong backend or an incompatible
    database stops start-up with a clear message.

    @raise StartupError: when the database cannot be opened.
    """
    from conduit_tw.storage.database import DatabaseError

    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    configure_logging(config.log)
    try:
        homeserver = HomeServer(config, reactor)
    except (DatabaseError, OSError) as e:
        raise StartupError(f"cannot open the database: {e}") from e
    return ConduitService(homeserver)
