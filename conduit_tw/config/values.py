"""
Value types of configuration keys: each checks a raw TOML value and returns the
typed value, or raises L{ConfigError} naming the key and what was expected.

A L{Type} also carries its short name for the key tables of docs/configuration.md
and whether C{CONDUIT_*} values reach it as the text written (string keys).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS


class ConfigError(Exception):
    """The configuration is unusable; the message names the key and what is expected."""


def bad(path: str, expected: str, value: object) -> ConfigError:
    """The error for C{value} at C{path} (C{global.port}), which should be C{expected}."""
    return ConfigError(f"{path}: expected {expected}, got {_show(value)}")


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Type:
    """How a key's value is checked: C{check(dotted_path, raw) -> typed value}."""

    #: Short name for the docs' "type" column, e.g. C{integer ≥ 1}.
    name: str
    check: Callable[[str, Any], Any]
    #: C{CONDUIT_X=1234} gives this key the text C{"1234"}, not the integer.
    env_verbatim: bool = False
    #: Keys inside a table-shaped value (C{proxy.global}), known for env and docs.
    table_keys: tuple[str, ...] = ()

    def __call__(self, path: str, value: Any) -> Any:
        return self.check(path, value)


def _expect(name: str, what: str, ok: Callable[[Any], bool], env_verbatim: bool = False) -> Type:
    """A type that accepts the raw values C{ok} approves, unchanged."""

    def check(path: str, v: Any) -> Any:
        if ok(v):
            return v
        raise bad(path, what, v)

    return Type(name, check, env_verbatim)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


BOOL = _expect("boolean", "true or false", lambda v: isinstance(v, bool))
STR = _expect("string", "a string", lambda v: isinstance(v, str), env_verbatim=True)
NONEMPTY_STR = _expect(
    "string", "a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()), True
)


def _opt_str(path: str, v: Any) -> str | None:
    if isinstance(v, str):
        return v or None
    raise bad(path, "a string", v)


#: A string where C{""} means unset.
OPT_STR = Type("string", _opt_str, env_verbatim=True)


def integer(lo: int | None = None, hi: int | None = None) -> Type:
    """An integer, optionally within C{lo}..C{hi} (inclusive)."""
    if lo is not None and hi is not None:
        what, name = f"an integer {lo}-{hi}", f"integer {lo}–{hi}"
    elif lo is not None:
        what, name = f"an integer >= {lo}", f"integer ≥ {lo}"
    else:
        what, name = "an integer", "integer"

    def ok(v: Any) -> bool:
        return _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)

    return _expect(name, what, ok)


NONNEG = integer(0)
POSITIVE = integer(1)
U16 = integer(1, 65535)


