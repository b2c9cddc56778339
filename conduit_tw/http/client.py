"""
L{OutgoingHTTPClient}: the one HTTP client every outgoing request of the
server goes through (push gateways now; federation and media later), so
that the same protections apply everywhere:

  - C{ip_range_denylist} is enforced I{after} DNS resolution, on every
    resolved address, and the connection is made to the address that was
    checked (no second lookup, so no DNS rebinding between check and
    connect). IP literals in URLs are checked the same way.
  - TLS certificates are verified against the URL's host name
    (service-identity), unless C{allow_invalid_tls_certificates} is set;
    nothing else turns verification off.
  - Redirects are never followed: a 3xx is returned to the caller.
  - The response body is capped (C{max_size}); the connection is aborted
    as soon as the cap is exceeded.
  - A connect timeout (C{request_conn_timeout}) per attempt and a total
    timeout (C{request_timeout}, per call overridable) covering
    resolution, connect, request and body.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IOpenSSLClientConnectionCreator,
    IProtocolFactory,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from conduit_tw import __version__
from conduit_tw.http.errors import (
    DeniedDestinationError,
    InvalidURLError,
    RequestTimeoutError,
    ResponseTooLargeError,
)
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.http.client")

#: Default cap on a response body.
DEFAULT_MAX_SIZE = 1024 * 1024
USER_AGENT = f"conduit-tw/{__version__}"

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Response:
    """A complete response: status, headers and the (size-capped) body."""

    code: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (raises C{ValueError} when it is not)."""
        return json.loads(self.body)


