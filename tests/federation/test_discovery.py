"""
Server discovery (conduit_tw/federation/discovery.py): every step of
server-server-api "Resolving server names", with a fake .well-known HTTP
client and a fake SRV resolver, plus the SRV adapter over the server's
resolver against a real DNS server on loopback.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from conduit_tw.federation.discovery import (
    WELL_KNOWN_MAX_SIZE,
    DNSSrvResolver,
    ServerAddress,
    ServerDiscovery,
    SrvRecord,
    WellKnownResolver,
    order_srv,
)
from conduit_tw.http.client import Response
from conduit_tw.http.dns import DNSResolver
from tests.http.dnsserver import DNSServer
from tests.server import make_config

HOUR = 3600.0


def response(code: int = 200, body: bytes | str = b"", headers: dict[str, str] | None = None) -> Response:
    h = Headers()
    for name, value in (headers or {}).items():
        h.setRawHeaders(name, [value])
    return Response(code, h, body.encode() if isinstance(body, str) else body)


def well_known(server: str, **headers: str) -> Response:
    return response(200, '{"m.server": "%s"}' % server, headers)


class FakeHTTP:
    """The .well-known fetches: URL -> response (or exception); 404 otherwise."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.calls: list[tuple[str, str, int]] = []

    def request(self, method: str, url: str, max_size: int = 0, **kw: Any) -> Deferred[Response]:
        self.calls.append((method, url, max_size))
        result = self.routes.get(url, response(404, b'{"errcode":"M_NOT_FOUND"}'))
        if isinstance(result, Deferred):
            return result
        if isinstance(result, Exception):
            return fail(result)
        return succeed(result)

    def urls(self) -> list[str]:
        return [url for _, url, _ in self.calls]


class FakeSrv:
    """SRV records by name; records every lookup."""

    def __init__(self) -> None:
        self.records: dict[str, list[SrvRecord]] = {}
        self.lookups: list[str] = []

    async def lookup(self, name: str) -> list[SrvRecord]:
        self.lookups.append(name)
        return self.records.get(name, [])


def wk_url(host: str) -> str:
    return f"https://{host}/.well-known/matrix/server"


class DiscoveryTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.http = FakeHTTP()
        self.srv = FakeSrv()
        self.discovery = ServerDiscovery(
            WellKnownResolver(self.http, self.clock.seconds), self.srv, random.Random(1)
        )

    def resolve(self, name: str) -> ServerAddress:
        return self.successResultOf(Deferred.fromCoroutine(self.discovery.resolve(name)))