def number(lo: float = 0.0, strictly_above: bool = False) -> Type:
    """A finite number C{>= lo} (or C{> lo}), as a float."""
    op = ">" if strictly_above else ">="
    what = f"a number {op} {lo:g}"

    def check(path: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(path, what, v)
        if v != v or v in (float("inf"), float("-inf")):
            raise bad(path, what, v)
        if v < lo or (strictly_above and v == lo):
            raise bad(path, what, v)
        return float(v)

    return Type(f"number {'>' if strictly_above else '≥'} {lo:g}", check)


def list_of(item: Type, what: str, name: str | None = None) -> Type:
    """A TOML array whose every element is an C{item}; errors name the index."""

    def check(path: str, v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise bad(path, f"a list of {what}", v)
        return [item(f"{path}[{i}]", x) for i, x in enumerate(v)]

    return Type(name or f"list of {what}", check)


STR_LIST = list_of(STR, "strings")


def choice(*choices: str) -> Type:
    """One of C{choices}, compared case-insensitively, returned in lower case."""

    def check(path: str, v: Any) -> str:
        if isinstance(v, str) and v.strip().lower() in choices:
            return v.strip().lower()
        raise bad(path, "one of " + ", ".join(repr(c) for c in choices), v)

    return Type(" / ".join(f'`"{c}"`' for c in choices), check)


def table_check(path: str, v: Any) -> dict[str, Any]:
    """A TOML table (a dict), unchanged."""
    if isinstance(v, dict):
        return v
    raise bad(path, "a table", v)


TABLE = Type("table", table_check)

SERVER_NAME = _expect(
    "server name",
    "a server name such as example.com or example.com:8448",
    lambda v: isinstance(v, str) and is_valid_server_name(v),
)


def _network(path: str, v: Any) -> str:
    if isinstance(v, str):
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            pass
    raise bad(path, "an IP address or CIDR range such as 10.0.0.0/8", v)


NETWORK = Type("CIDR range", _network)


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _ports(path: str, v: Any) -> list[int]:
    what = "an integer 1-65535 or a list of them"
    values = v if isinstance(v, list) else [v]
    if not values:
        raise bad(path, what, v)
    for p in values:
        if not (_is_int(p) and 1 <= p <= 65535):
            raise bad(path, what, v)
    return _dedupe(values)


def _addresses(path: str, v: Any) -> list[str]:
    what = 'an IP address such as "127.0.0.1" or "::" or a list of them'
    values = v if isinstance(v, list) else [v]
    if not values:
        raise bad(path, what, v)
    out = []
    for a in values:
        try:
            out.append(str(ipaddress.ip_address(a.strip())))
        except (AttributeError, ValueError):
            raise bad(path, what, v) from None
    return _dedupe(out)


PORTS = Type("port or list of ports", _ports)
ADDRESSES = Type("IP address or list", _addresses)


def _perms(path: str, v: Any) -> int:
    """Unix permissions as octal digits (C{660}, C{"660"}, C{"0o660"}) -> C{660}."""
    what = "file permissions as octal digits such as 660"
    if isinstance(v, bool):
        raise bad(path, what, v)
    text = str(v).strip() if isinstance(v, (int, str)) else ""
    if text.lower().startswith("0o"):
        text = text[2:]
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        raise bad(path, what, v)
    return int(text)


PERMS = Type("octal permissions", _perms)


def _room_version(path: str, v: Any) -> str:
    if _is_int(v):
        v = str(v)
    if isinstance(v, str) and v in KNOWN_ROOM_VERSIONS:
        return v
    raise bad(path, f"a room version, one of {', '.join(KNOWN_ROOM_VERSIONS)}", v)


ROOM_VERSION = Type("room version", _room_version)


def _url_with(schemes: tuple[str, ...], name: str, what: str) -> Type:
    def ok(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        parts = urlsplit(v)
        return parts.scheme in schemes and bool(parts.hostname)

    return _expect(name, what, ok)


HTTP_URL = _url_with(("http", "https"), "URL", 'an http(s) URL such as "https://matrix.example.com"')
PROXY_URL = _url_with(
    ("http", "https", "socks5", "socks5h"), "URL", 'a proxy URL such as "socks5h://localhost:9050"'
)
TURN_URI = _expect(
    "TURN URI",
    'a TURN URI such as "turn:turn.example.com?transport=udp"',
    lambda v: isinstance(v, str)
    and ":" in v
    and v.split(":", 1)[0] in ("turn", "turns", "stun", "stuns"),
)
ROOM_REF = _expect(
    "room",
    'a room ID ("!...") or alias ("#...:server")',
    lambda v: isinstance(v, str) and len(v) > 1 and v[0] in "!#",
)


def _backend(path: str, v: Any) -> str:
    if isinstance(v, str) and v.strip():
        name = v.strip()
        return name.lower() if name.lower() in ("sqlite", "lmdb", "rocksdb", "postgresql") else name
    raise bad(path, 'a storage backend name such as "sqlite" or "lmdb"', v)


BACKEND = Type("backend name", _backend)


# ---------------------------------------------------------------------------
# Server names (the spec's appendices, "Server Name")
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
