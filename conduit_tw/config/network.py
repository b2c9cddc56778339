"""Keys of outgoing connections: DNS, request timeouts and connection pools."""

from __future__ import annotations

from conduit_tw.config.declare import FEDERATION, key, section
from conduit_tw.config.values import NONNEG, POSITIVE, integer

_DNS = "DNS lookups use the system resolver and its settings"


@section("dns")
class DnsKeys:
    """DNS resolution (conduwuit's resolver settings)."""

    dns_cache_entries: int = key(
        32768, "Maximum number of cached DNS answers.", NONNEG, not_effective=_DNS
    )
    dns_min_ttl: int = key(
        10800, "Minimum seconds a DNS answer is cached.", NONNEG, not_effective=_DNS
    )
    dns_min_ttl_nxdomain: int = key(
        259200,
        'Minimum seconds a "no such domain" answer is cached.',
        NONNEG,
        not_effective=_DNS,
    )
    dns_timeout: int = key(10, "Seconds to wait for a DNS reply.", POSITIVE, not_effective=_DNS)
    dns_attempts: int = key(10, "Retries after a DNS timeout.", POSITIVE, not_effective=_DNS)
    dns_tcp_fallback: bool = key(True, "Retry over TCP when UDP fails.", not_effective=_DNS)
    query_all_nameservers: bool = key(
        False, "Ask every nameserver until one knows the name.", not_effective=_DNS
    )
    query_over_tcp_only: bool = key(False, "Use only TCP for DNS.", not_effective=_DNS)
    ip_lookup_strategy: int = key(
        5,
        "1: IPv4 only, 2: IPv6 only, 3: both in parallel, 4: IPv6 then IPv4, 5: IPv4 then "
        "IPv6.",
        integer(1, 5),
        not_effective=_DNS,
    )


@section("timeouts")
class RequestKeys:
    """Outgoing request timeouts (seconds) and connection pools."""

    request_conn_timeout: int = key(
        10, "Connect timeout for miscellaneous requests (URL previews).", POSITIVE
    )
    request_timeout: int = key(35, "Time to wait for more data on those.", POSITIVE)
    request_total_timeout: int = key(
        320,
        "Time limit for a whole such request.",
        POSITIVE,
        not_effective="the outgoing HTTP client does not use this setting yet",
    )
    request_idle_timeout: int = key(
        5, "How long their idle connections are kept (push gateways included).", NONNEG
    )
    request_idle_per_host: int = key(1, "Idle connections kept per host.", NONNEG)
    well_known_conn_timeout: int = key(
        6,
        "Connect timeout for federation `.well-known` lookups.",
        POSITIVE,
    )
    well_known_timeout: int = key(
        10,
        "Request timeout for federation `.well-known` lookups.",
        POSITIVE,
    )
    federation_timeout: int = key(
        300,
        "Timeout of federation requests (large joins take long).",
        POSITIVE,
    )
    federation_idle_timeout: int = key(
        25,
        "How long idle federation connections are kept.",
        NONNEG,
    )
    federation_idle_per_host: int = key(
        1, "Idle federation connections kept per server.", NONNEG
    )
    sender_timeout: int = key(
        180,
        "Timeout for sending transactions to other servers.",
        POSITIVE,
    )
    sender_idle_timeout: int = key(
        180, "How long idle sender connections are kept.", NONNEG, not_effective=FEDERATION
    )
    sender_retry_backoff_limit: int = key(
        86400,
        "Longest wait between retries to an unreachable server.",
        POSITIVE,
    )
    appservice_timeout: int = key(
        35, "Timeout of requests to appservices.", POSITIVE
    )
    appservice_idle_timeout: int = key(
        300,
        "How long idle appservice connections are kept.",
        NONNEG,
    )
    pusher_idle_timeout: int = key(
        15,
        "How long idle push gateway connections are kept.",
        NONNEG,
        not_effective=(
            "push gateways share the outgoing connection pool, whose idle time is "
            "`request_idle_timeout`"
        ),
    )
