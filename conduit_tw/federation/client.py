"""
L{FederationClient}: signed requests to other homeservers
(server-server-api "API standards", "Resolving server names", "Request
Authentication", "TLS").

One pooled Agent (L{conduit_tw.http.client.OutgoingHTTPClient}, so
C{ip_range_denylist} after resolution, response caps, timeouts and no
redirects apply as everywhere else) whose endpoint connects by server
discovery: URLs are C{matrix-federation://<server name><path>}; the
endpoint resolves the server name (L{conduit_tw.federation.discovery}),
connects to the first reachable target, and speaks TLS verified with
service-identity against the name discovery says the certificate must
carry (SNI with it unless it is an IP address). Only
C{allow_invalid_tls_certificates} turns verification off.

Every request carries an X-Matrix C{Authorization} header signed with our
key, the discovered C{Host} header and C{User-Agent: conduit-tw/<version>}.
C{allow_federation = false} stops every request before anything is sent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping, Sequence
from urllib.parse import quote, urlencode

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from conduit_tw.federation.discovery import (
    DNSSrvResolver,
    ServerAddress,
    ServerDiscovery,
    WellKnownResolver,
)
from conduit_tw.federation.errors import FederationDisabled, NotReachable, RemoteError
from conduit_tw.federation.xmatrix import sign_request
from conduit_tw.logging import get_logger
from conduit_tw.util.caches import LruCache

if TYPE_CHECKING:
    from conduit_tw.http.client import OutgoingHTTPClient, Response
    from conduit_tw.http.dns import DNSResolver

log = get_logger("conduit_tw.federation.client")

SCHEME = "matrix-federation"
#: Default cap on a federation response (the state of a large room is big).
MAX_RESPONSE_SIZE = 100 * 1024 * 1024
#: Bytes of an error answer read back from a stream's sink.
_ERROR_BODY_MAX = 64 * 1024
#: Destinations whose discovered address is kept for the endpoint.
_ADDRESS_ENTRIES = 10_000

Args = Mapping[str, "str | Sequence[str]"]


@implementer(IStreamClientEndpoint)
class _FederationEndpoint:
    """Connects to the targets of a L{ServerAddress} in order, TLS to its C{tls_name}."""

    def __init__(self, http: "OutgoingHTTPClient", address: ServerAddress) -> None:
        self._http = http
        self._address = address

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        from conduit_tw.http.client import CheckedEndpoint, connect_first

        address = self._address
        return await connect_first(
            (CheckedEndpoint(self._http, host, port, address.tls_name)
             for host, port in address.targets),
            factory,
        )


@implementer(IAgentEndpointFactory)
class _FederationEndpointFactory:
    """Endpoints for C{matrix-federation://} URLs, from the last discovery result."""

    def __init__(self, http: "OutgoingHTTPClient", addresses: LruCache[str, ServerAddress]) -> None:
        self._http = http
        self._addresses = addresses

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        # FederationClient.request resolved the name just before (Agent calls
        # this synchronously from request()), so the address is here.
        address = self._addresses.get(uri.netloc.decode("ascii"))
        if address is None:
            raise NotReachable(uri.netloc.decode("ascii"), "server name was not resolved")
        return _FederationEndpoint(self._http, address)


def _reason(error: BaseException) -> str:
    """A readable reason for a transport failure (Twisted wraps several)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons)
    return str(error) or type(error).__name__


class FederationClient:
    """
    See the module docstring. One per server (C{hs.federation_client});
    C{close()} on shutdown. The HTTP machinery is built on first use.

    @param config: C{allow_federation}, C{forbidden_remote_server_names},
        C{federation_timeout}, C{federation_idle_timeout},
        C{federation_idle_per_host}, C{well_known_timeout},
        C{well_known_conn_timeout}, C{ip_range_denylist},
        C{allow_invalid_tls_certificates}, C{request_conn_timeout},
        C{max_concurrent_requests}, C{sender_timeout}, C{sender_idle_timeout}
        and the DNS keys.
    @param server_keys: returns our keys (an object with C{signing_key}
        and C{key_id}: L{conduit_tw.handlers.server_keys.ServerKeys}).
    @param discovery: server discovery; built from the config by default.
    @param dns: the server's resolver (SRV records, host names); one built
        from the config by default.
    """

    def __init__(
        self,
        reactor: Any,
        config: Any,
        server_name: str,
        server_keys: Callable[[], Any],
        discovery: ServerDiscovery | None = None,
        dns: "DNSResolver | None" = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.server_name = server_name
        self._server_keys = server_keys
        self.enabled = bool(config.allow_federation)
        self.forbidden = frozenset(n.lower() for n in config.forbidden_remote_server_names)
        self.timeout: float = config.federation_timeout
        self._discovery = discovery
        self._dns = dns
        self._addresses: LruCache[str, ServerAddress] = LruCache(_ADDRESS_ENTRIES)
        self._http: "OutgoingHTTPClient | None" = None
        self._sender_http: "OutgoingHTTPClient | None" = None
        self._well_known_http: "OutgoingHTTPClient | None" = None
        #: At most C{max_concurrent_requests} requests in flight; the others wait.
        self.slots = DeferredSemaphore(config.max_concurrent_requests)

    @property
    def dns(self) -> "DNSResolver":
        """The resolver of SRV records and host names (built on first use)."""
        if self._dns is None:
            from conduit_tw.http.dns import DNSResolver

            self._dns = DNSResolver(self.reactor, self.config)
        return self._dns

    @property
    def discovery(self) -> ServerDiscovery:
        """Server discovery (built on first use: .well-known client, DNS SRV)."""
        if self._discovery is None:
            from conduit_tw.http.client import OutgoingHTTPClient

            self._well_known_http = OutgoingHTTPClient(
                self.reactor, self.config,
                conn_timeout=self.config.well_known_conn_timeout,
                timeout=self.config.well_known_timeout,
                idle_per_host=0,
                dns=self.dns,
            )
            self._discovery = ServerDiscovery(
                WellKnownResolver(self._well_known_http, self.reactor.seconds),
                DNSSrvResolver(self.dns),
            )
        return self._discovery

    @property
    def http(self) -> "OutgoingHTTPClient":
        """The pooled client for federation requests (built on first use)."""
        if self._http is None:
            self._http = self._pool(
                self.config.federation_timeout, self.config.federation_idle_timeout
            )
        return self._http

    @property
    def sender_http(self) -> "OutgoingHTTPClient":
        """
        The sender's own pool (built on first use): transactions keep their
        connections C{sender_idle_timeout} seconds, as in conduwuit.
        """
        if self._sender_http is None:
            self._sender_http = self._pool(
                self.config.sender_timeout, self.config.sender_idle_timeout
            )
        return self._sender_http

    def _pool(self, timeout: float, idle_timeout: float) -> "OutgoingHTTPClient":
        from conduit_tw.http.client import OutgoingHTTPClient

        addresses = self._addresses
        return OutgoingHTTPClient(
            self.reactor, self.config,
            endpoint_factory=lambda http: _FederationEndpointFactory(http, addresses),
            timeout=timeout,
            idle_timeout=idle_timeout,
            idle_per_host=self.config.federation_idle_per_host,
            schemes=(SCHEME,),
            dns=self.dns,
        )

    def check_destination(self, destination: str) -> None:
        """
        @raise FederationDisabled: federation is off, or C{destination} is in
            C{forbidden_remote_server_names}.
        """
        if not self.enabled:
            raise FederationDisabled("Federation is disabled (allow_federation = false)")
        if destination.lower() in self.forbidden:
            raise FederationDisabled(
                f"Federation with {destination} is disabled (forbidden_remote_server_names)"
            )

    async def get_json(
        self, destination: str, path: str, args: Args | None = None, timeout: float | None = None,
        max_size: int = MAX_RESPONSE_SIZE,
    ) -> Any:
        """C{GET}; see L{request_json}."""
        return await self.request_json("GET", destination, path, args, None, timeout, max_size)

    async def put_json(
        self, destination: str, path: str, content: Any, args: Args | None = None,
        timeout: float | None = None, max_size: int = MAX_RESPONSE_SIZE,
    ) -> Any:
        """C{PUT} with a JSON body; see L{request_json}."""
        return await self.request_json("PUT", destination, path, args, content, timeout, max_size)

    async def send_transaction(
        self, destination: str, path: str, content: Any, timeout: float | None = None,
    ) -> Any:
        """
        C{PUT} a transaction (the sender's C{put_json}) through L{sender_http}:
        C{sender_timeout} by default, connections kept C{sender_idle_timeout}.
        """
        response = await self._send(
            "PUT", destination, path, None, content,
            self.config.sender_timeout if timeout is None else timeout,
            MAX_RESPONSE_SIZE, http=self.sender_http,
        )
        return _parse_response(destination, response.code, response.body)

    async def post_json(
        self, destination: str, path: str, content: Any, args: Args | None = None,
        timeout: float | None = None, max_size: int = MAX_RESPONSE_SIZE,
    ) -> Any:
        """C{POST} with a JSON body; see L{request_json}."""
        return await self.request_json("POST", destination, path, args, content, timeout, max_size)

    async def request_json(
        self,
        method: str,
        destination: str,
        path: str,
        args: Args | None = None,
        content: Any = None,
        timeout: float | None = None,
        max_size: int = MAX_RESPONSE_SIZE,
    ) -> Any:
        """
        Send one signed request and return the parsed JSON response.

        @param path: the percent-encoded path (C{/_matrix/federation/v1/...};
            quote variables with C{urllib.parse.quote(value, safe="")}).
        @param args: query parameters; a sequence value repeats the parameter.
        @param content: the JSON body (C{None}: no body).
        @param timeout: total seconds; C{federation_timeout} by default.
        @raise FederationDisabled: see L{check_destination}.
        @raise NotReachable: invalid name, resolution, connection, TLS,
            timeout, or a response larger than C{max_size}.
        @raise RemoteError: a non-2xx status or a body that is not JSON.
        """
        response = await self._send(method, destination, path, args, content, timeout, max_size)
        return _parse_response(destination, response.code, response.body)

    async def get_stream(
        self,
        destination: str,
        path: str,
        args: Args | None = None,
        *,
        sink: BinaryIO,
        max_size: int = MAX_RESPONSE_SIZE,
        timeout: float | None = None,
    ) -> "Response":
        """
        A signed C{GET} whose body is written to C{sink} (a file) as it
        arrives, at most C{max_size} bytes (media over federation). Returns
        the response (its C{body} empty) for 1xx-3xx answers: the caller
        reads C{sink} and the headers, and follows a redirect itself.

        @raise RemoteError: a 4xx/5xx answer (its JSON error read back from
            C{sink}).
        @raise NotReachable: as for L{request_json}; a body over
            C{max_size} too (its C{__cause__} is a C{ResponseTooLargeError}).
        """
        start = sink.tell()
        response = await self._send("GET", destination, path, args, None, timeout, max_size, sink)
        if response.code < 400:
            return response
        sink.seek(start)
        _parse_response(destination, response.code, sink.read(_ERROR_BODY_MAX))
        raise AssertionError("unreachable")  # _parse_response raised for a 4xx/5xx

    async def _send(
        self,
        method: str,
        destination: str,
        path: str,
        args: Args | None,
        content: Any,
        timeout: float | None,
        max_size: int,
        sink: BinaryIO | None = None,
        http: "OutgoingHTTPClient | None" = None,
    ) -> "Response":
        """
        Sign and send one request; the raw response. It waits for one of the
        C{max_concurrent_requests} slots first (the wait is not part of its
        timeout).
        """
        self.check_destination(destination)
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        query = urlencode(args, doseq=True, quote_via=quote) if args else ""
        uri = path + ("?" + query if query else "")
        try:
            address = await self.discovery.resolve(destination)
        except ValueError as e:
            raise NotReachable(destination, str(e)) from None
        keys = self._server_keys()
        authorization = sign_request(
            keys.signing_key, keys.key_id, self.server_name, destination, method, uri, content
        )
        headers: dict[str, str] = {
            "Authorization": authorization.decode("utf-8"),
            "Host": address.host_header,
        }
        body = None
        if content is not None:
            body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        client = http or self.http
        await self.slots.acquire()
        try:
            # Read by _FederationEndpointFactory within client.request below.
            self._addresses[destination] = address
            response = await client.request(
                method, f"{SCHEME}://{destination}{uri}", headers, body,
                max_size=max_size, sink=sink, timeout=self.timeout if timeout is None else timeout,
            )
        except CancelledError:
            raise
        except Exception as e:
            raise NotReachable(destination, _reason(e)) from e
        finally:
            self.slots.release()
        return response

    async def fetch_json(
        self,
        destination: str,
        path: str,
        args: Args | None = None,
        *,
        method: str = "GET",
        body: Any = None,
    ) -> Any:
        """L{request_json} in the keyring's calling convention (C{FetchJson})."""
        return await self.request_json(method, destination, path, args, body)

    def close(self) -> Deferred[None]:
        """Close idle connections (shutdown, tests)."""
        from twisted.internet.defer import gatherResults

        return gatherResults(
            [
                c.close()
                for c in (self._http, self._sender_http, self._well_known_http)
                if c is not None
            ],
            consumeErrors=True,
        ).addCallback(lambda _: None)


def _parse_response(destination: str, code: int, raw: bytes) -> Any:
    """The JSON body of a 2xx answer; L{RemoteError} for anything else."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
        if 200 <= code < 300:
            raise RemoteError(destination, code, error="response is not JSON") from None
    if 200 <= code < 300:
        return body
    errcode = error = None
    if isinstance(body, dict):
        errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else None
        error = body.get("error") if isinstance(body.get("error"), str) else None
    raise RemoteError(destination, code, errcode, error, body)
