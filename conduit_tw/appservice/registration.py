"""
Application service registrations (application-service-api
"Registration"): the standard YAML document, parsed and validated.

The keys are the spec's: C{id}, C{url} (null: the appservice receives no
transactions), C{as_token}, C{hs_token}, C{sender_localpart},
C{namespaces} (C{users}, C{aliases}, C{rooms}: lists of C{{exclusive,
regex}}), C{rate_limited} (default true), C{protocols}, and MSC2409's
ephemeral opt-in under its stable and unstable names
(C{receive_ephemeral}, C{push_ephemeral},
C{de.sorunome.msc2409.push_ephemeral}).

Namespace regexes are matched from the start of the ID (Python's
C{re.match}, as other homeservers do), so C{"@_irc_.*"} covers every
C{@_irc_} user whatever the server name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

#: The localpart grammar (appendices "User Identifiers").
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
_EPHEMERAL_KEYS = ("receive_ephemeral", "push_ephemeral", "de.sorunome.msc2409.push_ephemeral")
NAMESPACE_KINDS = ("users", "aliases", "rooms")


class RegistrationError(ValueError):
    """A registration document is not acceptable; the message says why."""


@dataclass(frozen=True)
class Namespace:
    """One namespace entry: a regex and whether it is exclusive."""

    regex: "re.Pattern[str]"
    exclusive: bool

    def matches(self, value: str) -> bool:
        """Whether C{value} (a user ID, alias or room ID) is in this namespace."""
        return self.regex.match(value) is not None


@dataclass(frozen=True)
class Registration:
    """A validated registration. C{yaml_text} is the document as given."""

    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender_localpart: str
    sender: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    yaml_text: str = field(default="", repr=False)

    def is_user_in_namespace(self, user_id: str, exclusive_only: bool = False) -> bool:
        """Whether C{user_id} is in a user namespace (or is the sender)."""
        if user_id == self.sender and not exclusive_only:
            return True
        return _in(self.users, user_id, exclusive_only)

    def is_alias_in_namespace(self, alias: str, exclusive_only: bool = False) -> bool:
        """Whether C{alias} is in an alias namespace."""
        return _in(self.aliases, alias, exclusive_only)

    def is_room_in_namespace(self, room_id: str, exclusive_only: bool = False) -> bool:
        """Whether C{room_id} is in a room namespace."""
        return _in(self.rooms, room_id, exclusive_only)

    def summary(self) -> dict[str, Any]:
        """A short description (for listings), without the tokens."""
        return {
            "id": self.id,
            "url": self.url,
            "sender": self.sender,
            "users": [n.regex.pattern for n in self.users],
            "aliases": [n.regex.pattern for n in self.aliases],
            "rooms": [n.regex.pattern for n in self.rooms],
        }


def _in(namespaces: tuple[Namespace, ...], value: str, exclusive_only: bool) -> bool:
    return any(n.matches(value) for n in namespaces if n.exclusive or not exclusive_only)


def _string(doc: dict[str, Any], key: str) -> str:
    if key not in doc:
        raise RegistrationError(f"missing key '{key}'")
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise RegistrationError(f"'{key}' must be a non-empty string")
    return value


def _namespaces(doc: dict[str, Any], kind: str) -> tuple[Namespace, ...]:
    raw = doc.get(kind)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RegistrationError(f"'namespaces.{kind}' must be a list")
    out = []
    for i, entry in enumerate(raw):
        where = f"namespaces.{kind}[{i}]"
        if not isinstance(entry, dict):
            raise RegistrationError(f"'{where}' must be a mapping with 'regex' and 'exclusive'")
        regex = entry.get("regex")
        if not isinstance(regex, str) or not regex:
            raise RegistrationError(f"'{where}.regex' must be a non-empty string")
        exclusive = entry.get("exclusive", False)
        if not isinstance(exclusive, bool):
            raise RegistrationError(f"'{where}.exclusive' must be true or false")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise RegistrationError(f"'{where}.regex' is not a valid regular expression: {e}") from None
        out.append(Namespace(compiled, exclusive))
    return tuple(out)


def parse_registration(text: str, server_name: str) -> Registration:
    """
    Parse and check one registration document.

    @raise RegistrationError: with a message naming the offending key.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RegistrationError(f"not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise RegistrationError("the registration must be a YAML mapping")
    reg_id = _string(doc, "id")
    if "url" not in doc:
        raise RegistrationError("missing key 'url' (use null for an appservice without pushes)")
    url = doc["url"]
    if url is not None:
        if not isinstance(url, str) or not re.match(r"https?://[^/]+", url):
            raise RegistrationError("'url' must be an http(s) URL or null")
        url = url.rstrip("/")
    as_token = _string(doc, "as_token")
    hs_token = _string(doc, "hs_token")
    if as_token == hs_token:
        raise RegistrationError("'as_token' and 'hs_token' must differ")
    sender_localpart = _string(doc, "sender_localpart")
    if not _LOCALPART.fullmatch(sender_localpart):
        raise RegistrationError("'sender_localpart' is not a valid user localpart")
    if "namespaces" not in doc:
        raise RegistrationError("missing key 'namespaces'")
    namespaces = doc["namespaces"] or {}
    if not isinstance(namespaces, dict):
        raise RegistrationError("'namespaces' must be a mapping of users, aliases and rooms")
    unknown = set(namespaces) - set(NAMESPACE_KINDS)
    if unknown:
        raise RegistrationError(f"unknown namespace kind(s): {', '.join(sorted(map(str, unknown)))}")
    rate_limited = doc.get("rate_limited", True)
    if rate_limited is None:
        rate_limited = True
    if not isinstance(rate_limited, bool):
        raise RegistrationError("'rate_limited' must be true or false")
    protocols = doc.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and p for p in protocols):
        raise RegistrationError("'protocols' must be a list of strings")
    ephemeral = False
    for key in _EPHEMERAL_KEYS:
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise RegistrationError(f"'{key}' must be true or false")
        ephemeral = ephemeral or value
    return Registration(
        id=reg_id,
        url=url,
        as_token=as_token,
        hs_token=hs_token,
        sender_localpart=sender_localpart,
        sender=f"@{sender_localpart}:{server_name}",
        users=_namespaces(namespaces, "users"),
        aliases=_namespaces(namespaces, "aliases"),
        rooms=_namespaces(namespaces, "rooms"),
        rate_limited=rate_limited,
        protocols=tuple(protocols),
        receive_ephemeral=ephemeral,
        yaml_text=text,
    )