class StepTests(DiscoveryTestCase):
    """Each branch gives (targets, Host header, certificate name)."""

    def check(self, name: str, targets: list[tuple[str, int]], host: str, tls: str) -> None:
        address = self.resolve(name)
        self.assertEqual(
            (list(address.targets), address.host_header, address.tls_name, address.server_name),
            (targets, host, tls, name),
        )

    def test_1_ip_literals(self) -> None:
        self.check("192.0.2.1", [("192.0.2.1", 8448)], "192.0.2.1", "192.0.2.1")
        self.check("192.0.2.1:1234", [("192.0.2.1", 1234)], "192.0.2.1:1234", "192.0.2.1")
        self.check("[2001:db8::1]", [("2001:db8::1", 8448)], "[2001:db8::1]", "2001:db8::1")
        self.check("[::1]:8448", [("::1", 8448)], "[::1]:8448", "::1")
        self.assertEqual((self.http.calls, self.srv.lookups), ([], []))

    def test_2_explicit_port(self) -> None:
        self.check("example.org:8449", [("example.org", 8449)], "example.org:8449", "example.org")
        self.check("localhost:8448", [("localhost", 8448)], "localhost:8448", "localhost")
        self.assertEqual((self.http.calls, self.srv.lookups), ([], []))

    def test_3_1_delegated_ip_literal(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known("192.0.2.7")
        self.check("a.example", [("192.0.2.7", 8448)], "192.0.2.7", "192.0.2.7")
        self.http.routes[wk_url("b.example")] = well_known("[2001:db8::7]:9000")
        self.check("b.example", [("2001:db8::7", 9000)], "[2001:db8::7]:9000", "2001:db8::7")
        self.assertEqual(self.srv.lookups, [])

    def test_3_2_delegated_with_port(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known("matrix.a.example:443")
        self.check(
            "a.example", [("matrix.a.example", 443)], "matrix.a.example:443", "matrix.a.example"
        )
        self.assertEqual(self.srv.lookups, [])
        self.assertEqual(self.http.calls, [("GET", wk_url("a.example"), WELL_KNOWN_MAX_SIZE)])

    def test_3_3_delegated_srv(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known("m.a.example")
        self.srv.records["_matrix-fed._tcp.m.a.example"] = [SrvRecord(10, 0, "host.a.example", 9)]
        self.srv.records["_matrix._tcp.m.a.example"] = [SrvRecord(10, 0, "old.a.example", 7)]
        self.check("a.example", [("host.a.example", 9)], "m.a.example", "m.a.example")
        self.assertEqual(self.srv.lookups, ["_matrix-fed._tcp.m.a.example"])

    def test_3_4_delegated_deprecated_srv(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known("m.a.example")
        self.srv.records["_matrix._tcp.m.a.example"] = [SrvRecord(10, 0, "old.a.example", 7)]
        self.check("a.example", [("old.a.example", 7)], "m.a.example", "m.a.example")
        self.assertEqual(
            self.srv.lookups, ["_matrix-fed._tcp.m.a.example", "_matrix._tcp.m.a.example"]
        )

    def test_3_5_delegated_default_port(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known("m.a.example")
        self.check("a.example", [("m.a.example", 8448)], "m.a.example", "m.a.example")

    def test_4_srv(self) -> None:
        self.srv.records["_matrix-fed._tcp.a.example"] = [
            SrvRecord(20, 0, "backup.a.example", 8448), SrvRecord(10, 0, "main.a.example", 443),
        ]
        self.check(
            "a.example", [("main.a.example", 443), ("backup.a.example", 8448)],
            "a.example", "a.example",
        )
        self.assertEqual(self.http.urls(), [wk_url("a.example")])
        self.assertEqual(self.srv.lookups, ["_matrix-fed._tcp.a.example"])

    def test_5_deprecated_srv(self) -> None:
        self.srv.records["_matrix._tcp.a.example"] = [SrvRecord(0, 0, "old.a.example", 8000)]
        self.check("a.example", [("old.a.example", 8000)], "a.example", "a.example")
        self.assertEqual(self.srv.lookups, ["_matrix-fed._tcp.a.example", "_matrix._tcp.a.example"])

    def test_6_default_port(self) -> None:
        self.check("a.example", [("a.example", 8448)], "a.example", "a.example")

    def test_invalid_well_known_falls_through(self) -> None:
        """Bad JSON, missing or invalid m.server, non-200, a failed fetch: step 4."""
        for i, answer in enumerate([
            response(200, b"not json"),
            response(200, b"[]"),
            response(200, b'{"m.server": 5}'),
            response(200, b'{"m.server": "bad name!"}'),
            response(200, b'{"m.server": "x.example:99999"}'),
            response(200, b'{"other": "x.example"}'),
            response(500, b'{"m.server": "x.example"}'),
            DNSLookupError("nope"),
            ConnectionRefusedError(),
        ]):
            name = f"h{i}.example"
            self.http.routes[wk_url(name)] = answer
            self.check(name, [(name, 8448)], name, name)

    def test_content_type_ignored(self) -> None:
        """The body is JSON whatever its Content-Type says."""
        self.http.routes[wk_url("a.example")] = well_known("m.a.example:1", **{"Content-Type": "text/html"})
        self.check("a.example", [("m.a.example", 1)], "m.a.example:1", "m.a.example")

    def test_invalid_server_names(self) -> None:
        for name in ("", "a b", "example.org:0", "example.org:x", "[::1", "[zz::1]:8448"):
            d = Deferred.fromCoroutine(self.discovery.resolve(name))
            self.failureResultOf(d, ValueError)


class WellKnownCacheTests(DiscoveryTestCase):
    def fetches_after(self, seconds: float) -> int:
        """Resolve a.example again after C{seconds}: how many fetches in all."""
        self.clock.advance(seconds)
        self.resolve("a.example")
        return len(self.http.calls)

    def test_default_24h(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known("m.a.example:1")
        self.resolve("a.example")
        self.assertEqual(self.fetches_after(24 * HOUR - 1), 1)
        self.assertEqual(self.fetches_after(1), 2)

    def test_max_age(self) -> None:
        self.http.routes[wk_url("a.example")] = well_known(
            "m.a.example:1", **{"Cache-Control": "public, max-age=3600"}
        )
        self.resolve("a.example")
        self.assertEqual(self.fetches_after(HOUR - 1), 1)
        self.assertEqual(self.fetches_after(1), 2)

    def test_bounds(self) -> None:
        """max-age below 5 minutes (or no-store) counts as 5 minutes; above 48 h as 48 h."""
        for header, lasts in [
            ("max-age=10", 300), ("no-store", 300), ("no-cache", 300),
            ("max-age=31536000", 48 * HOUR),
        ]:
            self.http.calls.clear()
            self.http.routes[wk_url("a.example")] = well_known(
                "m.a.example:1", **{"Cache-Control": header}
            )
            self.clock.advance(49 * HOUR)  # whatever was cached has expired
            self.resolve("a.example")
            self.assertEqual(self.fetches_after(lasts - 1), 1, header)
            self.assertEqual(self.fetches_after(1), 2, header)

    def test_expires(self) -> None:
        from twisted.web.http import datetimeToString

        expires = datetimeToString(self.clock.seconds() + 2 * HOUR).decode()
        self.http.routes[wk_url("a.example")] = well_known("m.a.example:1", Expires=expires)
        self.resolve("a.example")
        self.assertEqual(self.fetches_after(2 * HOUR - 1), 1)
        self.assertEqual(self.fetches_after(1), 2)

    def test_invalid_answer_cached_one_hour(self) -> None:
        self.resolve("a.example")  # 404
        self.assertEqual(self.fetches_after(HOUR - 1), 1)
        self.assertEqual(self.fetches_after(1), 2)

    def test_failures_back_off_exponentially(self) -> None:
        self.http.routes[wk_url("a.example")] = ConnectionRefusedError()
        self.resolve("a.example")
        self.assertEqual(self.fetches_after(299), 1)
        self.assertEqual(self.fetches_after(1), 2)  # after 5 min
        self.assertEqual(self.fetches_after(599), 2)
        self.assertEqual(self.fetches_after(1), 3)  # after 10 more
        self.assertEqual(self.fetches_after(1199), 3)
        self.assertEqual(self.fetches_after(1), 4)  # after 20 more
        for _ in range(5):
            self.fetches_after(HOUR)
        self.assertEqual(self.fetches_after(HOUR - 1), 9)  # capped at one hour
        self.assertEqual(self.fetches_after(1), 10)
        # Success resets the back-off and is used at once.
        self.http.routes[wk_url("a.example")] = well_known("m.a.example:1")
        self.clock.advance(HOUR)
        self.assertEqual(self.resolve("a.example").targets, (("m.a.example", 1),))

    def test_concurrent_lookups_share_one_fetch(self) -> None:
        pending: Deferred[Response] = Deferred()
        self.http.routes[wk_url("a.example")] = pending
        first = Deferred.fromCoroutine(self.discovery.resolve("a.example"))
        second = Deferred.fromCoroutine(self.discovery.resolve("A.example"))
        self.assertNoResult(first)
        pending.callback(well_known("m.a.example:1"))
        self.assertEqual(self.successResultOf(first).targets, (("m.a.example", 1),))
        self.assertEqual(self.successResultOf(second).targets, (("m.a.example", 1),))
        self.assertEqual(len(self.http.calls), 1)


class RedirectTests(DiscoveryTestCase):
    def redirect(self, frm: str, to: str, code: int = 302) -> None:
        self.http.routes[frm] = response(code, b"", {"Location": to})

    def test_followed(self) -> None:
        self.redirect(wk_url("a.example"), "https://www.a.example/wk", 301)
        self.redirect("https://www.a.example/wk", "/final", 308)  # relative
        self.http.routes["https://www.a.example/final"] = well_known("m.a.example:2")
        self.assertEqual(self.resolve("a.example").targets, (("m.a.example", 2),))
        self.assertEqual(len(self.http.calls), 3)

    def test_loop_refused(self) -> None:
        self.redirect(wk_url("a.example"), "https://b.example/x")
        self.redirect("https://b.example/x", wk_url("a.example"))
        self.assertEqual(self.resolve("a.example").targets, (("a.example", 8448),))
        self.assertEqual(len(self.http.calls), 2)

    def test_limit(self) -> None:
        url = wk_url("a.example")
        for i in range(10):
            nxt = f"https://a.example/{i}"
            self.redirect(url, nxt)
            url = nxt
        self.http.routes[url] = well_known("m.a.example:2")
        self.assertEqual(self.resolve("a.example").targets, (("a.example", 8448),))
        self.assertEqual(len(self.http.calls), 6)  # the first request and 5 redirects

    def test_only_https(self) -> None:
        self.redirect(wk_url("a.example"), "http://a.example/wk")
        self.http.routes["http://a.example/wk"] = well_known("m.a.example:2")
        self.assertEqual(self.resolve("a.example").targets, (("a.example", 8448),))
        self.assertEqual(len(self.http.calls), 1)

    def test_without_location(self) -> None:
        self.http.routes[wk_url("a.example")] = response(302)
        self.assertEqual(self.resolve("a.example").targets, (("a.example", 8448),))


class SrvOrderTests(unittest.TestCase):
    def test_priority_then_weight(self) -> None:
        records = [
            SrvRecord(20, 0, "c", 1), SrvRecord(10, 60, "a", 1), SrvRecord(10, 40, "b", 1),
            SrvRecord(10, 0, "z", 1),
        ]
        seen_first = set()
        for seed in range(50):
            order = order_srv(records, random.Random(seed))
            self.assertEqual(sorted(order[:3]), [("a", 1), ("b", 1), ("z", 1)])
            self.assertEqual(order[3], ("c", 1))
            seen_first.add(order[0][0])
        self.assertIn("a", seen_first)
        self.assertIn("b", seen_first)


class DNSSrvResolverTests(unittest.TestCase):
    """SRV lookups through the server's resolver, against a real DNS server on loopback."""

    def resolver(self, server: DNSServer) -> DNSSrvResolver:
        config = make_config(dns_timeout=1, dns_attempts=1, dns_tcp_fallback=False)
        return DNSSrvResolver(DNSResolver(reactor, config, servers=[server.address]))

    async def test_records(self) -> None:
        server = DNSServer(self, {
            "_matrix-fed._tcp.a.example.test": [dns.Record_SRV(10, 5, 8443, "host.a.example")],
        })
        self.assertEqual(
            await self.resolver(server).lookup("_matrix-fed._tcp.a.example.test"),
            [SrvRecord(10, 5, "host.a.example", 8443)],
        )

    async def test_none(self) -> None:
        """No such name, a "." target, a failing nameserver: no records."""
        server = DNSServer(self, {
            "_matrix-fed._tcp.dot.example.test": [dns.Record_SRV(0, 0, 0, "")],
        })
        for name in ("nx", "dot"):
            self.assertEqual(
                await self.resolver(server).lookup(f"_matrix-fed._tcp.{name}.example.test"), [],
            )
        broken = DNSServer(self, {}, udp_rcode=dns.ESERVER)
        self.assertEqual(await self.resolver(broken).lookup("_matrix-fed._tcp.example.test"), [])

    async def test_through_discovery(self) -> None:
        """The adapter plugs into discovery: the SRV target and port are used."""
        server = DNSServer(self, {
            "_matrix._tcp.a.example.test": [dns.Record_SRV(0, 0, 99, "old.a.example")],
        })
        discovery = ServerDiscovery(
            WellKnownResolver(FakeHTTP(), Clock().seconds), self.resolver(server)
        )
        address = await discovery.resolve("a.example.test")
        self.assertEqual(address.targets, (("old.a.example", 99),))
