"""
The outgoing federation client (conduit_tw/federation/client.py) against a
real TLS server on loopback: signing, Host/SNI/User-Agent, error mapping,
the TLS and denylist policies, timeouts, connection reuse and fall-back
between discovered targets.
"""

from __future__ import annotations

import json
from typing import Any

from OpenSSL import SSL
from signedjson.key import generate_signing_key, get_verify_key
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.ssl import CertificateOptions
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from conduit_tw import __version__
from conduit_tw.federation.client import FederationClient
from conduit_tw.federation.discovery import ServerAddress
from conduit_tw.federation.errors import FederationDisabled, NotReachable, RemoteError
from conduit_tw.federation.xmatrix import parse_authorization, verify_request
from conduit_tw.http.errors import DeniedDestinationError
from tests.http.test_client import CountingSite, _tick, self_signed
from tests.integration.process import free_port
from tests.server import make_config


class Remote(Resource):
    """The remote homeserver: records requests, answers by path."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.pending: list[Deferred[None]] = []
        #: Requests to .../held, answered when the test says (L{release}).
        self.held: list[Any] = []

    def render(self, request: Any) -> Any:
        body = request.content.read()
        self.requests.append({
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "host": request.getHeader(b"host").decode(),
            "user_agent": request.getHeader(b"user-agent").decode(),
            "authorization": request.getHeader(b"authorization"),
            "content_type": request.getHeader(b"content-type"),
            "body": body,
        })
        request.setHeader(b"content-type", b"application/json")
        path = request.path
        if path == b"/_matrix/federation/v1/forbidden":
            request.setResponseCode(403)
            return b'{"errcode":"M_FORBIDDEN","error":"go away"}'
        if path == b"/_matrix/federation/v1/html":
            request.setResponseCode(502)
            return b"<html>bad gateway</html>"
        if path == b"/_matrix/federation/v1/notjson":
            return b"hello"
        if path == b"/_matrix/federation/v1/slow":
            self.pending.append(request.notifyFinish())
            return NOT_DONE_YET
        if path == b"/_matrix/federation/v1/held":
            self.held.append(request)
            return NOT_DONE_YET
        return json.dumps({"ok": True, "echo": json.loads(body) if body else None}).encode()


    def release(self) -> None:
        """Answer the oldest held request."""
        request = self.held.pop(0)
        request.write(b"{}")
        request.finish()


class SNIOptions(CertificateOptions):
    """Server TLS options that record the SNI name of each handshake."""

    def __init__(self, names: list[Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.names = names

    def getContext(self) -> SSL.Context:
        ctx = super().getContext()
        if not getattr(self, "_sni_hooked", False):  # the context is made once
            ctx.set_tlsext_servername_callback(
                lambda conn: self.names.append(conn.get_servername())
            )
            self._sni_hooked = True
        return ctx


class OurKeys:
    """What the client reads of ServerKeys."""

    def __init__(self) -> None:
        self.signing_key = generate_signing_key("fed1")
        self.key_id = "ed25519:fed1"


class FixedDiscovery:
    """Discovery answering one fixed address."""

    def __init__(self, address: ServerAddress) -> None:
        self.address = address

    async def resolve(self, server_name: str) -> ServerAddress:
        return self.address


class FederationClientTests(unittest.TestCase):
    def setUp(self) -> None:
        self.remote = Remote()
        self.site = CountingSite(self.remote)
        self.sni: list[Any] = []
        cert = self_signed()
        options = SNIOptions(
            self.sni, privateKey=cert.privateKey.original, certificate=cert.original
        )
        self.port = reactor.listenSSL(0, self.site, options, interface="127.0.0.1")
        self.port_number = self.port.getHost().port
        self.destination = f"localhost:{self.port_number}"
        self.keys = OurKeys()
        self.clients: list[FederationClient] = []
        self.addCleanup(self._cleanup)

    async def _cleanup(self) -> None:
        for client in self.clients:
            await client.close()
        for finished in self.remote.pending:
            try:
                await finished
            except Exception:
                pass
        for _ in range(5):
            await _tick()
        # A connection aborted for its size may reach the pool only now.
        for client in self.clients:
            await client.close()
        await self.port.stopListening()

    def client(self, discovery: Any = None, **config: Any) -> FederationClient:
        values = {
            "server_name": "origin.test", "ip_range_denylist": [],
            "allow_invalid_tls_certificates": True,
        }
        values.update(config)
        c = FederationClient(reactor, make_config(**values), "origin.test", lambda: self.keys, discovery)
        self.clients.append(c)
        return c

    def check_signed(self, seen: dict[str, Any], destination: str, content: Any) -> None:
        auth = parse_authorization(seen["authorization"])
        self.assertEqual((auth.origin, auth.destination, auth.key_id),
                         ("origin.test", destination, "ed25519:fed1"))
        verify_request(auth, seen["method"], seen["uri"], destination, content,
                       get_verify_key(self.keys.signing_key))

    async def test_signed_get(self) -> None:
        client = self.client()
        result = await client.get_json(
            self.destination, "/_matrix/federation/v1/query/profile",
            {"user_id": "@a b:x", "field": ["displayname", "avatar_url"]},
        )
        self.assertEqual(result, {"ok": True, "echo": None})
        seen, = self.remote.requests
        self.assertEqual(
            seen["uri"],
            "/_matrix/federation/v1/query/profile?user_id=%40a%20b%3Ax"
            "&field=displayname&field=avatar_url",
        )
        self.assertEqual(seen["host"], self.destination)
        self.assertEqual(seen["user_agent"], f"conduit-tw/{__version__}")
        self.assertEqual(seen["body"], b"")
        self.check_signed(seen, self.destination, None)
        self.assertEqual(self.sni, [b"localhost"])

    async def test_signed_put_and_post(self) -> None:
        client = self.client()
        content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"é": 1}}]}
        result = await client.put_json(self.destination, "/_matrix/federation/v1/send/1", content)
        self.assertEqual(result["echo"], content)
        await client.post_json(self.destination, "/_matrix/federation/v1/user/keys/query", {})
        put, post = self.remote.requests
        self.assertEqual(put["content_type"], b"application/json")
        self.check_signed(put, self.destination, content)
        self.check_signed(post, self.destination, {})
        self.assertEqual(self.site.connections, 1)  # the pooled connection was reused

    async def test_ip_literal_destination(self) -> None:
        """Host is the IP with port; no SNI for an IP address."""
        destination = f"127.0.0.1:{self.port_number}"
        await self.client().get_json(destination, "/_matrix/federation/v1/version")
        self.assertEqual(self.remote.requests[0]["host"], destination)
        self.check_signed(self.remote.requests[0], destination, None)
        self.assertEqual(self.sni, [None])

    async def test_remote_errors(self) -> None:
        client = self.client()
        with self.assertRaises(RemoteError) as e:
            await client.get_json(self.destination, "/_matrix/federation/v1/forbidden")
        self.assertEqual((e.exception.code, e.exception.errcode, e.exception.error),
                         (403, "M_FORBIDDEN", "go away"))
        with self.assertRaises(RemoteError) as e:
            await client.get_json(self.destination, "/_matrix/federation/v1/html")
        self.assertEqual((e.exception.code, e.exception.errcode, e.exception.body), (502, None, None))
        with self.assertRaises(RemoteError) as e:
            await client.get_json(self.destination, "/_matrix/federation/v1/notjson")
        self.assertEqual(e.exception.code, 200)

    async def test_certificate_verified_by_default(self) -> None:
        client = self.client(allow_invalid_tls_certificates=False)
        with self.assertRaises(NotReachable):
            await client.get_json(self.destination, "/_matrix/federation/v1/version")
        self.assertEqual(self.remote.requests, [])

    async def test_denylist_after_resolution(self) -> None:
        client = self.client(ip_range_denylist=["127.0.0.0/8", "::1/128"])
        with self.assertRaises(NotReachable) as e:
            await client.get_json(self.destination, "/_matrix/federation/v1/version")
        self.assertIsInstance(e.exception.__cause__, DeniedDestinationError)
        self.assertEqual(self.site.connections, 0)

    async def test_federation_disabled(self) -> None:
        for client, destination in [
            (self.client(allow_federation=False), self.destination),
            (self.client(forbidden_remote_server_names=["LOCALHOST:%d" % self.port_number]),
             self.destination),
        ]:
            with self.assertRaises(FederationDisabled):
                await client.get_json(destination, "/_matrix/federation/v1/version")
        self.assertEqual(self.site.connections, 0)

    async def test_unreachable(self) -> None:
        client = self.client()
        with self.assertRaises(NotReachable):
            await client.get_json(f"localhost:{free_port()}", "/_matrix/federation/v1/version")
        with self.assertRaises(NotReachable):
            await client.get_json("bad name", "/_matrix/federation/v1/version")

    async def test_timeout(self) -> None:
        client = self.client()
        with self.assertRaises(NotReachable) as e:
            await client.get_json(self.destination, "/_matrix/federation/v1/slow", timeout=0.3)
        self.assertIn("timed out", str(e.exception))

    async def test_response_size_cap(self) -> None:
        client = self.client()
        with self.assertRaises(NotReachable):
            await client.put_json(
                self.destination, "/_matrix/federation/v1/echo", {"x": "y" * 5000}, max_size=1000
            )

    async def test_next_target_when_one_fails(self) -> None:
        """SRV may give several targets: a refused one is skipped."""
        address = ServerAddress(
            "srv.example", (("127.0.0.1", free_port()), ("127.0.0.1", self.port_number)),
            "srv.example", "localhost",
        )
        client = self.client(discovery=FixedDiscovery(address))
        await client.get_json("srv.example", "/_matrix/federation/v1/version")
        seen, = self.remote.requests
        self.assertEqual(seen["host"], "srv.example")
        self.check_signed(seen, "srv.example", None)
        self.assertEqual(self.sni, [b"localhost"])

    async def test_fetch_json_convention(self) -> None:
        """The keyring's calling convention (method and body as keywords)."""
        client = self.client()
        result = await client.fetch_json(
            self.destination, "/_matrix/key/v2/query", method="POST", body={"server_keys": {}}
        )
        self.assertEqual(result["echo"], {"server_keys": {}})
        self.assertEqual(self.remote.requests[0]["method"], "POST")

    async def test_max_concurrent_requests(self) -> None:
        """At most max_concurrent_requests in flight; the others wait for a slot."""
        client = self.client(max_concurrent_requests=2)
        results = [
            Deferred.fromCoroutine(client.get_json(self.destination, "/_matrix/federation/v1/held"))
            for _ in range(3)
        ]
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(len(self.remote.held), 2)
        self.remote.release()
        self.assertEqual(await results[0], {})
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(self.remote.held), 2, "the third went out when the first ended")
        self.remote.release()
        self.remote.release()
        self.assertEqual([await results[1], await results[2]], [{}, {}])

    async def test_sender_pool_idle_timeout(self) -> None:
        """Transactions use their own pool, idle connections kept sender_idle_timeout."""
        client = self.client(sender_idle_timeout=1, federation_idle_timeout=60)
        await client.send_transaction(self.destination, "/_matrix/federation/v1/send/1", {})
        await client.put_json(self.destination, "/_matrix/federation/v1/echo", {})
        self.assertEqual(self.site.connections, 2, "one connection per pool")
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.site.closed, 0)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.site.closed, 1, "the sender's connection only")
        self.assertEqual(self.remote.requests[0]["method"], "PUT")
        self.check_signed(self.remote.requests[0], self.destination, {})
