"""
Tunnels through Conduit's C{proxy} (a proxy for I{outgoing} requests):
L{TunnelEndpoint} connects to the proxy, asks it for a tunnel to the
target, and hands the tunnel to the protocol (plain HTTP, or TLS to the
target wrapped around it with C{wrapClientTLS}, so certificates are checked
against the target exactly as without a proxy).

  - C{http://} and C{https://} proxies: C{CONNECT host:port HTTP/1.1}
    (RFC 9110 section 9.3.6), C{Proxy-Authorization: Basic} from the URL's
    user info; an https proxy is reached over TLS itself.
  - C{socks5://} and C{socks5h://} (RFC 1928; user and password from the
    URL, RFC 1929): C{socks5h} sends the host name for the proxy to
    resolve, C{socks5} sends addresses resolved here.

A proxy that resolves names (http, https, socks5h) also decides where they
lead: C{ip_range_denylist} then applies only to IP literals (see
L{conduit_tw.http.client.CheckedEndpoint}).
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from conduit_tw.http.errors import OutgoingRequestError

#: Longest CONNECT answer head read.
_MAX_HEAD = 16 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}


class ProxyError(OutgoingRequestError):
    """The proxy refused or broke the tunnel."""


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy URL."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "Proxy":
        """C{scheme://[user:password@]host[:port]} (the config checked the scheme)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(
            scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS[scheme],
            unquote(parts.username) if parts.username is not None else None,
            unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def resolves_names(self) -> bool:
        """Whether host names are sent to the proxy (all but C{socks5})."""
        return self.scheme != "socks5"


class _Tunnel(Protocol):
    """
    Speaks to the proxy until the tunnel is up, then passes everything
    between the transport and the protocol built from C{factory}.
    """

    def __init__(self, proxy: Proxy, host: str, port: int, factory: IProtocolFactory) -> None:
        self.proxy = proxy
        self.host = host
        self.port = port
        self.factory = factory
        #: Fires with the inner protocol once the tunnel is up.
        self.ready: Deferred[Any] = Deferred(self._cancel)
        self.inner: Any = None
        self.buffer = b""

    # -- the handshake (subclasses)

    def start(self) -> None:
        raise NotImplementedError

    def handshake(self) -> bytes | None:
        """Consume C{self.buffer}; the bytes after the handshake once done, else None."""
        raise NotImplementedError

    # -- plumbing

    def _cancel(self, d: Deferred[Any]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionMade(self) -> None:
        self.start()

    def fail(self, why: str) -> None:
        self.transport.abortConnection()
        if not self.ready.called:
            self.ready.errback(ProxyError(f"proxy {self.proxy.host}:{self.proxy.port}: {why}"))

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self.buffer += data
        rest = self.handshake()
        if rest is None or self.ready.called:
            return
        self.buffer = b""
        self.inner = self.factory.buildProtocol(self.transport.getPeer())
        if self.inner is None:
            self.transport.loseConnection()
            self.ready.errback(ProxyError("the protocol factory refused the connection"))
            return
        self.inner.makeConnection(self.transport)
        self.ready.callback(self.inner)
        if rest:
            self.inner.dataReceived(rest)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
        elif not self.ready.called:
            self.ready.errback(ProxyError(f"proxy closed the connection: {reason.getErrorMessage()}"))


class _HttpConnect(_Tunnel):
    """C{CONNECT host:port} (RFC 9110 section 9.3.6)."""

    def start(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"CONNECT {host}:{self.port} HTTP/1.1", f"Host: {host}:{self.port}"]
        if self.proxy.username is not None:
            secret = f"{self.proxy.username}:{self.proxy.password or ''}".encode()
            lines.append("Proxy-Authorization: Basic " + base64.b64encode(secret).decode())
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))

    def handshake(self) -> bytes | None:
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            if len(self.buffer) > _MAX_HEAD:
                self.fail("answer too long")
            return None
        status = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
            self.fail(f"not an HTTP answer: {head[:60]!r}")
            return None
        if not status[1].startswith(b"2"):
            self.fail("CONNECT refused: " + b" ".join(status[1:]).decode("ascii", "replace"))
            return None
        return rest


class _Socks5(_Tunnel):
    """RFC 1928 CONNECT, with RFC 1929 user/password authentication when given."""

    state = "method"

    def start(self) -> None:
        methods = b"\x00\x02" if self.proxy.username is not None else b"\x00"
        self.transport.write(b"\x05" + bytes([len(methods)]) + methods)

    def _take(self, n: int) -> bytes | None:
        if len(self.buffer) < n:
            return None
        taken, self.buffer = self.buffer[:n], self.buffer[n:]
        return taken

    def _request(self) -> None:
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            name = self.host.encode("idna")
            address = b"\x03" + bytes([len(name)]) + name
        else:
            address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
        self.transport.write(b"\x05\x01\x00" + address + struct.pack("!H", self.port))
        self.state = "reply"

    def handshake(self) -> bytes | None:
        while True:
            if self.state == "method":
                answer = self._take(2)
                if answer is None:
                    return None
                if answer[0] != 5 or answer[1] not in (0, 2):
                    self.fail("no acceptable SOCKS5 authentication method")
                    return None
                if answer[1] == 2:
                    user = (self.proxy.username or "").encode()
                    password = (self.proxy.password or "").encode()
                    self.transport.write(
                        b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
                    )
                    self.state = "auth"
                else:
                    self._request()
            elif self.state == "auth":
                answer = self._take(2)
                if answer is None:
                    return None
                if answer[1] != 0:
                    self.fail("SOCKS5 authentication failed")
                    return None
                self._request()
            else:  # reply: VER REP RSV ATYP BND.ADDR BND.PORT
                if len(self.buffer) < 5:
                    return None
                if self.buffer[1] != 0:
                    self.fail(f"SOCKS5 CONNECT refused (reply {self.buffer[1]})")
                    return None
                atyp = self.buffer[3]
                length = {1: 4, 4: 16}.get(atyp, 1 + self.buffer[4] if atyp == 3 else -1)
                if length < 0:
                    self.fail(f"bad SOCKS5 address type {atyp}")
                    return None
                if self._take(4 + length + 2) is None:
                    return None
                return self.buffer


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """
    Connects through C{proxy} (reached by C{proxy_endpoint}) to
    C{host:port}; the protocol gets the tunnel as its transport.
    """

    def __init__(self, proxy_endpoint: Any, proxy: Proxy, host: str, port: int) -> None:
        self._proxy_endpoint = proxy_endpoint
        self._proxy = proxy
        self._host = host
        self._port = port

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        kind = _Socks5 if self._proxy.scheme.startswith("socks5") else _HttpConnect
        tunnel = kind(self._proxy, self._host, self._port, factory)
        await connectProtocol(self._proxy_endpoint, tunnel)
        return await tunnel.ready
