"""
One port for HTTPS and plain HTTP (conduwuit's C{[global.tls] dual_protocol}).

L{DualProtocolFactory} looks at the first byte a client sends: C{0x16} opens
a TLS handshake record (RFC 8446 section 5.1, ContentType handshake(22)), so
the connection is handed to a TLS server protocol wrapping the site; any
other byte starts plain HTTP, handed to the site directly. Either way the
chosen protocol takes the connection's transport as its own, so it sees
every byte from the first on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, ITransport
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

#: The first byte of a TLS record carrying a handshake message.
TLS_HANDSHAKE = 0x16
#: Seconds a client may stay silent before its first byte (then the
#: chosen protocol's own timeouts apply).
FIRST_BYTE_TIMEOUT = 60


class _Sniffer(Protocol, TimeoutMixin):
    """Waits for the first byte, then becomes the TLS or the plain protocol."""

    def __init__(self, factory: "DualProtocolFactory", addr: IAddress) -> None:
        self.factory = factory
        self.addr = addr
        self.inner: Protocol | None = None

    def connectionMade(self) -> None:
        self.setTimeout(FIRST_BYTE_TIMEOUT)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.inner is None:
            if not data:
                return
            self.setTimeout(None)
            chosen = self.factory.tls if data[0] == TLS_HANDSHAKE else self.factory.plain
            inner = chosen.buildProtocol(self.addr)
            if inner is None:
                self.transport.loseConnection()
                return
            self.inner = inner
            transport: ITransport = self.transport  # type: ignore[assignment]
            # The transport delivers straight to the chosen protocol from now on.
            if hasattr(transport, "protocol"):
                transport.protocol = inner  # type: ignore[attr-defined]
            inner.makeConnection(transport)
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        if self.inner is not None:
            self.inner.connectionLost(reason)


class DualProtocolFactory(ServerFactory):
    """Serves C{site} over TLS (C{context_factory}) and over plain HTTP."""

    def __init__(self, site: Factory, context_factory: Any) -> None:
        self.plain = site
        self.tls = TLSMemoryBIOFactory(context_factory, False, site)

    def doStart(self) -> None:
        self.tls.doStart()  # starts the site it wraps

    def doStop(self) -> None:
        self.tls.doStop()

    def buildProtocol(self, addr: IAddress) -> Protocol:
        return _Sniffer(self, addr)
