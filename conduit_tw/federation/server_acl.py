"""
Server ACLs (client-server-api "Server Access Control Lists (ACLs) for
rooms", the C{m.room.server_acl} event schema; server-server-api "Server
Access Control Lists (ACLs)"): may a server take part in a room?

The rules, in order: no ACL event -> allow; an IP literal when
C{allow_ip_literals} is C{false} -> deny; a C{deny} match -> deny; an
C{allow} match -> allow; otherwise deny. The server name's port is not
considered; patterns are globs (appendices "Glob-style matching": C{*} any
run, C{?} one character). Matching ignores case, as DNS names do.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any, Mapping

SERVER_ACL = "m.room.server_acl"


def host_of(server_name: str) -> str:
    """The server name without its port (C{[v6]} literals keep their brackets)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def is_ip_literal(host: str) -> bool:
    """Whether a host (no port) is an IPv4 or bracketed IPv6 literal."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _matches(host: str, patterns: Any) -> bool:
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and _glob(p).fullmatch(host) for p in patterns)


def server_allowed(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """
    Whether C{server_name} passes the ACL whose content is C{acl_content}
    (None: the room has no ACL event).
    """
    if acl_content is None:
        return True
    host = host_of(server_name)
    allow_ip = acl_content.get("allow_ip_literals", True)
    if not isinstance(allow_ip, bool):
        allow_ip = True
    if not allow_ip and is_ip_literal(host):
        return False
    if _matches(host, acl_content.get("deny")):
        return False
    return _matches(host, acl_content.get("allow"))
