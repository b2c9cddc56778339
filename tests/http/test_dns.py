"""
The server's DNS resolver (conduit_tw/http/dns.py) against real DNS
servers (twisted.names.server) on 127.0.0.1: each C{dns_*} / C{query_*} /
C{ip_lookup_strategy} key, the cache, and its use by server discovery and
the outgoing clients.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns
from twisted.trial import unittest

from conduit_tw.federation.client import FederationClient
from conduit_tw.http.dns import DNSLookupFailed, DNSResolver
from tests.federation.test_client import OurKeys, Remote
from tests.http.dnsserver import DNSServer
from tests.http.test_client import CountingSite, _tick, self_signed
from tests.server import make_config


class Clock:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def seconds(self) -> float:
        return self.now


def a(ip: str, ttl: int = 300) -> dns.Record_A:
    return dns.Record_A(ip, ttl=ttl)


def aaaa(ip: str, ttl: int = 300) -> dns.Record_AAAA:
    return dns.Record_AAAA(ip, ttl=ttl)


class ResolverCase(unittest.TestCase):
    """Builds resolvers talking to the test's servers, with a hand-moved clock."""

    def setUp(self) -> None:
        self.clock = Clock()

    def resolver(self, *servers: DNSServer | tuple[str, int], **config: Any) -> DNSResolver:
        defaults: dict[str, Any] = {"dns_timeout": 1, "dns_attempts": 1}
        defaults.update(config)
        addresses = [s.address if isinstance(s, DNSServer) else s for s in servers]
        return DNSResolver(
            reactor, make_config(**defaults), servers=addresses, hosts_file=None,
            seconds=self.clock.seconds,
        )


class CacheTests(ResolverCase):
    """dns_cache_entries, dns_min_ttl, dns_min_ttl_nxdomain."""

    async def test_answer_cached_at_least_min_ttl(self) -> None:
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2", ttl=5)]})
        r = self.resolver(server, dns_min_ttl=100)
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])
        server.zone.set("h.example.test", [a("127.0.0.3", ttl=5)])
        self.clock.now += 50  # past the record's TTL, within dns_min_ttl
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])
        self.assertEqual(server.count(), 1)
        self.clock.now += 51
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.3"])
        self.assertEqual(server.count(), 2)

    async def test_record_ttl_honoured_above_min_ttl(self) -> None:
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2", ttl=500)]})
        r = self.resolver(server, dns_min_ttl=0)
        await r.resolve_host("h.example.test")
        server.zone.set("h.example.test", [a("127.0.0.3", ttl=500)])
        self.clock.now += 499
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])
        self.clock.now += 2
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.3"])

    async def test_nxdomain_cached_at_least_min_ttl_nxdomain(self) -> None:
        server = DNSServer(self, {}, negative_ttl=60)
        r = self.resolver(server, dns_min_ttl_nxdomain=1000)
        with self.assertRaises(DNSLookupError):
            await r.resolve_host("new.example.test")
        queries = server.count()
        server.zone.set("new.example.test", [a("127.0.0.4")])
        self.clock.now += 999
        with self.assertRaises(DNSLookupError):
            await r.resolve_host("new.example.test")
        self.assertEqual(server.count(), queries, "the negative answer was cached")
        self.clock.now += 2
        self.assertEqual(await r.resolve_host("new.example.test"), ["127.0.0.4"])

    async def test_negative_ttl_from_soa_when_longer(self) -> None:
        # No A record (the name has others): the answer carries the zone's SOA.
        server = DNSServer(self, {"six.example.test": [aaaa("::6")]}, negative_ttl=60)
        r = self.resolver(server, dns_min_ttl_nxdomain=0)
        self.assertEqual(await r.lookup("six.example.test", dns.A), ())
        server.zone.set("six.example.test", [a("127.0.0.4")])
        self.clock.now += 59
        self.assertEqual(await r.lookup("six.example.test", dns.A), ())
        self.clock.now += 2
        self.assertEqual(len(await r.lookup("six.example.test", dns.A)), 1)

    async def test_cache_entries_bound(self) -> None:
        server = DNSServer(self, {
            "one.example.test": [a("127.0.0.1")], "two.example.test": [a("127.0.0.2")],
        })
        r = self.resolver(server, dns_cache_entries=1)
        for name in ("one", "two", "one", "two"):
            await r.lookup(f"{name}.example.test", dns.A)
        self.assertEqual(server.count(), 4, "one entry: each name evicted the other")
        await r.lookup("two.example.test", dns.A)
        self.assertEqual(server.count(), 4)
        r = self.resolver(server, dns_cache_entries=0)
        await r.lookup("one.example.test", dns.A)
        await r.lookup("one.example.test", dns.A)
        self.assertEqual(server.count(), 6, "no cache at all")

    async def test_concurrent_lookups_share_a_query(self) -> None:
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2")]})
        r = self.resolver(server)
        from twisted.internet.defer import Deferred, gatherResults

        results = await gatherResults([
            Deferred.fromCoroutine(r.lookup("h.example.test", dns.A)) for _ in range(5)
        ])
        self.assertEqual(len(results), 5)
        self.assertEqual(server.count(), 1)


