"""
Small real proxies for tests, on 127.0.0.1: an HTTP CONNECT proxy and a
SOCKS5 proxy (RFC 1928/1929), relaying bytes to the target they are asked
for, and recording what they were asked.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.trial import unittest


class _Relay(Protocol):
    """The proxy's connection to the target: bytes back to the client side."""

    def __init__(self, client: "_ProxyProtocol") -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.target_connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.client.transport.loseConnection()


class _RelayFactory(ClientFactory):
    def __init__(self, client: "_ProxyProtocol") -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> _Relay:
        return _Relay(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.client.target_failed()


class _ProxyProtocol(Protocol):
    factory: "TestProxy"

    def __init__(self) -> None:
        self.buffer = b""
        self.relay: _Relay | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.transport.write(data)
            return
        self.buffer += data
        self.handshake()

    def connect(self, host: str, port: int) -> None:
        self.factory.requests.append((host, port))
        host = self.factory.names.get(host, host)
        reactor.connectTCP(host, port, _RelayFactory(self), timeout=5)

    def target_connected(self, relay: _Relay) -> None:
        self.relay = relay
        self.established()
        if self.buffer:
            relay.transport.write(self.buffer)
            self.buffer = b""

    def connectionLost(self, reason: Any = None) -> None:
        if self.relay is not None:
            self.relay.transport.loseConnection()

    def handshake(self) -> None:
        raise NotImplementedError

    def established(self) -> None:
        raise NotImplementedError

    def target_failed(self) -> None:
        self.transport.loseConnection()


class _Connect(_ProxyProtocol):
    def handshake(self) -> None:
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        self.buffer = rest
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        self.factory.headers.append(headers)
        if method != "CONNECT" or self.factory.refuse:
            self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            self.transport.loseConnection()
            return
        host, _, port = target.rpartition(":")
        self.connect(host.strip("[]"), int(port))

    def established(self) -> None:
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

    def target_failed(self) -> None:
        self.transport.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        self.transport.loseConnection()


class _Socks5(_ProxyProtocol):
    state = "greeting"

    def handshake(self) -> None:
        b = self.buffer
        if self.state == "greeting":
            if len(b) < 2 or len(b) < 2 + b[1]:
                return
            methods = b[2:2 + b[1]]
            self.buffer = b[2 + b[1]:]
            if self.factory.credentials is not None:
                if 2 not in methods:
                    self.transport.write(b"\x05\xff")
                    self.transport.loseConnection()
                    return
                self.transport.write(b"\x05\x02")
                self.state = "auth"
            else:
                self.transport.write(b"\x05\x00")
                self.state = "request"
        elif self.state == "auth":
            if len(b) < 2 or len(b) < 3 + b[1] or len(b) < 3 + b[1] + b[2 + b[1]]:
                return
            ulen = b[1]
            user = b[2:2 + ulen].decode()
            plen = b[2 + ulen]
            password = b[3 + ulen:3 + ulen + plen].decode()
            self.buffer = b[3 + ulen + plen:]
            ok = (user, password) == self.factory.credentials
            self.transport.write(b"\x01" + (b"\x00" if ok else b"\x01"))
            if not ok:
                self.transport.loseConnection()
                return
            self.state = "request"
        else:
            if len(b) < 5:
                return
            atyp = b[3]
            if atyp == 1:
                end, host = 8, str(ipaddress.IPv4Address(b[4:8]))
            elif atyp == 4:
                end, host = 20, str(ipaddress.IPv6Address(b[4:20]))
            else:
                end, host = 5 + b[4], b[5:5 + b[4]].decode()
            if len(b) < end + 2:
                return
            (port,) = struct.unpack("!H", b[end:end + 2])
            self.buffer = b[end + 2:]
            self.state = "relay"
            self.factory.atyps.append(atyp)
            self.connect(host, port)
            return
        if self.buffer:
            self.handshake()

    def established(self) -> None:
        self.transport.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00")

    def target_failed(self) -> None:
        self.transport.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
        self.transport.loseConnection()


class TestProxy(Factory):
    """
    A proxy on 127.0.0.1 (C{kind} "connect" or "socks5"). C{requests}: the
    C{(host, port)} targets asked for; C{headers}: CONNECT request headers;
    C{atyps}: SOCKS5 address types; C{names}: host names it resolves itself.
    """

    def __init__(self, case: unittest.TestCase, kind: str = "connect", *,
                 names: dict[str, str] | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.protocol = _Connect if kind == "connect" else _Socks5  # type: ignore[assignment]
        self.requests: list[tuple[str, int]] = []
        self.headers: list[dict[str, str]] = []
        self.atyps: list[int] = []
        self.names = names or {}
        self.credentials = credentials
        self.refuse = False
        self.connections: list[Protocol] = []
        port = reactor.listenTCP(0, self, interface="127.0.0.1")
        case.addCleanup(port.stopListening)
        self.port = port.getHost().port

    def buildProtocol(self, addr: Any) -> Protocol:
        p = super().buildProtocol(addr)
        self.connections.append(p)
        return p

    def close_all(self) -> None:
        """Drop every tunnel (test clean-up)."""
        for p in self.connections:
            if p.transport is not None:
                p.transport.loseConnection()
