"""
Room server ACLs (client-server-api "Server Access Control Lists (ACLs)
for rooms", the C{m.room.server_acl} event; server-server-api "Server
Access Control Lists (ACLs)"): is a server allowed to take part in a room?

Pure: the caller reads the room's current C{m.room.server_acl} content.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from conduit_tw.handlers.push_rules import glob_matcher


def _host(server_name: str) -> str:
    """The server name without its port ("Port numbers are not supported")."""
    if server_name.startswith("["):
        return server_name[: server_name.find("]") + 1] or server_name
    host, sep, port = server_name.rpartition(":")
    return host if sep and port.isdigit() else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


def _globs(content: dict[str, Any], key: str) -> list[str]:
    value = content.get(key)
    return [g for g in value if isinstance(g, str)] if isinstance(value, list) else []


def server_allowed(server_name: str, acl: dict[str, Any] | None) -> bool:
    """
    Whether the ACL content C{acl} (None: the room has none) lets
    C{server_name} in: an IP literal is refused unless
    C{allow_ip_literals} (default true); then a C{deny} match refuses, an
    C{allow} match admits, and anything else is refused.
    """
    if acl is None:
        return True
    host = _host(server_name)
    if acl.get("allow_ip_literals", True) is False and _is_ip_literal(host):
        return False
    if any(glob_matcher(g)(host) for g in _globs(acl, "deny")):
        return False
    return any(glob_matcher(g)(host) for g in _globs(acl, "allow"))