class Silent(DatagramProtocol):
    """A nameserver that never answers (counts the datagrams)."""

    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received += 1


class TransportTests(ResolverCase):
    """dns_timeout, dns_attempts, dns_tcp_fallback, query_over_tcp_only, query_all_nameservers."""

    def silent(self) -> tuple[Silent, tuple[str, int]]:
        proto = Silent()
        port = reactor.listenUDP(0, proto, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return proto, ("127.0.0.1", port.getHost().port)

    async def test_timeout_and_attempts(self) -> None:
        silent, address = self.silent()
        r = self.resolver(address, dns_timeout=1, dns_attempts=1, dns_tcp_fallback=False)
        start = reactor.seconds()
        with self.assertRaises(DNSLookupFailed):
            await r.lookup("h.example.test", dns.A)
        elapsed = reactor.seconds() - start
        self.assertEqual(silent.received, 2, "one try and one retry")
        self.assertGreaterEqual(elapsed, 1.9)
        self.assertLess(elapsed, 4)

    async def test_next_nameserver_after_timeout(self) -> None:
        silent, address = self.silent()
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2")]})
        r = self.resolver(address, server, dns_timeout=1, dns_tcp_fallback=False)
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])
        self.assertEqual(silent.received, 1)

    async def test_tcp_fallback(self) -> None:
        # UDP answers SERVFAIL; TCP has the zone.
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2")]}, udp_rcode=dns.ESERVER)
        r = self.resolver(server, dns_tcp_fallback=True)
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])
        self.assertEqual((server.count("udp"), server.count("tcp")), (1, 1))
        r = self.resolver(server, dns_tcp_fallback=False)
        with self.assertRaises(DNSLookupError):
            await r.resolve_host("h.example.test")
        self.assertEqual(server.count("tcp"), 1, "no TCP without the fallback")

    async def test_truncated_answer_retried_over_tcp(self) -> None:
        many = [a(f"127.0.1.{i}") for i in range(1, 60)]  # > 512 bytes over UDP
        server = DNSServer(self, {"big.example.test": many})
        r = self.resolver(server, dns_tcp_fallback=False)
        self.assertEqual(len(await r.resolve_host("big.example.test")), 59)
        self.assertEqual(server.count("tcp"), 1)

    async def test_tcp_only(self) -> None:
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2")]}, udp=False)
        r = self.resolver(server, query_over_tcp_only=True)
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])
        self.assertEqual(r.sent, {"udp": 0, "tcp": 1})
        both = DNSServer(self, {"h.example.test": [a("127.0.0.2")]})
        await self.resolver(both, query_over_tcp_only=True).resolve_host("h.example.test")
        self.assertEqual((both.count("udp"), both.count("tcp")), (0, 1))

    async def test_query_all_nameservers(self) -> None:
        empty = DNSServer(self, {})
        full = DNSServer(self, {"h.example.test": [a("127.0.0.2")]})
        r = self.resolver(empty, full, query_all_nameservers=False)
        with self.assertRaises(DNSLookupError):
            await r.resolve_host("h.example.test")
        self.assertEqual(full.count(), 0, "the first negative answer was trusted")
        r = self.resolver(empty, full, query_all_nameservers=True)
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])

    async def test_server_error_asks_next_nameserver(self) -> None:
        broken = DNSServer(self, {}, udp_rcode=dns.EREFUSED, tcp=False)
        full = DNSServer(self, {"h.example.test": [a("127.0.0.2")]})
        r = self.resolver(broken, full, dns_tcp_fallback=False)
        self.assertEqual(await r.resolve_host("h.example.test"), ["127.0.0.2"])