class IPDenylist:
    """C{ip_range_denylist}, parsed once."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in cidrs
        )

    def denies(self, ip: str) -> bool:
        """
        Whether the address C{ip} (optionally with an IPv6 C{%scope}) is
        denied. An IPv4-mapped IPv6 address is also checked as IPv4.
        """
        addr: _Address = ipaddress.ip_address(ip.split("%", 1)[0])
        candidates: list[_Address] = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        return any(
            a in n for a in candidates for n in self.networks if a.version == n.version
        )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedTLS:
    """
    TLS without certificate verification (C{allow_invalid_tls_certificates}
    only); still sends SNI so the right certificate is served.
    """

    def __init__(self, options: CertificateOptions, hostname: str) -> None:
        self._options = options
        self._sni = None if _is_ip_literal(hostname) else hostname.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._sni:
            connection.set_tlsext_host_name(self._sni)
        return connection


@implementer(IResolutionReceiver)
class _Collect:
    """Collects resolved addresses into a Deferred list of IP strings."""

    def __init__(self, d: Deferred[list[str]]) -> None:
        self._d = d
        self._hosts: list[str] = []

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        host = getattr(address, "host", None)
        if isinstance(host, str) and host not in self._hosts:
            self._hosts.append(host)

    def resolutionComplete(self) -> None:
        if not self._d.called:  # not cancelled meanwhile
            self._d.callback(self._hosts)


@implementer(IStreamClientEndpoint)
class CheckedEndpoint:
    """
    Resolve, drop denied addresses, connect to a checked address; with
    C{tls_name}, TLS verified against that name (L{OutgoingHTTPClient.tls_creator}).
    """

    def __init__(
        self, client: "OutgoingHTTPClient", host: str, port: int, tls_name: str | None
    ) -> None:
        self._client = client
        self._host = host
        self._port = port
        self._tls_name = tls_name

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        client = self._client
        addresses = await client.resolve(self._host, self._port)
        allowed = [a for a in addresses if not client.denylist.denies(a)]
        if not allowed:
            raise DeniedDestinationError(self._host, addresses)
        if len(allowed) < len(addresses):
            log.info("Outgoing: {host} resolved to denied addresses too; using {allowed}",
                     host=self._host, allowed=allowed)
        last: Exception | None = None
        for ip in allowed:
            tcp_class = TCP6ClientEndpoint if ":" in ip else TCP4ClientEndpoint
            endpoint: Any = tcp_class(client.reactor, ip, self._port, timeout=client.conn_timeout)
            if self._tls_name is not None:
                endpoint = wrapClientTLS(client.tls_creator(self._tls_name), endpoint)
            try:
                return await endpoint.connect(factory)
            except CancelledError:
                raise
            except Exception as e:  # try the next allowed address
                last = e
        assert last is not None
        raise last


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    def __init__(self, client: "OutgoingHTTPClient") -> None:
        self._client = client

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        scheme = uri.scheme.decode("ascii")
        host = uri.host.decode("ascii")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return CheckedEndpoint(self._client, host, uri.port, host if scheme == "https" else None)


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body that is already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _LimitedBody(Protocol):
    """
    Collects a response body (or writes it to C{sink}, a file, as it
    arrives); aborts the connection past C{max_size}.
    """

    def __init__(self, max_size: int, declared_length: Any, sink: BinaryIO | None = None) -> None:
        self.deferred: Deferred[bytes] = Deferred(self._cancel)
        self._max_size = max_size
        self._declared = declared_length
        self._sink = sink
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False

    def _abort(self) -> None:
        self._done = True
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def _cancel(self, d: Deferred[bytes]) -> None:
        self._abort()

    def connectionMade(self) -> None:
        if self._declared is not UNKNOWN_LENGTH and self._declared > self._max_size:
            self._abort()
            self.deferred.errback(ResponseTooLargeError(self._max_size))

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._size += len(data)
        if self._size > self._max_size:
            self._abort()
            self.deferred.errback(ResponseTooLargeError(self._max_size))
            return
        if self._sink is not None:
            self._sink.write(data)
        else:
            self._chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._done:
            return
        self._done = True
        if reason.check(PotentialDataLoss):  # HTTP/1.0 without a length: complete
            self.deferred.callback(b"".join(self._chunks))
        elif reason.check(ResponseDone):
            self.deferred.callback(b"".join(self._chunks))
        else:
            self.deferred.errback(reason)


class OutgoingHTTPClient:
    """
    See the module docstring. One instance per server (C{hs.http_client});
    C{close()} on shutdown.

    @param config: the server's L{Config} (C{ip_range_denylist},
        C{allow_invalid_tls_certificates}, C{request_conn_timeout},
        C{request_timeout}, C{request_idle_timeout}, C{request_idle_per_host}).
    @param endpoint_factory: builds the agent's endpoint factory for this
        client (the federation client connects by server discovery); by
        default URLs are connected to as they are.
    @param conn_timeout: overrides C{request_conn_timeout}; likewise
        C{timeout}, C{idle_timeout} and C{idle_per_host} for the others.
    @param schemes: the URL schemes the endpoint factory serves.
    @param ip_range_denylist: overrides C{config.ip_range_denylist} (the
        appservice client passes C{[]}: its URLs come from the admin).
    """

    def __init__(
        self,
        reactor: Any,
        config: Any,
        *,
        endpoint_factory: Callable[["OutgoingHTTPClient"], IAgentEndpointFactory] | None = None,
        conn_timeout: float | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        idle_per_host: int | None = None,
        schemes: tuple[str, ...] = ("http", "https"),
        ip_range_denylist: list[str] | None = None,
    ) -> None:
        self.reactor = reactor
        #: The URL schemes L{request} accepts (those the endpoint factory serves).
        self.schemes = schemes
        self.denylist = IPDenylist(
            config.ip_range_denylist if ip_range_denylist is None else ip_range_denylist
        )
        self.conn_timeout: float = (
            config.request_conn_timeout if conn_timeout is None else conn_timeout
        )
        self.timeout: float = config.request_timeout if timeout is None else timeout
        self._insecure = bool(config.allow_invalid_tls_certificates)
        self._unverified_options = CertificateOptions(verify=False) if self._insecure else None
        if idle_per_host is None:
            idle_per_host = int(getattr(config, "request_idle_per_host", 1))
        if idle_timeout is None:
            idle_timeout = getattr(config, "request_idle_timeout", 5)
        self.pool = HTTPConnectionPool(reactor, persistent=idle_per_host > 0)
        if idle_per_host > 0:
            self.pool.maxPersistentPerHost = idle_per_host
            self.pool.cachedConnectionTimeout = idle_timeout
        factory = (endpoint_factory or _EndpointFactory)(self)
        self.agent = Agent.usingEndpointFactory(reactor, factory, pool=self.pool)

    # -- connection pieces (used by the endpoint)

    def tls_creator(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """Verify against C{hostname} unless C{allow_invalid_tls_certificates}."""
        if self._unverified_options is not None:
            return _UnverifiedTLS(self._unverified_options, hostname)
        return optionsForClientTLS(hostname)

    def resolve(self, host: str, port: int) -> Deferred[list[str]]:
        """The IP addresses of C{host} (itself when an IP literal), non-blocking."""
        if _is_ip_literal(host):
            return succeed([host])
        d: Deferred[list[str]] = Deferred()

        def check(addresses: list[str]) -> list[str]:
            if not addresses:
                raise DNSLookupError(host)
            return addresses

        self.reactor.nameResolver.resolveHostName(_Collect(d), host, port)
        return d.addCallback(check)

    # -- the API

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        body: bytes | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        timeout: float | None = None,
        sink: BinaryIO | None = None,
    ) -> Response:
        """
        Send one request and read the whole response (redirects are not
        followed). With C{sink}, the body is written to it as it arrives
        (never held in memory; L{Response.body} is then empty). Raises L{InvalidURLError}, L{DeniedDestinationError},
        L{ResponseTooLargeError}, L{RequestTimeoutError}, or Twisted's
        connection/TLS errors.
        """
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - validates the port
            url.encode("ascii")
        except (ValueError, UnicodeError):
            raise InvalidURLError(f"Invalid URL {url!r}") from None
        if parts.scheme not in self.schemes or not host:
            raise InvalidURLError(f"Not an {'/'.join(self.schemes)} URL with a host: {url!r}")
        h = Headers()
        for name, value in (headers or {}).items():
            h.setRawHeaders(name, [value] if isinstance(value, str) else list(value))
        if not h.hasHeader("user-agent"):
            h.setRawHeaders("user-agent", [USER_AGENT])
        producer = _BytesProducer(body) if body is not None else None
        total = self.timeout if timeout is None else timeout
        d = Deferred.fromCoroutine(self._request(method, url, h, producer, max_size, sink))
        timed_out = []

        def expire() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self.reactor.callLater(total, expire)
        try:
            return await d
        except Exception:
            if timed_out:
                raise RequestTimeoutError(total) from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    async def _request(
        self, method: str, url: str, headers: Headers, producer: Any, max_size: int,
        sink: BinaryIO | None = None,
    ) -> Response:
        response = await self.agent.request(
            method.encode("ascii"), url.encode("ascii"), headers, producer
        )
        reader = _LimitedBody(max_size, response.length, sink)
        response.deliverBody(reader)
        body = await reader.deferred
        return Response(response.code, response.headers, body)

    async def post_json(
        self,
        url: str,
        content: Any,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        **kw: Any,
    ) -> Response:
        """POST C{content} as JSON; other arguments as for L{request}."""
        h: dict[str, str | Sequence[str]] = {"content-type": "application/json"}
        h.update(headers or {})
        return await self.request(
            "POST", url, h, json.dumps(content).encode("utf-8"), **kw
        )

    def close(self) -> Deferred[None]:
        """Close the cached (idle) connections (shutdown, tests)."""
        return self.pool.closeCachedConnections()
