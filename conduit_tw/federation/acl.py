"""
Room server ACLs: whether a server may take part in a room, from the
content of the room's C{m.room.server_acl} state event (client-server-api
"Server Access Control Lists (ACLs) for rooms", the event's schema;
server-server-api "Server Access Control Lists (ACLs)" lists the requests
that must be checked and says a denied server gets 403 M_FORBIDDEN).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.push_rules import glob_matcher


SERVER_ACL = "m.room.server_acl"


def host_of(server_name: str) -> str:
    """
    A server name without its port: C{evil.com:1234} -> C{evil.com},
    C{[::1]:8448} -> C{[::1]} (ACLs never consider ports).
    """
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    host, _, _ = server_name.partition(":")
    return host


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


def _patterns(content: Mapping[str, Any], key: str) -> list[str]:
    value = content.get(key)
    if not isinstance(value, list):
        return []
    return [p for p in value if isinstance(p, str)]


def is_server_allowed(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """
    The event schema's algorithm, in order:

      1. no C{m.room.server_acl} event (C{acl_content} is C{None}): allow;
      2. an IP literal when C{allow_ip_literals} is C{false}: deny
         (missing or not a boolean means C{true});
      3. a match in C{deny}: deny;
      4. a match in C{allow}: allow (a missing C{allow} is empty);
      5. otherwise deny.

    Globs (C{*}, C{?}) are case-insensitive and match the whole name
    without its port (appendices "Glob-style matching"); entries that are
    not strings are ignored.
    """
    if acl_content is None:
        return True
    if not isinstance(acl_content, Mapping):
        acl_content = {}
    host = host_of(server_name)
    if acl_content.get("allow_ip_literals") is False and is_ip_literal(host):
        return False
    if any(glob_matcher(p)(host) for p in _patterns(acl_content, "deny")):
        return False
    return any(glob_matcher(p)(host) for p in _patterns(acl_content, "allow"))


def check_server_acl(origin: str, acl_content: Mapping[str, Any] | None) -> None:
    """
    Refuse a room-scoped request from a server the room's ACL denies.

    @param acl_content: the room's current C{m.room.server_acl} content,
        C{None} when the room has none.
    @raise MatrixError: 403 M_FORBIDDEN.
    """
    if not is_server_allowed(origin, acl_content):
        raise MatrixError(403, Codes.FORBIDDEN, f"Server {host_of(origin)} is denied by the room's ACL")
