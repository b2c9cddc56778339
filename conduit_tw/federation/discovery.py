"""
Server discovery (server-server-api "Resolving server names"): where to
connect for a server name, with which C{Host} header, and which name the
TLS certificate must be valid for (also the SNI, unless an IP address).

The steps of the spec, in order:

  1. IP literal: that address, the given port or 8448; Host = the server
     name; certificate for the IP.
  2. hostname with an explicit port: that host and port; Host = the server
     name; certificate for the hostname.
  3. C{https://<hostname>/.well-known/matrix/server} gives C{m.server}
     (cached per its headers; see L{WellKnownResolver}), which is then:
       1. an IP literal: that address, its port or 8448; Host = the
          delegated name as given; certificate for the IP;
       2. a hostname with a port: Host = C{<delegated>:<port>};
       3. a hostname: SRV C{_matrix-fed._tcp.<delegated>};
       4. else (deprecated) SRV C{_matrix._tcp.<delegated>};
       5. else the delegated hostname, port 8448;
     with Host and certificate for the delegated hostname in 3-5.
  4-6. no (valid) .well-known: SRV C{_matrix-fed._tcp.<hostname>}, then
     (deprecated) C{_matrix._tcp.<hostname>}, then port 8448; Host and
     certificate for the hostname.

Hostnames (given, delegated, SRV targets) are resolved to addresses only
when connecting, by the outgoing client, which also applies
C{ip_range_denylist} to each address (L{conduit_tw.http.client}).
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import urljoin, urlsplit

from twisted.internet.defer import Deferred

from conduit_tw.config import is_valid_server_name
from conduit_tw.logging import get_logger
from conduit_tw.util.caches import LruCache

log = get_logger("conduit_tw.federation.discovery")

#: The port of the server-server API when nothing else says (IANA: matrix-fed).
DEFAULT_PORT = 8448
#: Largest .well-known/matrix/server body read.
WELL_KNOWN_MAX_SIZE = 50 * 1024
#: Cache time of a .well-known answer without cache headers (the spec's default).
WELL_KNOWN_DEFAULT_CACHE_S = 24 * 3600
#: Bounds on the cache time taken from the headers (the spec recommends 48 h at most).
WELL_KNOWN_MIN_CACHE_S = 5 * 60
WELL_KNOWN_MAX_CACHE_S = 48 * 3600
#: An answer that is not a valid delegation (non-200, bad JSON, no m.server)
#: is remembered this long (the spec: errors "cached for up to an hour").
WELL_KNOWN_INVALID_CACHE_S = 3600
#: No answer at all (connection, TLS, timeout): remembered for this long,
#: doubling on each repeated failure up to WELL_KNOWN_INVALID_CACHE_S.
WELL_KNOWN_RETRY_FIRST_S = 5 * 60
#: Redirects followed for one lookup (loops are refused as well).
WELL_KNOWN_MAX_REDIRECTS = 5
#: Host names whose .well-known answer is remembered.
WELL_KNOWN_CACHE_ENTRIES = 10_000

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class ServerAddress:
    """
    How to reach a server.

    @ivar targets: C{(host, port)} to try in order; a host is a hostname
        (resolved when connecting) or an IP address without brackets.
    @ivar host_header: the C{Host} header of requests.
    @ivar tls_name: the name (or IP address) the certificate must be valid
        for; sent as SNI when it is a hostname.
    """

    server_name: str
    targets: tuple[tuple[str, int], ...]
    host_header: str
    tls_name: str


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """
    C{host[:port]} -> C{(host, port or None)}; an IPv6 host keeps its
    brackets (appendices "Server Name").

    @raise ValueError: not a valid server name.
    """
    if not is_valid_server_name(server_name):
        raise ValueError(f"invalid server name {server_name!r}")
    if server_name.startswith("["):
        end = server_name.index("]")
        host, rest = server_name[: end + 1], server_name[end + 1 :]
        return host, int(rest[1:]) if rest else None
    host, sep, port = server_name.rpartition(":")
    if not sep:
        return server_name, None
    return host, int(port)


def ip_literal(host: str) -> str | None:
    """The IP address C{host} names (brackets removed), or None for a hostname."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


# -- SRV


@dataclass(frozen=True)
class SrvRecord:
    """One SRV answer (RFC 2782)."""

    priority: int
    weight: int
    target: str
    port: int


class SrvResolver(Protocol):
    """Looks up SRV records; an empty list when there are none."""

    def lookup(self, name: str) -> Awaitable[list[SrvRecord]]:
        """The SRV records of C{name} (e.g. C{_matrix-fed._tcp.example.org})."""


