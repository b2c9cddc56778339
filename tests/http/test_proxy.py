"""
Conduit's C{proxy} key: outgoing requests tunnelled through a real HTTP
CONNECT proxy and a real SOCKS5 proxy on 127.0.0.1 (tests/http/proxies.py),
for the shared client (media, push, previews) and federation.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from conduit_tw.federation.client import FederationClient
from conduit_tw.http.client import DeniedDestinationError, OutgoingHTTPClient
from tests.federation.test_client import OurKeys, Remote
from tests.http.proxies import TestProxy
from tests.http.test_client import ClientTestCase, CountingSite, _tick, self_signed
from tests.server import make_config


class ProxyCase(ClientTestCase):
    """The client test servers plus a proxy; tunnels are dropped after each test."""

    def proxy(self, kind: str = "connect", **kw: Any) -> TestProxy:
        proxy = TestProxy(self, kind, **kw)
        self.addCleanup(proxy.close_all)
        return proxy

    def client(self, **config: Any) -> OutgoingHTTPClient:
        # Idle connections are not kept: each request shows in the proxy.
        config.setdefault("request_idle_per_host", 0)
        return super().client(**config)


class ConnectProxyTests(ProxyCase):
    """http:// proxies: CONNECT host:port."""

    async def test_global_proxy_resolves_names(self) -> None:
        proxy = self.proxy(names={"target.example": "127.0.0.1"})
        client = self.client(proxy=f"http://127.0.0.1:{proxy.port}")
        port = self.port.getHost().port
        # A name only the proxy knows; the default denylist (127.0.0.0/8)
        # does not apply to what the proxy resolves.
        r = await client.request("GET", f"http://target.example:{port}/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))
        self.assertEqual(proxy.requests, [("target.example", port)])
        self.assertEqual(proxy.headers[0]["Host"], f"target.example:{port}")
        self.assertNotIn("Proxy-Authorization", proxy.headers[0])

    async def test_ip_literal_still_denied(self) -> None:
        proxy = self.proxy()
        client = self.client(proxy=f"http://127.0.0.1:{proxy.port}")
        with self.assertRaises(DeniedDestinationError):
            await client.request("GET", self.base + "/ok")
        self.assertEqual(proxy.requests, [])
        self.assertEqual(self.site.connections, 0)

    async def test_tls_end_to_end(self) -> None:
        """TLS to the target goes through the tunnel, verified against the target."""
        proxy = self.proxy()
        port = self.tls_port.getHost().port
        client = self.client(proxy=f"http://127.0.0.1:{proxy.port}")
        with self.assertRaises(Exception) as e:  # self-signed: refused
            await client.request("GET", f"https://localhost:{port}/ok")
        self.assertNotIsInstance(e.exception, DeniedDestinationError)
        client = self.client(
            proxy=f"http://127.0.0.1:{proxy.port}", allow_invalid_tls_certificates=True
        )
        r = await client.request("GET", f"https://localhost:{port}/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))
        self.assertEqual(proxy.requests, [("localhost", port), ("localhost", port)])

    async def test_credentials(self) -> None:
        proxy = self.proxy(names={"target.example": "127.0.0.1"})
        client = self.client(proxy=f"http://us%40r:p%3Ass@127.0.0.1:{proxy.port}")
        port = self.port.getHost().port
        await client.request("GET", f"http://target.example:{port}/ok")
        expected = "Basic " + base64.b64encode(b"us@r:p:ss").decode()
        self.assertEqual(proxy.headers[0]["Proxy-Authorization"], expected)

    async def test_refused(self) -> None:
        proxy = self.proxy()
        proxy.refuse = True
        client = self.client(proxy=f"http://127.0.0.1:{proxy.port}", ip_range_denylist=[])
        with self.assertRaises(Exception) as e:
            await client.request("GET", f"http://localhost:{self.port.getHost().port}/ok")
        self.assertIn("403", str(e.exception))
        self.assertEqual(self.target.paths, [])

    async def test_by_domain(self) -> None:
        proxy = self.proxy(names={"a.onion": "127.0.0.1", "matrix.special.onion": "127.0.0.1"})
        rules = [{
            "url": f"http://127.0.0.1:{proxy.port}",
            "include": ["*.onion", "matrix.special.onion"], "exclude": ["*.special.onion"],
        }]
        client = self.client(proxy={"by_domain": rules}, ip_range_denylist=[])
        port = self.port.getHost().port
        for host in ("a.onion", "localhost", "matrix.special.onion"):
            r = await client.request("GET", f"http://{host}:{port}/ok")
            self.assertEqual(r.code, 200, host)
        self.assertEqual(proxy.requests, [("a.onion", port), ("matrix.special.onion", port)])
        self.assertEqual(self.site.connections, 3)


class Socks5ProxyTests(ProxyCase):
    """socks5h:// sends names, socks5:// addresses resolved (and checked) here."""

    async def test_socks5h_sends_the_name(self) -> None:
        proxy = self.proxy("socks5", names={"target.example": "127.0.0.1"})
        client = self.client(proxy=f"socks5h://127.0.0.1:{proxy.port}")
        port = self.port.getHost().port
        r = await client.request("GET", f"http://target.example:{port}/ok")
        self.assertEqual((r.code, r.body), (200, b"hello"))
        self.assertEqual(proxy.requests, [("target.example", port)])
        self.assertEqual(proxy.atyps, [3], "a domain name")

    async def test_socks5_resolves_here(self) -> None:
        proxy = self.proxy("socks5")
        port = self.port.getHost().port
        client = self.client(proxy=f"socks5://127.0.0.1:{proxy.port}")
        with self.assertRaises(DeniedDestinationError):  # localhost is denied by default
            await client.request("GET", f"http://localhost:{port}/ok")
        self.assertEqual(proxy.requests, [])
        client = self.client(
            proxy=f"socks5://127.0.0.1:{proxy.port}", ip_range_denylist=[], ip_lookup_strategy=1
        )
        r = await client.request("GET", f"http://localhost:{port}/ok")
        self.assertEqual(r.code, 200)
        self.assertEqual(proxy.requests, [("127.0.0.1", port)])
        self.assertEqual(proxy.atyps, [1], "an IPv4 address")

    async def test_credentials(self) -> None:
        proxy = self.proxy("socks5", credentials=("user", "secret"))
        port = self.port.getHost().port
        client = self.client(
            proxy=f"socks5h://user:secret@127.0.0.1:{proxy.port}", ip_range_denylist=[]
        )
        r = await client.request("GET", f"http://localhost:{port}/ok")
        self.assertEqual(r.code, 200)
        client = self.client(
            proxy=f"socks5h://user:wrong@127.0.0.1:{proxy.port}", ip_range_denylist=[]
        )
        with self.assertRaises(Exception) as e:
            await client.request("GET", f"http://localhost:{port}/ok")
        self.assertIn("authentication failed", str(e.exception))


class FederationThroughProxyTests(unittest.TestCase):
    """Signed federation requests through a CONNECT proxy, TLS to the other server."""

    async def test_federation_request(self) -> None:
        remote = Remote()
        site = CountingSite(remote)
        port = reactor.listenSSL(0, site, self_signed().options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        proxy = TestProxy(self)
        self.addCleanup(proxy.close_all)
        destination = f"localhost:{port.getHost().port}"
        config = make_config(
            server_name="origin.test", allow_invalid_tls_certificates=True,
            proxy=f"http://127.0.0.1:{proxy.port}",
        )
        keys = OurKeys()
        client = FederationClient(reactor, config, "origin.test", lambda: keys)
        self.addCleanup(client.close)
        body = await client.put_json(destination, "/_matrix/federation/v1/echo", {"a": 1})
        self.assertEqual(body, {"ok": True, "echo": {"a": 1}})
        self.assertEqual(proxy.requests, [("localhost", port.getHost().port)])
        self.assertEqual(remote.requests[0]["host"], destination)
        for _ in range(3):
            await _tick()
