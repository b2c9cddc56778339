"""
Load and validate Conduit's C{conduit.toml} plus C{CONDUIT_*} environment variables.

A file written for Conduit (or conduwuit) works here unchanged: every key of their
example configs is either a typed field of L{Config} or accepted with a one-line notice
saying it has no effect in conduit-tw. Some typed fields are validated but not used by
the server yet (L{NOT_EFFECTIVE_YET}); setting one logs a notice saying so. Unknown keys
are reported (never silently dropped) and wrong values stop start-up with a
L{ConfigError} naming the key.

Precedence, lowest to highest: built-in defaults, the file's C{[global]} table,
C{CONDUIT_<KEY>} environment variables (C{__} separates nested tables), then
C{overrides} (the command line). The only I/O here is reading the config file; the
caller logs L{Config.notices}. The key reference is docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from twisted.logger import LogLevel

from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS

__all__ = [
    "ConfigError",
    "Config",
    "TlsConfig",
    "WellKnownConfig",
    "ProxyConfig",
    "ProxyRule",
    "MediaConfig",
    "MediaDirectoryStructure",
    "MediaRetention",
    "load_config",
    "is_valid_server_name",
    "parse_log_filter",
    "OPEN_REGISTRATION_KEY",
    "KNOWN_KEYS",
    "NO_EFFECT_KEYS",
    "NO_EFFECT_PREFIXES",
    "NOT_EFFECTIVE_YET",
    "is_known_key",
]

ENV_PREFIX = "CONDUIT_"
ENV_CONFIG_PATH = "CONDUIT_CONFIG"
OPEN_REGISTRATION_KEY = "yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse"
_LONG_INSECURE_TLS_KEY = (
    "allow_invalid_tls_certificates_yes_i_know_what_the_fuck_i_am_doing_with_this"
    "_and_i_know_this_is_insecure"
)

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


class ConfigError(Exception):
    """The configuration is unusable; the message names the key and what is expected."""


# ---------------------------------------------------------------------------
# The configuration objects
# ---------------------------------------------------------------------------


@dataclass
class TlsConfig:
    """C{[global.tls]}: serve HTTPS directly (PEM files)."""

    certs: str
    key: str
    #: Also accept plain HTTP on the same port (conduwuit's C{dual_protocol}).
    dual_protocol: bool = False


@dataclass
class WellKnownConfig:
    """C{[global.well_known]}: answers for C{/.well-known/matrix/*}; C{None} = not served."""

    client: str | None = None
    server: str | None = None
    support_page: str | None = None
    support_role: str | None = None
    support_email: str | None = None
    support_mxid: str | None = None


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


@dataclass
class MediaDirectoryStructure:
    """Conduit's deep media layout: C{depth} directories of C{length} hex characters."""

    length: int = 2
    depth: int = 2


@dataclass
class MediaRetention:
    """One C{[[global.media.retention]]} policy; durations in seconds, sizes in bytes."""

    scope: str | None = None
    accessed: float | None = None
    created: float | None = None
    space: int | None = None


@dataclass
class MediaConfig:
    """C{[global.media]}: where media files live (only the C{filesystem} backend)."""

    backend: str = "filesystem"
    #: Defaults to C{<database_path>/media}.
    path: str = ""
    #: C{None} means a flat directory (Conduit's C{directory_structure = {}}).
    directory_structure: MediaDirectoryStructure | None = field(
        default_factory=MediaDirectoryStructure
    )
    retention: list[MediaRetention] = field(default_factory=list)


@dataclass
class Config:
    """
    The validated C{[global]} table. Attribute names are the TOML key names.

    Built by L{load_config}; C{Config()} alone gives the built-in defaults (without
    the derived values L{load_config} fills in, such as C{media.path}).
    """

    # -- identity and storage
    server_name: str = "localhost"
    database_path: str = "./conduit_data"
    database_backend: str = "sqlite"
    database_backup_path: str | None = None
    database_backups_to_keep: int = 1
    db_cache_capacity_mb: float = 256.0
    #: SQLite durability: "full" (fsync per commit: survives power loss),
    #: "normal" (survives a crash or kill -9 of the server, may lose the last
    #: commits on power loss), "extra".
    sqlite_synchronous: str = "full"
    #: LMDB durability: "full" (sync + metasync) or "normal" (no metasync).
    lmdb_sync: str = "full"
    conduit_cache_capacity_modifier: float = 1.0
    pdu_cache_capacity: int = 150_000
    cleanup_second_interval: int = 60

    # -- listening
    address: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: list[int] = field(default_factory=lambda: [6167])
    unix_socket_path: str | None = None
    #: As written in the file: C{660} means mode C{0o660} (see L{unix_socket_mode}).
    unix_socket_perms: int = 660
    tls: TlsConfig | None = None
    trusted_proxies: list[str] = field(default_factory=list)
    max_request_size: int = 20_000_000
    gzip_compression: bool = False

    # -- registration and accounts
    allow_registration: bool = False
    registration_token: str | None = None
    registration_token_file: str | None = None
    yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse: bool = False
    allow_guest_registration: bool = False
    #: Accept the deprecated C{access_token} query parameter (the header wins).
    allow_access_token_query_parameter: bool = True
    log_guest_registrations: bool = False
    allow_guests_auto_join_rooms: bool = False
    auto_join_rooms: list[str] = field(default_factory=list)
    forbidden_usernames: list[str] = field(default_factory=list)
    new_user_displayname_suffix: str = ""
    enable_lightning_bolt: bool | None = None
    emergency_password: str | None = None
    jwt_secret: str | None = None
    openid_token_ttl: int = 3600

    # -- rooms
    allow_encryption: bool = True
    allow_room_creation: bool = True
    allow_unstable_room_versions: bool = True
    default_room_version: str = "12"
    block_non_admin_invites: bool = False
    forbidden_alias_names: list[str] = field(default_factory=list)
    auto_deactivate_banned_room_attempts: bool = False
    allow_public_room_directory_without_auth: bool = False
    allow_public_room_directory_over_federation: bool = False
    lockdown_public_room_directory: bool = False

    # -- federation
    allow_federation: bool = True
    trusted_servers: list[str] = field(default_factory=lambda: ["matrix.org"])
    query_trusted_key_servers_first: bool = True
    max_concurrent_requests: int = 100
    max_fetch_prev_events: int = 100
    allow_device_name_federation: bool = False
    allow_profile_lookup_federation_requests: bool = True
    forbidden_remote_server_names: list[str] = field(default_factory=list)
    forbidden_remote_room_directory_server_names: list[str] = field(default_factory=list)
    prevent_media_downloads_from: list[str] = field(default_factory=list)
    ip_range_denylist: list[str] = field(default_factory=lambda: list(DEFAULT_IP_RANGE_DENYLIST))
    allow_invalid_tls_certificates: bool = False
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    startup_netburst: bool = True
    startup_netburst_keep: int = 50
    well_known: WellKnownConfig = field(default_factory=WellKnownConfig)

    # -- DNS
    dns_cache_entries: int = 32768
    dns_min_ttl: int = 10800
    dns_min_ttl_nxdomain: int = 259200
    dns_timeout: int = 10
    dns_attempts: int = 10
    dns_tcp_fallback: bool = True
    query_all_nameservers: bool = False
    query_over_tcp_only: bool = False
    ip_lookup_strategy: int = 5

    # -- outgoing request timeouts (seconds) and connection pools
    request_conn_timeout: int = 10
    request_timeout: int = 35
    request_total_timeout: int = 320
    request_idle_timeout: int = 5
    request_idle_per_host: int = 1
    well_known_conn_timeout: int = 6
    well_known_timeout: int = 10
    federation_timeout: int = 300
    federation_idle_timeout: int = 25
    federation_idle_per_host: int = 1
    sender_timeout: int = 180
    sender_idle_timeout: int = 180
    sender_retry_backoff_limit: int = 86400
    appservice_timeout: int = 35
    appservice_idle_timeout: int = 300
    pusher_idle_timeout: int = 15

    # -- presence, typing, receipts
    allow_local_presence: bool = True
    allow_incoming_presence: bool = True
    allow_outgoing_presence: bool = True
    presence_timeout_remote_users: bool = True
    presence_idle_timeout_s: int = 300
    presence_offline_timeout_s: int = 1800
    allow_incoming_read_receipts: bool = True
    allow_outgoing_read_receipts: bool = True
    allow_incoming_typing: bool = True
    allow_outgoing_typing: bool = True
    typing_federation_timeout_s: int = 30
    typing_client_timeout_min_s: int = 15
    typing_client_timeout_max_s: int = 45

    # -- TURN
    turn_uris: list[str] = field(default_factory=list)
    turn_secret: str | None = None
    turn_username: str | None = None
    turn_password: str | None = None
    turn_ttl: int = 86400
    turn_allow_guests: bool = False

    # -- media and URL previews
    media: MediaConfig = field(default_factory=MediaConfig)
    url_preview_domain_contains_allowlist: list[str] = field(default_factory=list)
    url_preview_domain_explicit_allowlist: list[str] = field(default_factory=list)
    url_preview_url_contains_allowlist: list[str] = field(default_factory=list)
    url_preview_domain_explicit_denylist: list[str] = field(default_factory=list)
    url_preview_max_spider_size: int = 384_000
    url_preview_check_root_domain: bool = False

    # -- rate limiting (per user, or per IP address when not logged in; 0 disables)
    rc_message_per_second: float = 0.2
    rc_message_burst_count: int = 10
    rc_registration_per_second: float = 0.17
    rc_registration_burst_count: int = 3
    rc_login_per_second: float = 0.17
    rc_login_burst_count: int = 3
    rc_joins_per_second: float = 0.1
    rc_joins_burst_count: int = 10
    rc_profile_per_second: float = 0.1
    rc_profile_burst_count: int = 5
    rc_account_data_per_second: float = 1.0
    rc_account_data_burst_count: int = 20
    rc_room_aliases_per_second: float = 0.2
    rc_room_aliases_burst_count: int = 10
    rc_directory_per_second: float = 0.2
    rc_directory_burst_count: int = 10
    rc_pushers_per_second: float = 0.1
    rc_pushers_burst_count: int = 5
    rc_invites_per_second: float = 0.3
    rc_invites_burst_count: int = 10
    rc_keys_per_second: float = 1.0
    rc_keys_burst_count: int = 20
    rc_media_per_second: float = 1.0
    rc_media_burst_count: int = 20
    #: Largest stored user JSON (account data, filters, pusher data, room tags) in bytes.
    max_account_data_size: int = 65536

    # -- logging
    log: str = "info"
    log_level: LogLevel = LogLevel.info
    #: Per-target levels from C{log} (C{None} = C{off}), e.g. C{{"state_res": warn}}.
    log_targets: dict[str, LogLevel | None] = field(default_factory=dict)

    # -- bookkeeping
    #: Messages for the operator (notices and warnings), to be logged at start-up.
    notices: list[str] = field(default_factory=list)
    #: Dotted names (C{global.foo}) of keys that were not recognised.
    unknown_keys: list[str] = field(default_factory=list)
    #: Keys accepted for compatibility that have no effect here, with their values.
    extra: dict[str, object] = field(default_factory=dict)

    def database_options(self) -> dict[str, Any]:
        """The backend options the storage layer takes from this config."""
        return {
            "db_cache_capacity_mb": self.db_cache_capacity_mb,
            "sqlite_synchronous": self.sqlite_synchronous,
            "lmdb_sync": self.lmdb_sync,
        }

    @property
    def unix_socket_mode(self) -> int:
        """C{unix_socket_perms} as a file mode: C{660} -> C{0o660}."""
        return int(str(self.unix_socket_perms), 8)

    def listen_addresses(self) -> list[tuple[str, int]]:
        """Every (address, port) to listen on; empty when C{unix_socket_path} is set."""
        if self.unix_socket_path is not None:
            return []
        return [(a, p) for a in self.address for p in self.port]


# ---------------------------------------------------------------------------
# Value validators: (dotted key, raw value) -> typed value, or ConfigError
# ---------------------------------------------------------------------------

Validator = Callable[[str, Any], Any]


def _bad(path: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {_show(value)}")


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _wants_str(validator: Validator) -> Validator:
    """Mark a validator whose env values are taken verbatim (C{CONDUIT_X=1234} is "1234")."""
    validator.wants_str = True  # type: ignore[attr-defined]
    return validator


def _v_bool(path: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise _bad(path, "true or false", v)


def _v_int(lo: int | None = None, hi: int | None = None) -> Validator:
    if lo is not None and hi is not None:
        what = f"an integer {lo}-{hi}"
    elif lo is not None:
        what = f"an integer >= {lo}"
    else:
        what = "an integer"

    def check(path: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(path, what, v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _bad(path, what, v)
        return v

    return check


def _v_float(lo: float = 0.0, strictly_above: bool = False) -> Validator:
    what = f"a number {'>' if strictly_above else '>='} {lo:g}"

    def check(path: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad(path, what, v)
        if v != v or v in (float("inf"), float("-inf")):
            raise _bad(path, what, v)
        if v < lo or (strictly_above and v == lo):
            raise _bad(path, what, v)
        return float(v)

    return check


@_wants_str
def _v_str(path: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    raise _bad(path, "a string", v)


@_wants_str
def _v_nonempty_str(path: str, v: Any) -> str:
    if isinstance(v, str) and v.strip():
        return v
    raise _bad(path, "a non-empty string", v)


@_wants_str
def _v_opt_str(path: str, v: Any) -> str | None:
    """A string where C{""} means unset."""
    if isinstance(v, str):
        return v or None
    raise _bad(path, "a string", v)


def _v_list(item: Validator, what: str) -> Validator:
    def check(path: str, v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise _bad(path, f"a list of {what}", v)
        return [item(f"{path}[{i}]", x) for i, x in enumerate(v)]

    return check


_v_str_list = _v_list(_v_str, "strings")


def _v_server_name(path: str, v: Any) -> str:
    if isinstance(v, str) and is_valid_server_name(v):
        return v
    raise _bad(path, "a server name such as example.com or example.com:8448", v)


def _v_network(path: str, v: Any) -> str:
    if isinstance(v, str):
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            pass
    raise _bad(path, "an IP address or CIDR range such as 10.0.0.0/8", v)


def _v_ports(path: str, v: Any) -> list[int]:
    what = "an integer 1-65535 or a list of them"
    values = v if isinstance(v, list) else [v]
    if not values:
        raise _bad(path, what, v)
    for p in values:
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
            raise _bad(path, what, v)
    return _dedupe(values)


def _v_addresses(path: str, v: Any) -> list[str]:
    what = 'an IP address such as "127.0.0.1" or "::" or a list of them'
    values = v if isinstance(v, list) else [v]
    if not values:
        raise _bad(path, what, v)
    out = []
    for a in values:
        try:
            out.append(str(ipaddress.ip_address(a.strip())))
        except (AttributeError, ValueError):
            raise _bad(path, what, v) from None
    return _dedupe(out)


def _v_perms(path: str, v: Any) -> int:
    """Unix permissions as octal digits (C{660}, C{"660"}, C{"0o660"}) -> C{660}."""
    what = "file permissions as octal digits such as 660"
    if isinstance(v, bool):
        raise _bad(path, what, v)
    text = str(v).strip() if isinstance(v, (int, str)) else ""
    if text.lower().startswith("0o"):
        text = text[2:]
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        raise _bad(path, what, v)
    return int(text)


def _v_room_version(path: str, v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if isinstance(v, str) and v in KNOWN_ROOM_VERSIONS:
        return v
    raise _bad(path, f"a room version, one of {', '.join(KNOWN_ROOM_VERSIONS)}", v)


def _v_http_url(path: str, v: Any) -> str:
    if isinstance(v, str):
        parts = urlsplit(v)
        if parts.scheme in ("http", "https") and parts.hostname:
            return v
    raise _bad(path, 'an http(s) URL such as "https://matrix.example.com"', v)


def _v_proxy_url(path: str, v: Any) -> str:
    if isinstance(v, str):
        parts = urlsplit(v)
        if parts.scheme in ("http", "https", "socks5", "socks5h") and parts.hostname:
            return v
    raise _bad(path, 'a proxy URL such as "socks5h://localhost:9050"', v)


def _v_turn_uri(path: str, v: Any) -> str:
    if isinstance(v, str) and v.split(":", 1)[0] in ("turn", "turns", "stun", "stuns") and ":" in v:
        return v
    raise _bad(path, 'a TURN URI such as "turn:turn.example.com?transport=udp"', v)


def _v_room_ref(path: str, v: Any) -> str:
    if isinstance(v, str) and len(v) > 1 and v[0] in "!#":
        return v
    raise _bad(path, 'a room ID ("!...") or alias ("#...:server")', v)


@_wants_str
def _v_log(path: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _bad(path, 'a log filter such as "info" or "warn,state_res=warn"', v)
    parse_log_filter(v, path)
    return v


def _v_backend(path: str, v: Any) -> str:
    if isinstance(v, str) and v.strip():
        name = v.strip()
        return name.lower() if name.lower() in ("sqlite", "lmdb", "rocksdb") else name
    raise _bad(path, 'a storage backend name such as "sqlite" or "lmdb"', v)


def _v_choice(*choices: str) -> Validator:
    def check(path: str, v: Any) -> str:
        if isinstance(v, str) and v.strip().lower() in choices:
            return v.strip().lower()
        raise _bad(path, "one of " + ", ".join(repr(c) for c in choices), v)

    return check


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------
# The schema: every top-level key we implement, and those accepted without effect
# ---------------------------------------------------------------------------

_U16 = _v_int(1, 65535)
_NONNEG = _v_int(0)
_POS = _v_int(1)

_FIELDS: dict[str, Validator] = {
    "server_name": _v_server_name,
    "database_path": _v_nonempty_str,
    "database_backend": _v_backend,
    "database_backup_path": _v_opt_str,
    "database_backups_to_keep": _NONNEG,
    "db_cache_capacity_mb": _v_float(0.0),
    "sqlite_synchronous": _v_choice("full", "normal", "extra"),
    "lmdb_sync": _v_choice("full", "normal"),
    "conduit_cache_capacity_modifier": _v_float(0.0, strictly_above=True),
    "pdu_cache_capacity": _NONNEG,
    "cleanup_second_interval": _POS,
    "address": _v_addresses,
    "port": _v_ports,
    "unix_socket_path": _v_opt_str,
    "unix_socket_perms": _v_perms,
    "trusted_proxies": _v_list(_v_network, "IP addresses or CIDR ranges"),
    "max_request_size": _POS,
    "gzip_compression": _v_bool,
    "allow_registration": _v_bool,
    "registration_token": _v_opt_str,
    "registration_token_file": _v_opt_str,
    OPEN_REGISTRATION_KEY: _v_bool,
    "allow_guest_registration": _v_bool,
    "allow_access_token_query_parameter": _v_bool,
    "log_guest_registrations": _v_bool,
    "allow_guests_auto_join_rooms": _v_bool,
    "auto_join_rooms": _v_list(_v_room_ref, "room IDs"),
    "forbidden_usernames": _v_str_list,
    "new_user_displayname_suffix": _v_str,
    "enable_lightning_bolt": _v_bool,
    "emergency_password": _v_opt_str,
    "jwt_secret": _v_opt_str,
    "openid_token_ttl": _POS,
    "allow_encryption": _v_bool,
    "allow_room_creation": _v_bool,
    "allow_unstable_room_versions": _v_bool,
    "default_room_version": _v_room_version,
    "block_non_admin_invites": _v_bool,
    "forbidden_alias_names": _v_str_list,
    "auto_deactivate_banned_room_attempts": _v_bool,
    "allow_public_room_directory_without_auth": _v_bool,
    "allow_public_room_directory_over_federation": _v_bool,
    "lockdown_public_room_directory": _v_bool,
    "allow_federation": _v_bool,
    "trusted_servers": _v_list(_v_server_name, "server names"),
    "query_trusted_key_servers_first": _v_bool,
    "max_concurrent_requests": _U16,
    "max_fetch_prev_events": _U16,
    "allow_device_name_federation": _v_bool,
    "allow_profile_lookup_federation_requests": _v_bool,
    "forbidden_remote_server_names": _v_str_list,
    "forbidden_remote_room_directory_server_names": _v_str_list,
    "prevent_media_downloads_from": _v_str_list,
    "ip_range_denylist": _v_list(_v_network, "CIDR ranges"),
    "allow_invalid_tls_certificates": _v_bool,
    "startup_netburst": _v_bool,
    "startup_netburst_keep": _v_int(-1),
    "dns_cache_entries": _NONNEG,
    "dns_min_ttl": _NONNEG,
    "dns_min_ttl_nxdomain": _NONNEG,
    "dns_timeout": _POS,
    "dns_attempts": _POS,
    "dns_tcp_fallback": _v_bool,
    "query_all_nameservers": _v_bool,
    "query_over_tcp_only": _v_bool,
    "ip_lookup_strategy": _v_int(1, 5),
    "request_conn_timeout": _POS,
    "request_timeout": _POS,
    "request_total_timeout": _POS,
    "request_idle_timeout": _NONNEG,
    "request_idle_per_host": _NONNEG,
    "well_known_conn_timeout": _POS,
    "well_known_timeout": _POS,
    "federation_timeout": _POS,
    "federation_idle_timeout": _NONNEG,
    "federation_idle_per_host": _NONNEG,
    "sender_timeout": _POS,
    "sender_idle_timeout": _NONNEG,
    "sender_retry_backoff_limit": _POS,
    "appservice_timeout": _POS,
    "appservice_idle_timeout": _NONNEG,
    "pusher_idle_timeout": _NONNEG,
    "allow_local_presence": _v_bool,
    "allow_incoming_presence": _v_bool,
    "allow_outgoing_presence": _v_bool,
    "presence_timeout_remote_users": _v_bool,
    "presence_idle_timeout_s": _POS,
    "presence_offline_timeout_s": _POS,
    "allow_incoming_read_receipts": _v_bool,
    "allow_outgoing_read_receipts": _v_bool,
    "allow_incoming_typing": _v_bool,
    "allow_outgoing_typing": _v_bool,
    "typing_federation_timeout_s": _POS,
    "typing_client_timeout_min_s": _POS,
    "typing_client_timeout_max_s": _POS,
    "turn_uris": _v_list(_v_turn_uri, "TURN URIs"),
    "turn_secret": _v_opt_str,
    "turn_username": _v_opt_str,
    "turn_password": _v_opt_str,
    "turn_ttl": _POS,
    "turn_allow_guests": _v_bool,
    "url_preview_domain_contains_allowlist": _v_str_list,
    "url_preview_domain_explicit_allowlist": _v_str_list,
    "url_preview_url_contains_allowlist": _v_str_list,
    "url_preview_domain_explicit_denylist": _v_str_list,
    "url_preview_max_spider_size": _POS,
    "url_preview_check_root_domain": _v_bool,
    "rc_message_per_second": _v_float(0.0),
    "rc_message_burst_count": _POS,
    "rc_registration_per_second": _v_float(0.0),
    "rc_registration_burst_count": _POS,
    "rc_login_per_second": _v_float(0.0),
    "rc_login_burst_count": _POS,
    "rc_joins_per_second": _v_float(0.0),
    "rc_joins_burst_count": _POS,
    "rc_profile_per_second": _v_float(0.0),
    "rc_profile_burst_count": _POS,
    "rc_account_data_per_second": _v_float(0.0),
    "rc_account_data_burst_count": _POS,
    "rc_room_aliases_per_second": _v_float(0.0),
    "rc_room_aliases_burst_count": _POS,
    "rc_directory_per_second": _v_float(0.0),
    "rc_directory_burst_count": _POS,
    "rc_pushers_per_second": _v_float(0.0),
    "rc_pushers_burst_count": _POS,
    "rc_invites_per_second": _v_float(0.0),
    "rc_invites_burst_count": _POS,
    "rc_keys_per_second": _v_float(0.0),
    "rc_keys_burst_count": _POS,
    "rc_media_per_second": _v_float(0.0),
    "rc_media_burst_count": _POS,
    "max_account_data_size": _v_int(1024, 16_000_000),
    "log": _v_log,
}

#: Tables handled by their own parser (the key names inside them are listed too).
_TABLES: dict[str, frozenset[str]] = {
    "tls": frozenset({"certs", "key", "dual_protocol"}),
    "well_known": frozenset(
        {"client", "server", "support_page", "support_role", "support_email", "support_mxid"}
    ),
    "media": frozenset({"backend", "path", "directory_structure", "retention"}),
    "turn": frozenset({"uris", "ttl", "secret", "username", "password"}),
    "proxy": frozenset({"global", "by_domain"}),
}

#: Keys of Conduit/conduwuit that concern things conduit-tw does not have.
_NO_EFFECT: dict[str, str] = {
    "sentry": "Sentry crash reporting is not built in",
    "sentry_endpoint": "Sentry crash reporting is not built in",
    "sentry_send_server_name": "Sentry crash reporting is not built in",
    "sentry_traces_sample_rate": "Sentry crash reporting is not built in",
    "zstd_compression": "only gzip response compression is available (gzip_compression)",
    "brotli_compression": "only gzip response compression is available (gzip_compression)",
    "allow_check_for_updates": "conduit-tw never calls home for announcements",
    "allow_jaeger": "Jaeger tracing is not built in",
    "tracing_flame": "tracing flame graphs are a Rust tracing feature",
    "tracing_flame_filter": "tracing flame graphs are a Rust tracing feature",
    "tracing_flame_output_path": "tracing flame graphs are a Rust tracing feature",
    "workers": "Twisted runs one reactor thread; there is no worker pool to size",
    "cache_capacity": "deprecated in Conduit; use db_cache_capacity_mb",
    "dual_protocol": "it belongs in [global.tls]",
    "rocksdb_max_open_files": "RocksDB is not used (database_backend 'rocksdb' means 'lmdb')",
}
#: Prefixes of keys that tune software conduit-tw does not use.
_NO_EFFECT_PREFIXES: dict[str, str] = {
    "rocksdb_": "RocksDB is not used (database_backend 'rocksdb' means 'lmdb')",
    "jemalloc_": "jemalloc is a Rust allocator; Python manages its own memory",
    "tokio_": "the Rust tokio runtime is not used",
}

_FEDERATION = "federation is not implemented yet"
_DNS = "DNS lookups use the system resolver and its settings"
_HTTP_POOL = "the outgoing HTTP client does not use this setting yet"
_TURN = "the TURN endpoint (/voip/turnServer) is not implemented yet"
_PREVIEW = "URL previews are not implemented yet"
_MEDIA = "the media repository is not implemented yet"

#: Keys that are validated and kept in L{Config} but that nothing in the server reads
#: yet (key -> why). Setting one logs one notice; docs/configuration.md marks each as
#: "not effective yet", and tests/test_config_docs.py checks that this list and the
#: code agree (a key leaves this list when the code starts reading it). Dotted keys
#: name a key inside a table (C{tls.dual_protocol}); C{media} is the whole table.
NOT_EFFECTIVE_YET: dict[str, str] = {
    "database_backup_path": "there is no online backup command yet",
    "database_backups_to_keep": "there is no online backup command yet",
    "cleanup_second_interval": "there is no periodic database housekeeping yet",
    "tls.dual_protocol": "HTTPS listeners accept only TLS",
    "emergency_password": "there is no server admin user or admin room yet",
    "jwt_secret": "JWT login (org.matrix.login.jwt) is not implemented yet",
    "openid_token_ttl": "OpenID tokens are not implemented yet",
    "allow_encryption": (
        "end-to-end encryption is not supported yet, so m.room.encryption is always refused"
    ),
    "auto_deactivate_banned_room_attempts": "banning rooms is not implemented yet",
    "allow_public_room_directory_over_federation": _FEDERATION,
    "allow_federation": _FEDERATION,
    "trusted_servers": _FEDERATION,
    "query_trusted_key_servers_first": _FEDERATION,
    "max_concurrent_requests": _FEDERATION,
    "max_fetch_prev_events": _FEDERATION,
    "allow_profile_lookup_federation_requests": _FEDERATION,
    "forbidden_remote_server_names": _FEDERATION,
    "forbidden_remote_room_directory_server_names": _FEDERATION,
    "prevent_media_downloads_from": _MEDIA,
    "proxy": "outgoing requests do not go through a proxy yet",
    "startup_netburst": _FEDERATION,
    "startup_netburst_keep": _FEDERATION,
    "dns_cache_entries": _DNS,
    "dns_min_ttl": _DNS,
    "dns_min_ttl_nxdomain": _DNS,
    "dns_timeout": _DNS,
    "dns_attempts": _DNS,
    "dns_tcp_fallback": _DNS,
    "query_all_nameservers": _DNS,
    "query_over_tcp_only": _DNS,
    "ip_lookup_strategy": _DNS,
    "request_total_timeout": _HTTP_POOL,
    "pusher_idle_timeout": (
        "push gateways share the outgoing connection pool, whose idle time is request_idle_timeout"
    ),
    "rc_media_per_second": _MEDIA,
    "rc_media_burst_count": _MEDIA,
    "well_known_conn_timeout": _FEDERATION,
    "well_known_timeout": _FEDERATION,
    "federation_timeout": _FEDERATION,
    "federation_idle_timeout": _FEDERATION,
    "federation_idle_per_host": _FEDERATION,
    "sender_timeout": _FEDERATION,
    "sender_idle_timeout": _FEDERATION,
    "sender_retry_backoff_limit": _FEDERATION,
    "appservice_timeout": "application services are not implemented yet",
    "appservice_idle_timeout": "application services are not implemented yet",
    "allow_incoming_presence": _FEDERATION,
    "allow_outgoing_presence": _FEDERATION,
    "presence_timeout_remote_users": _FEDERATION,
    "allow_incoming_read_receipts": _FEDERATION,
    "allow_outgoing_read_receipts": _FEDERATION,
    "allow_incoming_typing": _FEDERATION,
    "allow_outgoing_typing": _FEDERATION,
    "typing_federation_timeout_s": _FEDERATION,
    "turn_uris": _TURN,
    "turn_secret": _TURN,
    "turn_username": _TURN,
    "turn_password": _TURN,
    "turn_ttl": _TURN,
    "turn_allow_guests": _TURN,
    "media": _MEDIA,
    "url_preview_domain_contains_allowlist": _PREVIEW,
    "url_preview_domain_explicit_allowlist": _PREVIEW,
    "url_preview_url_contains_allowlist": _PREVIEW,
    "url_preview_domain_explicit_denylist": _PREVIEW,
    "url_preview_max_spider_size": _PREVIEW,
    "url_preview_check_root_domain": _PREVIEW,
}


def _not_effective(notices: list[str], key: str) -> None:
    """Note once that C{key} (of L{NOT_EFFECTIVE_YET}) was set but does nothing yet."""
    line = f"global.{key} is set but has no effect yet: {NOT_EFFECTIVE_YET[key]}"
    if line not in notices:
        notices.append(line)


#: conduwuit's spellings of keys that have another name here.
_ALIASES: dict[str, str] = {_LONG_INSECURE_TLS_KEY: "allow_invalid_tls_certificates"}

#: Every dotted key L{load_config} recognises, implemented or not (for docs and tests).
KNOWN_KEYS: frozenset[str] = frozenset(
    [*_FIELDS, *_NO_EFFECT, *_ALIASES]
    + [f"{t}.{k}" for t, keys in _TABLES.items() for k in keys]
    + list(_TABLES)
)
#: Keys accepted only for compatibility (plus any key starting with these prefixes).
NO_EFFECT_KEYS: frozenset[str] = frozenset(_NO_EFFECT)
NO_EFFECT_PREFIXES: tuple[str, ...] = tuple(_NO_EFFECT_PREFIXES)


def is_known_key(dotted: str) -> bool:
    """Whether C{dotted} (relative to C{[global]}, e.g. C{well_known.client}) is recognised."""
    return dotted in KNOWN_KEYS or (
        "." not in dotted and dotted.startswith(NO_EFFECT_PREFIXES)
    )


# ---------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------


@dataclass
class _EnvValue:
    """A value from C{CONDUIT_*}: the TOML-parsed value, and the text as given."""

    var: str
    raw: str
    parsed: Any


def _parse_env_value(raw: str) -> Any:
    """Parse C{raw} as a TOML value (C{8008}, C{[1, 2]}, C{true}); else it is a string."""
    try:
        doc = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return raw
    return doc["v"] if len(doc) == 1 and "v" in doc else raw


def _env_key_path(var: str) -> list[str] | None:
    """C{CONDUIT_WELL_KNOWN__CLIENT} -> C{["well_known", "client"]}; C{None} to skip."""
    if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_PATH:
        return None
    parts = var[len(ENV_PREFIX) :].lower().split("__")
    if not all(parts):
        return None
    if len(parts) == 1 and not _is_known_top(parts[0]):
        # Convenience: CONDUIT_WELL_KNOWN_CLIENT means well_known.client.
        for table, keys in _TABLES.items():
            rest = parts[0].removeprefix(table + "_")
            if rest != parts[0] and rest in keys:
                return [table, rest]
    return parts


def _apply_env(table: dict[str, Any], environ: Mapping[str, str]) -> None:
    names = [n for n in environ if _env_key_path(n) is not None]
    # Whole tables first, so CONDUIT_X then CONDUIT_X__Y merges rather than clobbers.
    for var in sorted(names, key=lambda n: (n.count("__"), n)):
        parts = _env_key_path(var)
        assert parts is not None
        raw = environ[var]
        _set_path(table, parts, _EnvValue(var, raw, _parse_env_value(raw)), var)


def _set_path(root: dict[str, Any], parts: list[str], value: Any, origin: str) -> None:
    node = root
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if isinstance(nxt, _EnvValue) and isinstance(nxt.parsed, dict):
            nxt = dict(nxt.parsed)
        if nxt is None:
            nxt = {}
        if not isinstance(nxt, dict):
            where = "global." + ".".join(parts[: i + 1])
            raise ConfigError(f"{where}: is not a table, so {origin} cannot set a key inside it")
        node[part] = nxt
        node = nxt
    node[parts[-1]] = value


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_config(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """
    Read C{path} (else C{$CONDUIT_CONFIG}, else built-in defaults), apply C{CONDUIT_*}
    from C{environ} (default C{os.environ}) and then C{overrides} (dotted keys such as
    C{"server_name"}, C{"port"} or C{"well_known.client"}), and validate the result.

    @raise ConfigError: the file cannot be read or parsed, or a value is wrong.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if path is None:
        path = env.get(ENV_CONFIG_PATH) or None
    notices: list[str] = []
    table = _read_file(path, notices) if path is not None else {}
    _apply_env(table, env)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(table, key.split("."), value, f"the command line option for {key}")
    config = _build(table, notices)
    config.notices = notices
    return config


def _read_file(path: str, notices: list[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {path!r} cannot be read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path!r} is not UTF-8 text") from None
    glob = doc.pop("global", {})
    if not isinstance(glob, dict):
        raise ConfigError(f"{path}: 'global' must be the [global] table")
    for key in doc:
        notices.append(
            f"{key}: unknown key outside the [global] table, ignored "
            f"(conduit.toml keys belong under [global])"
        )
    return glob


def _check(validator: Validator, path: str, value: Any) -> Any:
    """Run C{validator}, unwrapping environment values and naming their variable on error."""
    origin = None
    if isinstance(value, _EnvValue):
        origin = value.var
        if getattr(validator, "wants_str", False) and not isinstance(value.parsed, str):
            value = value.raw
        else:
            value = value.parsed
    try:
        return validator(path, value)
    except ConfigError as e:
        if origin is not None:
            raise ConfigError(f"{e} (set by the environment variable {origin})") from None
        raise


def _unwrap(value: Any) -> Any:
    return value.parsed if isinstance(value, _EnvValue) else value


def _table(path: str, value: Any) -> dict[str, Any]:
    return _check(_v_table, path, value)


def _v_table(path: str, v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    raise _bad(path, "a table", v)


def _is_known_top(key: str) -> bool:
    return (
        key in _FIELDS
        or key in _TABLES
        or key in _NO_EFFECT
        or key in _ALIASES
        or any(key.startswith(p) for p in _NO_EFFECT_PREFIXES)
    )


def _unknown(config: Config, notices: list[str], dotted: str, value: Any = None) -> None:
    config.unknown_keys.append(dotted)
    origin = f", set by the environment variable {value.var}" if isinstance(value, _EnvValue) else ""
    notices.append(f"{dotted}: unknown key, ignored (check its spelling{origin})")


def _build(g: dict[str, Any], notices: list[str]) -> Config:
    config = Config()
    for alias, target in _ALIASES.items():
        if alias in g:
            g.setdefault(target, g.pop(alias))
    for key, value in g.items():
        dotted = f"global.{key}"
        if key in _FIELDS:
            setattr(config, key, _check(_FIELDS[key], dotted, value))
            if key in NOT_EFFECTIVE_YET:
                _not_effective(notices, key)
        elif key in _TABLES:
            continue
        elif key in _NO_EFFECT or any(key.startswith(p) for p in _NO_EFFECT_PREFIXES):
            reason = _NO_EFFECT.get(key) or next(
                r for p, r in _NO_EFFECT_PREFIXES.items() if key.startswith(p)
            )
            config.extra[key] = _unwrap(value)
            notices.append(f"{dotted}: accepted but has no effect in conduit-tw ({reason})")
        else:
            _unknown(config, notices, dotted, value)

    config.log_level, config.log_targets = parse_log_filter(config.log, "global.log")
    _build_tables(config, g, notices)
    _post_checks(config, g, notices)
    return config


def _build_tables(config: Config, g: dict[str, Any], notices: list[str]) -> None:
    if "tls" in g:
        t = _table("global.tls", g["tls"])
        for k in t:
            if k not in _TABLES["tls"]:
                _unknown(config, notices, f"global.tls.{k}")
        for required in ("certs", "key"):
            if required not in t:
                raise ConfigError(
                    f"global.tls.{required}: missing; [global.tls] needs both certs "
                    f"(PEM certificate chain) and key (PEM private key)"
                )
        config.tls = TlsConfig(
            certs=_check(_v_nonempty_str, "global.tls.certs", t["certs"]),
            key=_check(_v_nonempty_str, "global.tls.key", t["key"]),
            dual_protocol=_check(_v_bool, "global.tls.dual_protocol", t.get("dual_protocol", False)),
        )
        if "dual_protocol" in t:
            _not_effective(notices, "tls.dual_protocol")

    if "well_known" in g:
        t = _table("global.well_known", g["well_known"])
        wk = config.well_known
        for k, v in t.items():
            p = f"global.well_known.{k}"
            if k == "client":
                wk.client = _check(_v_http_url, p, v)
            elif k == "server":
                wk.server = _check(_v_server_name, p, v)
            elif k in _TABLES["well_known"]:
                setattr(wk, k, _check(_v_opt_str, p, v))
            else:
                _unknown(config, notices, p, v)

    if "turn" in g:
        # Conduit's newer form; wins over the flat turn_* keys, as in Conduit.
        t = _table("global.turn", g["turn"])
        for k, v in t.items():
            if k in _TABLES["turn"]:
                setattr(config, f"turn_{k}", _check(_FIELDS[f"turn_{k}"], f"global.turn.{k}", v))
                _not_effective(notices, f"turn_{k}")
            else:
                _unknown(config, notices, f"global.turn.{k}")

    if "proxy" in g:
        config.proxy = _parse_proxy(g["proxy"])
        if config.proxy.mode != "none":
            _not_effective(notices, "proxy")

    config.media = _parse_media(g.get("media", {}), config, notices)
    if "media" in g:
        _not_effective(notices, "media")


def _parse_proxy(value: Any) -> ProxyConfig:
    origin_value = _unwrap(value)
    path = "global.proxy"
    expected = (
        '"none", a proxy URL, or a table with global = { url = "..." } or '
        '[[global.proxy.by_domain]] entries (url, include, exclude)'
    )
    if isinstance(origin_value, str):
        if origin_value.strip().lower() == "none":
            return ProxyConfig()
        return ProxyConfig(mode="global", url=_check(_v_proxy_url, path, value))
    if not isinstance(origin_value, dict) or len(origin_value) != 1:
        raise _bad(path, expected, origin_value)
    (kind, body), = origin_value.items()
    if kind == "global":
        body = _check(_v_table, f"{path}.global", body)
        if set(body) != {"url"}:
            raise _bad(f"{path}.global", "a table with only a url key", body)
        return ProxyConfig(mode="global", url=_check(_v_proxy_url, f"{path}.global.url", body["url"]))
    if kind == "by_domain":
        if not isinstance(body, list) or not body:
            raise _bad(f"{path}.by_domain", "a non-empty list of tables (url, include, exclude)", body)
        rules = []
        for i, entry in enumerate(body):
            p = f"{path}.by_domain[{i}]"
            entry = _check(_v_table, p, entry)
            extra = set(entry) - {"url", "include", "exclude"}
            if extra or "url" not in entry:
                raise _bad(p, "a table with url and optional include/exclude lists", entry)
            rules.append(
                ProxyRule(
                    url=_check(_v_proxy_url, f"{p}.url", entry["url"]),
                    include=_check(_v_str_list, f"{p}.include", entry.get("include", [])),
                    exclude=_check(_v_str_list, f"{p}.exclude", entry.get("exclude", [])),
                )
            )
        return ProxyConfig(mode="by_domain", rules=rules)
    raise _bad(path, expected, origin_value)


def _domain_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _parse_media(value: Any, config: Config, notices: list[str]) -> MediaConfig:
    t = _table("global.media", value)
    media = MediaConfig()
    backend = _check(_v_str, "global.media.backend", t.get("backend", "filesystem")).lower()
    if backend != "filesystem":
        raise ConfigError(
            f"global.media.backend: only \"filesystem\" is supported by conduit-tw, got "
            f"{backend!r} (media would otherwise be stored somewhere you did not ask for)"
        )
    for k, v in t.items():
        p = f"global.media.{k}"
        if k == "path":
            media.path = _check(_v_nonempty_str, p, v)
        elif k == "directory_structure":
            ds = _check(_v_table, p, v)
            if not ds:
                media.directory_structure = None
            else:
                for sub in ds:
                    if sub not in ("length", "depth"):
                        _unknown(config, notices, f"{p}.{sub}")
                length = _check(_v_int(1, 255), f"{p}.length", ds.get("length", 2))
                depth = _check(_v_int(1, 255), f"{p}.depth", ds.get("depth", 2))
                if length * depth >= 64:
                    raise ConfigError(
                        f"{p}: length x depth must be below 64 (the length of a SHA-256 "
                        f"hex digest), got {length} x {depth}"
                    )
                media.directory_structure = MediaDirectoryStructure(length, depth)
        elif k == "retention":
            media.retention = _parse_retention(p, v)
        elif k != "backend":
            _unknown(config, notices, p)
    if not media.path:
        media.path = os.path.join(config.database_path, "media")
    return media


def _parse_retention(path: str, value: Any) -> list[MediaRetention]:
    items = _check(_v_list(_v_table, "tables (scope, accessed, created, space)"), path, value)
    out: list[MediaRetention] = []
    seen: set[str | None] = set()
    for i, entry in enumerate(items):
        p = f"{path}[{i}]"
        r = MediaRetention()
        for k, v in entry.items():
            if k == "scope":
                if v not in ("remote", "local", "thumbnail"):
                    raise _bad(f"{p}.scope", '"remote", "local" or "thumbnail"', v)
                r.scope = v
            elif k in ("accessed", "created"):
                setattr(r, k, _parse_duration(f"{p}.{k}", v))
            elif k == "space":
                r.space = _parse_size(f"{p}.space", v)
            else:
                raise _bad(p, "a table with scope, accessed, created and space keys", entry)
        if r.scope in seen:
            raise ConfigError(f"{p}.scope: {r.scope or 'the default (no scope)'} is given twice")
        seen.add(r.scope)
        out.append(r)
    return out


_DURATION_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("nsec", "ns"), 1e-9),
    (("usec", "us"), 1e-6),
    (("msec", "ms"), 1e-3),
    (("seconds", "second", "sec", "secs", "s"), 1),
    (("minutes", "minute", "min", "mins", "m"), 60),
    (("hours", "hour", "hr", "hrs", "h"), 3600),
    (("days", "day", "d"), 86400),
    (("weeks", "week", "w"), 7 * 86400),
    (("months", "month", "M"), 30.44 * 86400),
    (("years", "year", "y"), 365.25 * 86400),
):
    for _n in _names:
        _DURATION_UNITS[_n] = _secs


def _parse_duration(path: str, v: Any) -> float:
    """Humantime durations (C{"30d"}, C{"1h 30m"}) or an integer number of seconds."""
    what = 'a duration such as "30d", "12h" or "1h 30m"'
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return float(v)
    if not isinstance(v, str) or not v.strip():
        raise _bad(path, what, v)
    total, pos, text = 0.0, 0, v.strip()
    for m in re.finditer(r"\s*(\d+)\s*([A-Za-z]+)\s*", text):
        if m.start() != pos:
            raise _bad(path, what, v)
        unit = m.group(2) if m.group(2) in _DURATION_UNITS else m.group(2).lower()
        if unit not in _DURATION_UNITS:
            raise _bad(path, what, v)
        total += int(m.group(1)) * _DURATION_UNITS[unit]
        pos = m.end()
    if pos != len(text):
        raise _bad(path, what, v)
    return total


_SIZE_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_p] = _SIZE_UNITS[_p + "b"] = 1000**_i
    _SIZE_UNITS[_p + "i"] = _SIZE_UNITS[_p + "ib"] = 1024**_i


def _parse_size(path: str, v: Any) -> int:
    """Byte sizes such as C{"10GB"}, C{"512 MiB"} or an integer number of bytes."""
    what = 'a size such as "10GB" or "512MiB"'
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", v) if isinstance(v, str) else None
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise _bad(path, what, v)
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def _check_registration_token(config: Config, g: dict[str, Any]) -> None:
    """
    A registration token given as empty or whitespace (key, C{CONDUIT_*} or
    the content of C{registration_token_file}) is refused, never taken as
    "no token" (which would open registration to anyone).
    """
    fix = "set it to a long random secret, or remove it"
    if "registration_token" in g and not (config.registration_token or "").strip():
        raise ConfigError(f"global.registration_token: empty or only whitespace; {fix}")
    path = config.registration_token_file
    if config.registration_token is None and path:
        try:
            with open(path, encoding="utf-8") as f:
                content = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"global.registration_token_file: cannot read {path}: {e}") from None
        if not content.strip():
            raise ConfigError(
                f"global.registration_token_file: {path} is empty or only whitespace; "
                f"write a long random secret into it"
            )


def _post_checks(config: Config, g: dict[str, Any], notices: list[str]) -> None:
    if config.database_backend == "rocksdb":
        config.database_backend = "lmdb"
        notices.append(
            "global.database_backend: 'rocksdb' is taken to mean 'lmdb', the embedded "
            "key-value store conduit-tw has; an existing Conduit RocksDB database under "
            "database_path is not read"
        )

    if config.unix_socket_path is not None:
        given = [k for k in ("address", "port") if k in g]
        if given:
            notices.append(
                f"global.{'/'.join(given)}: ignored, because unix_socket_path is set "
                f"(the server listens only on {config.unix_socket_path})"
            )

    if config.allow_registration:
        _check_registration_token(config, g)
    if config.allow_registration and not (
        config.registration_token
        or config.registration_token_file
        or config.yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse
    ):
        raise ConfigError(
            "global.allow_registration: registration is enabled without a registration "
            "token, so anyone could create accounts here (open servers attract spam and "
            "abuse and get defederated). Add one of these two lines to the [global] table:\n"
            '    registration_token = "<a long random secret>"\n'
            f"    {OPEN_REGISTRATION_KEY} = true"
        )

    if config.typing_client_timeout_min_s > config.typing_client_timeout_max_s:
        raise ConfigError(
            f"global.typing_client_timeout_min_s: must not exceed typing_client_timeout_max_s "
            f"({config.typing_client_timeout_min_s} > {config.typing_client_timeout_max_s})"
        )

    if "new_user_displayname_suffix" not in g and config.enable_lightning_bolt:
        config.new_user_displayname_suffix = "\u26a1\ufe0f"

    if config.allow_invalid_tls_certificates:
        notices.append(
            "global.allow_invalid_tls_certificates: TLS certificates of other servers are "
            "NOT verified; use this on test networks only"
        )


# ---------------------------------------------------------------------------
# Server names and log filters
# ---------------------------------------------------------------------------

_DNS_NAME = re.compile(r"[A-Za-z0-9.-]{1,255}")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")


def is_valid_server_name(name: str) -> bool:
    """Whether C{name} matches the "Server Name" grammar of the spec's appendices."""
    host, port = name, None
    if name.startswith("["):
        end = name.find("]")
        if end == -1:
            return False
        host, rest = name[: end + 1], name[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
    elif ":" in name:
        host, port = name.rsplit(":", 1)
    if port is not None:
        if not (port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) <= 65535):
            return False
    if host.startswith("["):
        inner = host[1:-1]
        if not _IPV6_CHARS.fullmatch(inner):
            return False
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return False
        return True
    m = _IPV4.fullmatch(host)
    if m:
        return all(int(part) <= 255 for part in m.groups())
    return bool(_DNS_NAME.fullmatch(host))


from conduit_tw.logging import LEVELS as _LEVELS  # noqa: E402


def parse_log_filter(
    spec: str, path: str = "global.log"
) -> tuple[LogLevel, dict[str, LogLevel | None]]:
    """
    Map a tracing filter (C{"warn,state_res=warn,_=off"}) to Twisted levels.

    Returns the default level (the last bare level; C{info} if there is none; C{off}
    maps to C{critical}) and the per-target levels (C{None} for C{off}; a bare target
    is refused, so that a misspelt level stops start-up instead of passing silently).
    """
    default: LogLevel | None = LogLevel.info
    targets: dict[str, LogLevel | None] = {}
    for directive in spec.split(","):
        directive = directive.strip()
        if not directive:
            continue
        if "=" in directive:
            target, _, level_text = directive.rpartition("=")
            level_name = level_text.strip().lower()
            if level_name not in _LEVELS or not target.strip():
                raise ConfigError(
                    f"{path}: cannot read the directive {directive!r}; expected target=level "
                    f"with level one of trace, debug, info, warn, error, critical, off"
                )
            targets[target.strip()] = _LEVELS[level_name]
        elif directive.lower() in _LEVELS:
            default = _LEVELS[directive.lower()]
        else:
            raise ConfigError(
                f"{path}: cannot read the directive {directive!r}; expected a level (trace, "
                f"debug, info, warn, error, critical, off) or target=level"
            )
    return (LogLevel.critical if default is None else default), targets
