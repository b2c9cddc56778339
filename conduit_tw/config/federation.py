"""Keys of federation: trust, limits, outgoing proxy, TLS checks and .well-known."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conduit_tw.config import values
from conduit_tw.config.declare import FEDERATION, key, section, table
from conduit_tw.config.env import check
from conduit_tw.config.values import Type, bad

#: conduwuit's default for C{ip_range_denylist}: RFC 1918, loopback, link-local,
#: CGNAT, multicast, documentation and other non-routable ranges.
DEFAULT_IP_RANGE_DENYLIST: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)
_LONG_INSECURE_TLS_KEY = (
    "allow_invalid_tls_certificates_yes_i_know_what_the_fuck_i_am_doing_with_this"
    "_and_i_know_this_is_insecure"
)


@section("well_known")
class WellKnownConfig:
    """C{[global.well_known]}: answers for C{/.well-known/matrix/*}; C{None} = not served."""

    client: str | None = key(
        None, "Base URL of the client API, `https://matrix.example.com`.", values.HTTP_URL
    )
    server: str | None = key(
        None, "Federation address, `matrix.example.com:443`.", values.SERVER_NAME
    )
    support_page: str | None = key(
        None, "URL of a support page (`/.well-known/matrix/support`)."
    )
    support_role: str | None = key(
        None,
        "Role of the support contact (`m.role.admin` or `m.role.security`).",
        doc_default="unset (`m.role.admin`)",
    )
    support_email: str | None = key(None, "E-mail address of the support contact.")
    support_mxid: str | None = key(None, "Matrix ID of the support contact.")


@dataclass
class ProxyRule:
    """One C{[[global.proxy.by_domain]]} entry."""

    url: str
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


@dataclass
class ProxyConfig:
    """
    Conduit's C{proxy} key: a proxy for I{outgoing} requests (federation, media).

    C{mode} is C{"none"}, C{"global"} (every request through C{url}) or
    C{"by_domain"} (the first rule of C{rules} whose C{include} matches the host and
    whose C{exclude} does not).
    """

    mode: str = "none"
    url: str | None = None
    rules: list[ProxyRule] = field(default_factory=list)

    def proxy_for(self, host: str) -> str | None:
        """The proxy URL to reach C{host} through, or C{None} to connect directly."""
        if self.mode == "global":
            return self.url
        if self.mode == "by_domain":
            for rule in self.rules:
                included = not rule.include or any(_domain_matches(p, host) for p in rule.include)
                if included and not any(_domain_matches(p, host) for p in rule.exclude):
                    return rule.url
        return None


def _domain_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _proxy(path: str, value: Any) -> ProxyConfig:
    """Conduit's C{proxy}: C{"none"}, a URL, C{{global = {url}}} or C{by_domain} rules."""
    expected = (
        '"none", a proxy URL, or a table with global = { url = "..." } or '
        '[[global.proxy.by_domain]] entries (url, include, exclude)'
    )
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return ProxyConfig()
        return ProxyConfig(mode="global", url=values.PROXY_URL(path, value))
    if not isinstance(value, dict) or len(value) != 1:
        raise bad(path, expected, value)
    ((kind, body),) = value.items()
    if kind == "global":
        body = check(values.TABLE, f"{path}.global", body)
        if set(body) != {"url"}:
            raise bad(f"{path}.global", "a table with only a url key", body)
        url = check(values.PROXY_URL, f"{path}.global.url", body["url"])
        return ProxyConfig(mode="global", url=url)
    if kind == "by_domain":
        if not isinstance(body, list) or not body:
            raise bad(f"{path}.by_domain", "a non-empty list of tables (url, include, exclude)", body)
        rules = []
        for i, entry in enumerate(body):
            p = f"{path}.by_domain[{i}]"
            entry = check(values.TABLE, p, entry)
            if set(entry) - {"url", "include", "exclude"} or "url" not in entry:
                raise bad(p, "a table with url and optional include/exclude lists", entry)
            rules.append(
                ProxyRule(
                    url=check(values.PROXY_URL, f"{p}.url", entry["url"]),
                    include=check(values.STR_LIST, f"{p}.include", entry.get("include", [])),
                    exclude=check(values.STR_LIST, f"{p}.exclude", entry.get("exclude", [])),
                )
            )
        return ProxyConfig(mode="by_domain", rules=rules)
    raise bad(path, expected, value)


PROXY = Type("proxy", _proxy, table_keys=("global", "by_domain"))


@section("federation")
class FederationKeys:
    """Federation with other servers."""

    allow_federation: bool = key(
        True,
        "Talk to other Matrix servers. `false`: only local users can talk to each other.",
    )
    trusted_servers: list[str] = key(
        ["matrix.org"],
        "Notary servers asked for other servers' signing keys.",
        values.list_of(values.SERVER_NAME, "server names"),
    )
    query_trusted_key_servers_first: bool = key(
        True,
        "Ask `trusted_servers` before the servers themselves (usually faster).",
    )
    max_concurrent_requests: int = key(
        100,
        "How many requests the server sends to other servers at the same time.",
        values.U16,
        not_effective=FEDERATION,
    )
    max_fetch_prev_events: int = key(
        100,
        "Most missing previous events fetched for one incoming event.",
        values.U16,
    )
    ignored_keys: list[str] = key(
        [],
        "Signing keys never trusted (known compromised): `server_name:key_id`, a key ID on "
        "any server, or an unpadded base64 ed25519 public key.",
    )
    allow_device_name_federation: bool = key(
        False, "Show device display names to other servers."
    )
    allow_profile_lookup_federation_requests: bool = key(
        True,
        "Answer other servers' profile queries about our users.",
    )
    forbidden_remote_server_names: list[str] = key(
        [],
        "Servers we refuse everything from: invites, joins, room directory requests "
        '("global ACL").',
    )
    forbidden_remote_room_directory_server_names: list[str] = key(
        [],
        "Servers our users may not query for their room directory.",
    )
    prevent_media_downloads_from: list[str] = key(
        [], "Servers we never download remote media from.",
    )
    ip_range_denylist: list[str] = key(
        list(DEFAULT_IP_RANGE_DENYLIST),
        "CIDR ranges outgoing requests (federation, media, push gateways, URL previews) may "
        "never connect to, checked after DNS resolution; appservices are exempt (their URL "
        "is the admin's). `[]` disables it (needed for test federations on loopback).",
        values.list_of(values.NETWORK, "CIDR ranges"),
        doc_default=(
            "RFC 1918, loopback, link-local, multicast, documentation ranges (conduwuit's list)"
        ),
    )
    allow_invalid_tls_certificates: bool = key(
        False,
        "Do not verify other servers' TLS certificates. **Test networks only**; logs a "
        f"warning. conduwuit's spelling `{_LONG_INSECURE_TLS_KEY}` is accepted too.",
        aliases=(_LONG_INSECURE_TLS_KEY,),
    )
    well_known: WellKnownConfig = table(
        WellKnownConfig,
        "Served at `/.well-known/matrix/{client,server,support}` when set; each document "
        "answers 404 while its keys are unset.",
    )
    proxy: ProxyConfig = key(
        ProxyConfig(),
        "Proxy for **outgoing** requests (federation, media); see below. This is not about "
        "reverse proxies in front of the server (that is `trusted_proxies`).",
        PROXY,
        doc_default='`"none"`',
        not_effective="outgoing requests do not go through a proxy yet",
        notice_unless=lambda proxy: proxy.mode == "none",
    )
    startup_netburst: bool = key(
        True,
        "Retry queued outgoing transactions right after start-up.",
    )
    startup_netburst_keep: int = key(
        50,
        "How many queued events per server to keep for that retry; `-1` keeps all, `0` "
        "drops all.",
        values.integer(-1),
    )


def after_load(config: Any, g: dict[str, Any], notices: list[str]) -> None:
    if config.allow_invalid_tls_certificates:
        notices.append(
            "global.allow_invalid_tls_certificates: TLS certificates of other servers are "
            "NOT verified; use this on test networks only"
        )