class DNSSrvResolver:
    """
    SRV lookups with the server's resolver (L{conduit_tw.http.dns.DNSResolver}:
    the C{dns_*} settings and its cache). A name that does not exist, a
    record saying "no service" (target C{.}), or a failed lookup all count
    as "no SRV record", so discovery falls through to the next step as the
    spec says.
    """

    def __init__(self, resolver: Any) -> None:
        self._resolver = resolver

    async def lookup(self, name: str) -> list[SrvRecord]:
        from twisted.names import dns

        try:
            answers = await self._resolver.lookup(name, dns.SRV)
        except Exception as e:
            log.info("SRV lookup of {name} failed: {error}", name=name, error=str(e) or repr(e))
            return []
        records = []
        for answer in answers:
            payload = answer.payload
            target = payload.target.name.decode("ascii", "replace").rstrip(".")
            if not target:
                return []  # "." : the service is decidedly not available here
            records.append(SrvRecord(payload.priority, payload.weight, target, payload.port))
        return records


def order_srv(records: list[SrvRecord], rng: random.Random) -> list[tuple[str, int]]:
    """
    The order in which to try SRV targets (RFC 2782): lowest priority
    first; within a priority, a weighted random order (weight 0 entries
    are placed first in the running sum, so they are picked rarely).
    """
    result: list[tuple[str, int]] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total) if total else 0
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    result.append((r.target, r.port))
                    del group[i]
                    break
    return result


# -- .well-known


class WellKnownHTTP(Protocol):
    """The HTTP side the resolver needs (L{conduit_tw.http.client.OutgoingHTTPClient})."""

    def request(self, method: str, url: str, **kw: Any) -> Awaitable[Any]:
        """A response with C{code}, C{headers} (twisted Headers) and C{body}."""


class _Invalid(Exception):
    """The .well-known answer is not a valid delegation (cached for an hour)."""


def cache_period(headers: Any, now: float) -> float | None:
    """
    Seconds a response may be cached from its C{Cache-Control}
    (C{no-store}/C{no-cache} -> 0, C{max-age}) or C{Expires} header, or
    None when it has neither.
    """
    from twisted.web.http import stringToDatetime

    directives: dict[bytes, bytes] = {}
    for value in headers.getRawHeaders(b"cache-control") or []:
        for part in value.split(b","):
            name, _, arg = part.strip().partition(b"=")
            directives[name.strip().lower()] = arg.strip().strip(b'"')
    if b"no-store" in directives or b"no-cache" in directives:
        return 0
    if b"max-age" in directives:
        try:
            return max(0, int(directives[b"max-age"]))
        except ValueError:
            pass
    expires = headers.getRawHeaders(b"expires")
    if expires:
        try:
            return max(0.0, stringToDatetime(expires[0]) - now)
        except (ValueError, IndexError):
            return 0  # RFC 9111: an invalid Expires means "already expired"
    return None