class StrategyTests(ResolverCase):
    """ip_lookup_strategy, CNAMEs, the hosts file."""

    def setUp(self) -> None:
        super().setUp()
        self.server = DNSServer(self, {
            "both.example.test": [a("127.0.0.2"), aaaa("::2")],
            "six.example.test": [aaaa("::6")],
            "alias.example.test": [dns.Record_CNAME("both.example.test")],
        })

    async def test_strategies(self) -> None:
        expected = {1: ["127.0.0.2"], 2: ["::2"], 3: ["127.0.0.2", "::2"], 4: ["::2"],
                    5: ["127.0.0.2"]}
        for strategy, addresses in expected.items():
            r = self.resolver(self.server, ip_lookup_strategy=strategy)
            self.assertEqual(await r.resolve_host("both.example.test"), addresses, strategy)

    async def test_then_falls_back(self) -> None:
        r = self.resolver(self.server, ip_lookup_strategy=5)
        self.assertEqual(await r.resolve_host("six.example.test"), ["::6"])
        r = self.resolver(self.server, ip_lookup_strategy=1)
        with self.assertRaises(DNSLookupError):
            await r.resolve_host("six.example.test")

    async def test_cname(self) -> None:
        r = self.resolver(self.server)
        self.assertEqual(await r.resolve_host("alias.example.test"), ["127.0.0.2"])

    async def test_hosts_file_first(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("127.0.0.9 both.example.test\n::9 both.example.test\n")
        expected = {3: ["127.0.0.9", "::9"], 4: ["::9"], 5: ["127.0.0.9"]}
        for strategy, addresses in expected.items():
            r = DNSResolver(reactor, make_config(ip_lookup_strategy=strategy),
                            servers=[self.server.address], hosts_file=path)
            self.assertEqual(await r.resolve_host("both.example.test"), addresses, strategy)
        self.assertEqual(self.server.count(), 0)

    async def test_ip_literal(self) -> None:
        r = self.resolver(self.server)
        self.assertEqual(await r.resolve_host("10.0.0.1"), ["10.0.0.1"])
        self.assertEqual(self.server.count(), 0)


class FederationUseTests(unittest.TestCase):
    """Server discovery (SRV) and the connection (A) both go through the resolver."""

    async def test_srv_and_address_from_dns(self) -> None:
        remote = Remote()
        site = CountingSite(remote)
        port = reactor.listenSSL(0, site, self_signed().options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        server = DNSServer(self, {
            "_matrix-fed._tcp.example.test": [
                dns.Record_SRV(10, 0, port.getHost().port, "fed.example.test"),
            ],
            "fed.example.test": [a("127.0.0.1")],
        })
        config = make_config(
            server_name="origin.test", ip_range_denylist=[],
            allow_invalid_tls_certificates=True, dns_timeout=1, dns_attempts=1,
        )
        keys = OurKeys()
        resolver = DNSResolver(reactor, config, servers=[server.address], hosts_file=None)
        client = FederationClient(reactor, config, "origin.test", lambda: keys, dns=resolver)
        self.addCleanup(client.close)
        body = await client.get_json("example.test", "/_matrix/federation/v1/version")
        self.assertEqual(body, {"ok": True, "echo": None})
        self.assertEqual(remote.requests[0]["host"], "example.test")
        asked = [(name, rtype) for _, name, rtype in server.queries]
        self.assertIn(("_matrix-fed._tcp.example.test", dns.SRV), asked)
        self.assertIn(("fed.example.test", dns.A), asked)
        self.assertIn(("example.test", dns.A), asked, "the .well-known lookup's host")
        for _ in range(3):
            await _tick()


class CancelTests(ResolverCase):
    async def test_cancelled_caller_does_not_cancel_the_query(self) -> None:
        server = DNSServer(self, {"h.example.test": [a("127.0.0.2")]})
        r = self.resolver(server)
        from twisted.internet.defer import CancelledError, Deferred

        first = Deferred.fromCoroutine(r.resolve_host("h.example.test"))
        second = Deferred.fromCoroutine(r.resolve_host("h.example.test"))
        first.cancel()
        with self.assertRaises(CancelledError):
            await first
        self.assertEqual(await second, ["127.0.0.2"])
        self.assertEqual(server.count(), 1)

    async def test_invalid_name(self) -> None:
        r = self.resolver(("127.0.0.1", 9))
        with self.assertRaises(DNSLookupError):
            await r.resolve_host("a" * 70 + ".example")
