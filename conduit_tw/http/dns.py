"""
L{DNSResolver}: the server's own DNS client (twisted.names), used by
server discovery for its SRV lookups (server-server-api "Resolving server
names", steps 3.3, 3.4, 4 and 5) and by the outgoing HTTP client for the
addresses of every host it connects to, configured with conduwuit's
resolver settings:

  - the nameservers of C{/etc/resolv.conf}; for addresses, C{/etc/hosts}
    first (so C{localhost} works as everywhere else);
  - C{dns_timeout} seconds per query and C{dns_attempts} retries after a
    timeout, going round the nameservers;
  - UDP, with the same query over TCP when an answer is truncated
    (RFC 7766); C{dns_tcp_fallback}: everything over TCP again when UDP
    gave no usable answer (timeouts, C{SERVFAIL}, C{REFUSED}, ...);
    C{query_over_tcp_only}: TCP only;
  - C{query_all_nameservers}: a "no such name" or empty answer from one
    nameserver is not trusted, the next one is asked (hickory's
    C{trust_negative_responses = false}); by default the first answer is
    final;
  - an LRU cache of C{dns_cache_entries} answers, each kept for its TTL but
    at least C{dns_min_ttl} seconds; negative answers (no such name, or no
    records of the type) for the SOA's negative TTL (RFC 2308 section 5)
    but at least C{dns_min_ttl_nxdomain}; failures are not cached;
    concurrent lookups of one name share one query;
  - C{ip_lookup_strategy} for addresses: 1 A only, 2 AAAA only, 3 both at
    once, 4 AAAA then A, 5 A then AAAA ("then": when the first gives no
    address).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any, Callable, Sequence

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from conduit_tw.logging import get_logger

if TYPE_CHECKING:
    from twisted.names import dns
from conduit_tw.util.caches import LruCache

log = get_logger("conduit_tw.http.dns")

RESOLV_CONF = "/etc/resolv.conf"
HOSTS_FILE = "/etc/hosts"
#: CNAMEs followed for one lookup (when a server returns a CNAME alone).
MAX_CNAME_DEPTH = 8
# Record types and answer codes (RFC 1035, 2782, 3596); twisted.names itself
# is imported on first use (start-up footprint, as for conduit_tw.http.lazy).
A, CNAME, SOA, AAAA, SRV = 1, 5, 6, 28, 33
NXDOMAIN = 3
#: Answer codes after which the next nameserver (or TCP) is tried:
#: FORMERR, SERVFAIL, NOTIMP, REFUSED.
_SERVER_ERRORS = frozenset({1, 2, 4, 5})

Nameserver = tuple[str, int]


class DNSLookupFailed(Exception):
    """No nameserver gave a usable answer (timeouts, server errors)."""


def system_nameservers(path: str = RESOLV_CONF) -> list[Nameserver]:
    """The C{nameserver} lines of a resolv.conf (C{127.0.0.1} when there are none)."""
    servers: list[Nameserver] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    address = parts[1].split("%", 1)[0]
                    try:
                        ipaddress.ip_address(address)
                    except ValueError:
                        continue
                    servers.append((address, 53))
    except OSError as e:
        log.warn("Cannot read {path}: {error}", path=path, error=str(e))
    return servers or [("127.0.0.1", 53)]


class _Controller:
    """The controller twisted.names protocols report to; unsolicited messages are dropped."""

    def messageReceived(self, message: dns.Message, protocol: Any, address: Any = None) -> None:
        pass

    def connectionMade(self, protocol: Any) -> None:
        pass

    def connectionLost(self, protocol: Any) -> None:
        pass


def _is_negative(message: dns.Message, rtype: int) -> bool:
    """A "no such name" answer, or one without records of the type asked (nor a CNAME)."""
    if message.rCode == NXDOMAIN:
        return True
    return not any(a.type in (rtype, CNAME) for a in message.answers)


class DNSResolver:
    """
    See the module docstring. One per server, shared by the federation
    client, server discovery and the other outgoing clients.

    @param config: the C{dns_*}, C{query_*} and C{ip_lookup_strategy} keys.
    @param servers: nameservers C{(ip, port)}; those of C{/etc/resolv.conf}
        by default.
    @param hosts_file: consulted for addresses before DNS.
    @param seconds: the clock of the cache (C{reactor.seconds} by default).
    """

    def __init__(
        self,
        reactor: Any,
        config: Any,
        servers: Sequence[Nameserver] | None = None,
        hosts_file: str | None = HOSTS_FILE,
        seconds: Callable[[], float] | None = None,
    ) -> None:
        self.reactor = reactor
        self._seconds = seconds or reactor.seconds
        self.servers: list[Nameserver] = list(servers) if servers else system_nameservers()
        self.hosts_file = hosts_file
        self.timeout: float = config.dns_timeout
        self.attempts = 1 + int(config.dns_attempts)
        self.tcp_fallback = bool(config.dns_tcp_fallback)
        self.tcp_only = bool(config.query_over_tcp_only)
        self.query_all = bool(config.query_all_nameservers)
        self.min_ttl: int = config.dns_min_ttl
        self.min_ttl_negative: int = config.dns_min_ttl_nxdomain
        self.strategy: int = config.ip_lookup_strategy
        entries = int(config.dns_cache_entries)
        self._cache: LruCache[tuple[str, int], tuple[float, tuple[Any, ...]]] | None = (
            LruCache(entries) if entries > 0 else None
        )
        self._waiting: dict[tuple[str, int], list[Deferred[tuple[Any, ...]]]] = {}
        #: Queries sent (by transport), for operators' curiosity and tests.
        self.sent = {"udp": 0, "tcp": 0}

    # -- addresses

    async def resolve_host(self, host: str) -> list[str]:
        """
        The IP addresses of C{host} in the order to try them (itself when
        an IP literal), per C{ip_lookup_strategy}.

        @raise DNSLookupError: no address.
        """
        try:
            return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
        except ValueError:
            pass
        try:
            host.encode("idna")
        except UnicodeError:
            raise DNSLookupError(f"{host}: not a valid host name") from None
        from_hosts = self._from_hosts_file(host)
        if from_hosts:
            return from_hosts
        first, second = {1: (A, None), 2: (AAAA, None), 4: (AAAA, A)}.get(
            self.strategy, (A, AAAA)
        )
        errors: list[BaseException] = []
        if self.strategy == 3:  # both at once
            results = await DeferredList(
                [Deferred.fromCoroutine(self._addresses(host, t)) for t in (A, AAAA)],
                consumeErrors=True,
            )
            addresses = []
            for ok, value in results:
                if ok:
                    addresses.extend(value)
                else:
                    errors.append(value.value)
        else:
            addresses = []
            for rtype in (first, second):
                if rtype is None or addresses:
                    break
                try:
                    addresses = await self._addresses(host, rtype)
                except DNSLookupFailed as e:
                    errors.append(e)
        if not addresses:
            raise DNSLookupError(f"{host}: {errors[0] if errors else 'no address'}")
        return addresses

    def _from_hosts_file(self, host: str) -> list[str]:
        if not self.hosts_file:
            return []
        from twisted.names import hosts
        from twisted.python.filepath import FilePath

        found = hosts.searchFileForAll(FilePath(self.hosts_file), host.encode("idna"))
        v4 = [a for a in found if ":" not in a]
        v6 = [a for a in found if ":" in a]
        return {1: v4, 2: v6, 3: v4 + v6, 4: v6 or v4}.get(self.strategy, v4 or v6)

    async def _addresses(self, host: str, rtype: int) -> list[str]:
        records = await self.lookup(host, rtype)
        if rtype == A:
            return [r.payload.dottedQuad() for r in records]
        return [socket.inet_ntop(socket.AF_INET6, r.payload.address) for r in records]

    # -- records

    async def lookup(self, name: str, rtype: int) -> tuple[Any, ...]:
        """
        The records (twisted.names C{RRHeader}) of type C{rtype} for
        C{name}, CNAMEs followed; empty when there are none.

        @raise DNSLookupFailed: no usable answer.
        """
        return await self._lookup(name.rstrip(".").lower(), rtype, 0)

    async def _lookup(self, name: str, rtype: int, depth: int) -> tuple[Any, ...]:
        key = (name, rtype)
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > self._seconds():
                return cached[1]
        # Each caller waits on its own Deferred: cancelling one (its request
        # timed out) neither cancels the query nor fails the others.
        d: Deferred[tuple[Any, ...]] = Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(d)
            return await d
        self._waiting[key] = [d]

        def done(result: Any) -> None:
            for w in self._waiting.pop(key):
                if w.called:  # cancelled
                    continue
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(result)

        Deferred.fromCoroutine(self._fetch(name, rtype, depth)).addBoth(done)
        return await d

    async def _fetch(self, name: str, rtype: int, depth: int) -> tuple[Any, ...]:
        from twisted.names import dns

        message = await self._exchange(dns.Query(name, rtype, dns.IN))
        if _is_negative(message, rtype):
            self._remember(name, rtype, (), self._negative_ttl(message))
            return ()
        records = tuple(a for a in message.answers if a.type == rtype)
        ttls = [a.ttl for a in message.answers if a.type in (rtype, CNAME)]
        if not records:  # a CNAME the server did not follow
            if depth >= MAX_CNAME_DEPTH:
                raise DNSLookupFailed(f"{name}: too many CNAMEs")
            cnames = [a for a in message.answers if a.type == CNAME]
            target = cnames[-1].payload.name.name.decode("ascii", "replace").rstrip(".").lower()
            records = await self._lookup(target, rtype, depth + 1)
        self._remember(name, rtype, records, max(self.min_ttl, min(ttls)))
        return records

    def _negative_ttl(self, message: dns.Message) -> int:
        """RFC 2308 section 5: min(SOA TTL, SOA MINIMUM), at least C{dns_min_ttl_nxdomain}."""
        ttl = 0
        for rr in message.authority:
            if rr.type == SOA:
                ttl = min(rr.ttl, rr.payload.minimum)
        return max(self.min_ttl_negative, ttl)

    def _remember(self, name: str, rtype: int, records: tuple[Any, ...], ttl: float) -> None:
        if self._cache is not None and ttl > 0:
            self._cache[(name, rtype)] = (self._seconds() + ttl, records)

    # -- talking to nameservers

    async def _exchange(self, query: dns.Query) -> dns.Message:
        """One answer for C{query}: UDP (then TCP when allowed and needed), or TCP only."""
        if self.tcp_only:
            return await self._ask_all(query, tcp=True)
        try:
            return await self._ask_all(query, tcp=False)
        except DNSLookupFailed as e:
            if not self.tcp_fallback:
                raise
            log.debug("DNS over UDP failed for {name} ({error}); trying TCP",
                      name=query.name, error=str(e))
            return await self._ask_all(query, tcp=True)

    async def _ask_all(self, query: dns.Query, tcp: bool) -> dns.Message:
        """
        Ask the nameservers in turn, C{attempts} rounds while some give no answer;
        the first conclusive answer (see C{query_all_nameservers}).
        """
        negative: dns.Message | None = None
        errors: list[str] = []
        for _ in range(self.attempts):
            unanswered = False
            for server in self.servers:
                try:
                    message = await self._ask(server, query, tcp)
                except CancelledError:
                    raise
                except Exception as e:  # timeout, connection refused, ...
                    unanswered = True
                    errors.append(f"{server[0]}:{server[1]}: {type(e).__name__}")
                    continue
                if message.rCode in _SERVER_ERRORS:
                    errors.append(f"{server[0]}:{server[1]}: rcode {message.rCode}")
                    continue
                if self.query_all and _is_negative(message, query.type):
                    negative = negative or message
                    continue
                return message
            if negative is not None:
                return negative
            if not unanswered:
                break
        raise DNSLookupFailed(f"{query.name}: " + "; ".join(errors[-4:]))

    async def _ask(self, server: Nameserver, query: dns.Query, tcp: bool) -> dns.Message:
        if not tcp:
            message = await self._ask_udp(server, query)
            if not message.trunc:
                return message
        return await self._ask_tcp(server, query)

    async def _ask_udp(self, server: Nameserver, query: dns.Query) -> dns.Message:
        from twisted.names import dns

        self.sent["udp"] += 1
        protocol = dns.DNSDatagramProtocol(_Controller(), reactor=self.reactor)
        interface = "::" if ":" in server[0] else ""
        port = self.reactor.listenUDP(0, protocol, interface=interface, maxPacketSize=65535)
        try:
            return await protocol.query(server, [query], self.timeout)
        finally:
            await _maybe_deferred(port.stopListening())

    async def _ask_tcp(self, server: Nameserver, query: dns.Query) -> dns.Message:
        from twisted.internet.endpoints import (
            TCP4ClientEndpoint,
            TCP6ClientEndpoint,
            connectProtocol,
        )
        from twisted.names import dns

        self.sent["tcp"] += 1
        host, port = server
        tcp_class = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        endpoint = tcp_class(self.reactor, host, port, timeout=self.timeout)
        protocol = dns.DNSProtocol(_Controller(), reactor=self.reactor)
        await connectProtocol(endpoint, protocol)
        try:
            return await protocol.query([query], self.timeout)
        finally:
            protocol.transport.loseConnection()


async def _maybe_deferred(result: Any) -> None:
    if isinstance(result, Deferred):
        await result