class WellKnownResolver:
    """
    C{GET https://<hostname>/.well-known/matrix/server} with the spec's
    caching: valid answers for their C{Cache-Control}/C{Expires} time (24 h
    without headers), bounded to 5 min - 48 h; invalid answers for an hour;
    failures to get any answer for 5 min, doubling on repeated failures up
    to an hour. Redirects are followed (at most 5, never in a loop, https
    only); bodies are capped at 50 KiB; concurrent lookups of one name
    share one request.

    @param http: the client for the request; it enforces C{ip_range_denylist},
        certificate checks, and the time limits it was built with
        (C{well_known_conn_timeout}, C{well_known_timeout}).
    @param seconds: the clock (C{reactor.seconds}).
    """

    def __init__(self, http: WellKnownHTTP, seconds: Callable[[], float]) -> None:
        self._http = http
        self._seconds = seconds
        self._cache: LruCache[str, tuple[float, str | None]] = LruCache(WELL_KNOWN_CACHE_ENTRIES)
        self._failures: dict[str, int] = {}
        self._waiting: dict[str, list[Deferred[str | None]]] = {}

    async def delegated_name(self, hostname: str) -> str | None:
        """The C{m.server} of C{hostname}, or None when it has no valid one."""
        key = hostname.lower()
        now = self._seconds()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        waiting = self._waiting.get(key)
        if waiting is not None:
            d: Deferred[str | None] = Deferred()
            waiting.append(d)
            return await d
        self._waiting[key] = []
        result: str | None = None
        try:
            result = await self._refresh(key)
        finally:
            for d in self._waiting.pop(key):
                d.callback(result)
        return result

    async def _refresh(self, hostname: str) -> str | None:
        try:
            delegated, ttl = await self._fetch(hostname)
        except _Invalid as e:
            log.info("No .well-known delegation for {host}: {why}", host=hostname, why=str(e))
            self._failures.pop(hostname, None)
            self._remember(hostname, None, WELL_KNOWN_INVALID_CACHE_S)
            return None
        except Exception as e:
            failures = self._failures.get(hostname, 0) + 1
            self._failures[hostname] = failures
            ttl = min(WELL_KNOWN_INVALID_CACHE_S, WELL_KNOWN_RETRY_FIRST_S * 2 ** (failures - 1))
            log.info(
                "Fetching .well-known of {host} failed ({n}x), retrying in {ttl}s: {error}",
                host=hostname, n=failures, ttl=ttl, error=str(e) or repr(e),
            )
            if len(self._failures) > WELL_KNOWN_CACHE_ENTRIES:
                self._failures.clear()
            self._remember(hostname, None, ttl)
            return None
        self._failures.pop(hostname, None)
        self._remember(hostname, delegated, ttl)
        return delegated

    def _remember(self, hostname: str, delegated: str | None, ttl: float) -> None:
        self._cache[hostname] = (self._seconds() + ttl, delegated)

    async def _fetch(self, hostname: str) -> tuple[str, float]:
        """
        One lookup, following redirects.

        @return: the delegated server name and how long to cache it.
        @raise _Invalid: an answer that is no valid delegation.
        """
        url = f"https://{hostname}/.well-known/matrix/server"
        seen = {url}
        http = self._http
        for _ in range(WELL_KNOWN_MAX_REDIRECTS + 1):
            response = await http.request("GET", url, max_size=WELL_KNOWN_MAX_SIZE)
            if response.code in _REDIRECT_CODES:
                location = response.headers.getRawHeaders(b"location")
                if not location:
                    raise _Invalid(f"{response.code} without Location")
                url = urljoin(url, location[0].decode("ascii", "replace"))
                if urlsplit(url).scheme != "https":
                    raise _Invalid(f"redirect to a non-https URL {url!r}")
                if url in seen:
                    raise _Invalid(f"redirect loop at {url!r}")
                seen.add(url)
                continue
            return self._parse(response)
        raise _Invalid(f"more than {WELL_KNOWN_MAX_REDIRECTS} redirects")

    def _parse(self, response: Any) -> tuple[str, float]:
        if response.code != 200:
            raise _Invalid(f"status {response.code}")
        # The spec: assume JSON whatever the Content-Type.
        try:
            body = json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            raise _Invalid("body is not JSON") from None
        delegated = body.get("m.server") if isinstance(body, dict) else None
        if not isinstance(delegated, str) or not is_valid_server_name(delegated):
            raise _Invalid(f"no valid m.server in {response.body[:100]!r}")
        period = cache_period(response.headers, self._seconds())
        if period is None:
            period = WELL_KNOWN_DEFAULT_CACHE_S
        return delegated, min(WELL_KNOWN_MAX_CACHE_S, max(WELL_KNOWN_MIN_CACHE_S, period))


# -- the algorithm


class ServerDiscovery:
    """
    Resolves server names (see the module docstring).

    @param well_known: the .well-known lookups (with their cache).
    @param srv: SRV lookups.
    @param rng: randomness for the weighted SRV order.
    """

    def __init__(
        self,
        well_known: WellKnownResolver,
        srv: SrvResolver,
        rng: random.Random | None = None,
    ) -> None:
        self.well_known = well_known
        self.srv = srv
        self._rng = rng or random.Random()

    async def resolve(self, server_name: str) -> ServerAddress:
        """
        Where and how to connect to C{server_name}.

        @raise ValueError: C{server_name} is not a valid server name.
        """
        host, port = split_server_name(server_name)
        ip = ip_literal(host)
        if ip is not None:  # step 1
            return ServerAddress(server_name, ((ip, port or DEFAULT_PORT),), server_name, ip)
        if port is not None:  # step 2
            return ServerAddress(server_name, ((host, port),), server_name, host)
        delegated = await self.well_known.delegated_name(host)  # step 3
        if delegated is not None:
            d_host, d_port = split_server_name(delegated)
            d_ip = ip_literal(d_host)
            if d_ip is not None:  # 3.1
                return ServerAddress(server_name, ((d_ip, d_port or DEFAULT_PORT),), delegated, d_ip)
            if d_port is not None:  # 3.2
                return ServerAddress(server_name, ((d_host, d_port),), delegated, d_host)
            targets = await self._srv(d_host)  # 3.3, 3.4, 3.5
            return ServerAddress(server_name, targets or ((d_host, DEFAULT_PORT),), d_host, d_host)
        targets = await self._srv(host)  # steps 4, 5, 6
        return ServerAddress(server_name, targets or ((host, DEFAULT_PORT),), host, host)

    async def _srv(self, hostname: str) -> tuple[tuple[str, int], ...]:
        """SRV C{_matrix-fed._tcp} first, then the deprecated C{_matrix._tcp}."""
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self.srv.lookup(service + hostname)
            if records:
                return tuple(order_srv(records, self._rng))
        return ()
