"""
The Twisted service tree: L{ConduitService} (a MultiService) owning the
L{HomeServer}, one listener service per address and the housekeeping
timers (C{HomeServer.housekeeping}).

Shutdown (SIGTERM/SIGINT through twistd) runs in order: stop listening,
let in-flight requests finish for up to L{SHUTDOWN_GRACE_SECONDS}, close
the connections still open (keep-alive ones), then close the database. MultiService stops its children all at once, so the
order is enforced here.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.internet import SSLServer, TCPServer, UNIXServer
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
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
        self.site = MatrixSite(
            homeserver.resource,
            max_request_size=self.config.max_request_size,
            trusted_proxies=self.config.trusted_proxies,
            tracker=self.tracker,
        )
        self.listener_names: list[str] = []
        for description, make_listener in listeners(self.config, self.reactor):
            svc = make_listener(self.site)
            svc.setName(description)
            svc.setServiceParent(self)
            self.listener_names.append(description)
        # Periodic housekeeping: started with the listeners (after setup),
        # stopped with them (waiting for a run in progress) before the
        # database closes.
        homeserver.housekeeping.setServiceParent(self)
        self.ready: Deferred[None] = Deferred()
        if hasattr(homeserver.db, "on_fatal"):
            homeserver.db.on_fatal = self._database_failed

    def _database_failed(self, error: Exception) -> None:
        """
        The database lost applied writes (a failed COMMIT): exit with
        status 1 so supervisord/systemd restart the server from what is
        durable, instead of serving caches that may hold lost writes.
        """
        log.critical("Stopping: the database failed ({error})", error=str(error))
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self.reactor.callLater(0, self.reactor.stop)

    def privilegedStartService(self) -> None:
        """
        Bind the listening sockets (twistd does this before dropping
        privileges); a port in use stops start-up with a one-line message.
        """
        try:
            MultiService.privilegedStartService(self)
        except CannotListenError as e:
            log.critical("Start-up failed: {error}", error=str(e))
            sys.stderr.write(f"conduit: Start-up failed: {e}\n")
            raise SystemExit(1)

    def startService(self) -> None:
        """Load persistent state, then start listening."""
        for notice in self.config.notices:
            log.warn("{notice}", notice=notice)
        d = Deferred.fromCoroutine(self.homeserver.setup())

        def started(_: object) -> None:
            MultiService.startService(self)
            log.info(
                "conduit-tw serving {server_name} on {where}",
                server_name=self.config.server_name,
                where=", ".join(self.listener_names),
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
        self.site.closing = True  # new requests: 503 (in-flight ones finish)
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
        yield self.site.close_connections(self.reactor)
        yield self.homeserver.close()


def listeners(config: Config, reactor: Any) -> list[tuple[str, Any]]:
    """
    The listeners for the config, as C{(description, factory -> service)}:
    a UNIX socket when C{unix_socket_path} is set, else every C{address}
    x C{port} combination; TLS when C{[global.tls]} gives a certificate and
    key, and plain HTTP on the same ports too with its C{dual_protocol}
    (L{conduit_tw.dual_protocol}). (twisted.internet.endpoints is not used: it imports pyOpenSSL,
    which costs 14 MB of memory even when TLS is off.)
    """
    if config.unix_socket_path:
        path = config.unix_socket_path
        mode = config.unix_socket_mode
        if os.path.exists(path):
            os.unlink(path)
        return [
            (f"unix:{path}", lambda site: UNIXServer(path, site, mode=mode, reactor=reactor))
        ]
    result: list[tuple[str, Any]] = []
    tls = config.tls
    context_factory = _tls_context(tls.certs, tls.key) if tls is not None else None
    for address, port in config.listen_addresses():
        if context_factory is not None and tls is not None and tls.dual_protocol:
            desc = f"https+http://{_host(address)}:{port}"
            result.append((desc, _dual_server(port, context_factory, address, reactor)))
        elif context_factory is not None:
            desc = f"https://{_host(address)}:{port}"
            result.append((desc, _ssl_server(port, context_factory, address, reactor)))
        else:
            desc = f"http://{_host(address)}:{port}"
            result.append((desc, _tcp_server(port, address, reactor)))
    return result


def _tcp_server(port: int, address: str, reactor: Any):
    return lambda site: TCPServer(port, site, interface=address, reactor=reactor)


def _ssl_server(port: int, context_factory: Any, address: str, reactor: Any):
    return lambda site: SSLServer(port, site, context_factory, interface=address, reactor=reactor)


def _dual_server(port: int, context_factory: Any, address: str, reactor: Any):
    from conduit_tw.dual_protocol import DualProtocolFactory

    return lambda site: TCPServer(
        port, DualProtocolFactory(site, context_factory), interface=address, reactor=reactor
    )


def _tls_context(certs_path: str, key_path: str) -> Any:
    """
    A server TLS context from PEM files: the certificate chain (leaf first,
    as Let's Encrypt's fullchain.pem) and the private key.
    """
    from twisted.internet import ssl

    with open(certs_path, "rb") as f:
        chain = f.read()
    with open(key_path, "rb") as f:
        key = f.read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [b.strip() + b"\n" + marker for b in chain.split(marker) if b.strip()]
    if not blocks:
        raise StartupError(f"global.tls.certs: no PEM certificate in {certs_path}")
    certs = [ssl.Certificate.loadPEM(b) for b in blocks]
    private = ssl.PrivateCertificate.fromCertificateAndKeyPair(
        certs[0], ssl.KeyPair.load(key, 1)  # 1 == FILETYPE_PEM
    )
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=[c.original for c in certs[1:]],
    )


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
    try:
        return ConduitService(homeserver)
    except OSError as e:
        homeserver.close()
        raise StartupError(f"cannot set up the listeners: {e}") from e
    except StartupError:
        homeserver.close()
        raise
