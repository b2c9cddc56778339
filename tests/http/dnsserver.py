"""
A real DNS server on 127.0.0.1 for tests (twisted.names.server over UDP
and/or TCP) serving one in-memory zone, and counting the queries it gets.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.names import authority, dns, server
from twisted.trial import unittest

ZONE = "example.test"


class MemoryAuthority(authority.FileAuthority):
    """The zone C{example.test}: C{records} maps a name to twisted.names records."""

    def __init__(self, records: dict[str, list[Any]], negative_ttl: int = 60) -> None:
        self._initial = records
        self._negative_ttl = negative_ttl
        super().__init__(ZONE)

    def loadFile(self, filename: Any) -> None:
        soa = dns.Record_SOA(
            mname=f"ns.{ZONE}", rname=f"admin.{ZONE}", serial=1, refresh=60, retry=60,
            expire=60, minimum=self._negative_ttl, ttl=self._negative_ttl,
        )
        self.soa = (ZONE.encode(), soa)
        self.records = {ZONE.encode(): [soa]}
        for name, rrs in self._initial.items():
            self.records.setdefault(name.lower().encode(), []).extend(rrs)

    def set(self, name: str, records: list[Any]) -> None:
        """Replace the records of C{name} (the server answers the new ones at once)."""
        self.records[name.lower().encode()] = records


class CountingFactory(server.DNSServerFactory):
    """
    Serves the authority and records each query C{(transport, name, type)};
    with C{rcode}, answers every query with that error code instead.
    """

    def __init__(self, zone: MemoryAuthority, queries: list[tuple[str, str, int]],
                 rcode: int | None = None) -> None:
        super().__init__(authorities=[zone])
        self.queries = queries
        self.rcode = rcode

    def handleQuery(self, message: dns.Message, protocol: Any, address: Any) -> None:
        transport = "udp" if isinstance(protocol, dns.DNSDatagramProtocol) else "tcp"
        for q in message.queries:
            self.queries.append((transport, q.name.name.decode(), q.type))
        if transport == "udp":
            message.maxSize = 512  # RFC 1035: truncate (TC bit) like real servers
        if self.rcode is not None:
            response = self._responseFromMessage(message=message, rCode=self.rcode)
            self.sendReply(protocol, response, address)
            return
        super().handleQuery(message, protocol, address)


class DNSServer:
    """
    The running server: C{address} for L{conduit_tw.http.dns.DNSResolver}'s
    C{servers}, C{queries} it received, C{zone} to change records.
    """

    def __init__(self, case: unittest.TestCase, records: dict[str, list[Any]], *,
                 udp: bool = True, tcp: bool = True, udp_rcode: int | None = None,
                 negative_ttl: int = 60) -> None:
        self.zone = MemoryAuthority(records, negative_ttl)
        self.queries: list[tuple[str, str, int]] = []
        tcp_factory = CountingFactory(self.zone, self.queries)
        udp_factory = CountingFactory(self.zone, self.queries, udp_rcode)
        # TCP and UDP on the same port number (the TCP one is picked first).
        tcp_port = reactor.listenTCP(0, tcp_factory, interface="127.0.0.1")
        port = tcp_port.getHost().port
        if not tcp:
            tcp_port.stopListening()
        else:
            case.addCleanup(tcp_port.stopListening)
        if udp:
            udp_port = reactor.listenUDP(
                port, dns.DNSDatagramProtocol(udp_factory), interface="127.0.0.1"
            )
            case.addCleanup(udp_port.stopListening)
        self.address = ("127.0.0.1", port)

    def count(self, transport: str | None = None) -> int:
        """Queries received (over C{transport} only, when given)."""
        return sum(1 for q in self.queries if transport in (None, q[0]))
