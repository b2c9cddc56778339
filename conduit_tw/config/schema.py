"""
L{Config}, made of every section's keys, and the lookup tables derived from them:
L{NOT_EFFECTIVE_YET}, L{KNOWN_KEYS}, the aliases and the nested tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conduit_tw.config import federation, media, presence, registration, server
from conduit_tw.config.compat import NO_EFFECT, NO_EFFECT_PREFIXES, no_effect_reason
from conduit_tw.config.declare import Key, declared
from conduit_tw.config.federation import FederationKeys
from conduit_tw.config.limits import RateLimitKeys
from conduit_tw.config.media import MediaKeys, UrlPreviewKeys
from conduit_tw.config.network import DnsKeys, RequestKeys
from conduit_tw.config.presence import PresenceKeys
from conduit_tw.config.registration import OPEN_REGISTRATION_KEY, RegistrationKeys
from conduit_tw.config.rooms import RoomKeys
from conduit_tw.config.server import ListenKeys, LoggingKeys, StorageKeys
from conduit_tw.config.voip import TurnKeys


# Dataclass fields come from the bases last to first: StorageKeys' keys come first.
@dataclass
class Config(
    LoggingKeys,
    RateLimitKeys,
    UrlPreviewKeys,
    MediaKeys,
    TurnKeys,
    PresenceKeys,
    RequestKeys,
    DnsKeys,
    FederationKeys,
    RoomKeys,
    RegistrationKeys,
    ListenKeys,
    StorageKeys,
):
    """
    The validated C{[global]} table. Attribute names are the TOML key names.

    Built by L{load_config}; C{Config()} alone gives the built-in defaults (without
    the derived values L{load_config} fills in, such as C{media.path}).
    """

    #: Messages for the operator (notices and warnings), to be logged at start-up.
    notices: list[str] = field(default_factory=list)
    #: Dotted names (C{global.foo}) of keys that were not recognised.
    unknown_keys: list[str] = field(default_factory=list)
    #: Keys accepted for compatibility that have no effect here, with their values.
    extra: dict[str, object] = field(default_factory=dict)


assert OPEN_REGISTRATION_KEY in {f.name for f in declared(Config)}

#: Checks and derived values applied after every key is parsed, in this order:
#: C{(config, global_table, notices) -> None}; they raise ConfigError to refuse.
AFTER_LOAD: tuple[Callable[[Any, dict[str, Any], list[str]], None], ...] = (
    server.after_load,
    registration.after_load,
    presence.after_load,
    federation.after_load,
    media.after_load,
)

#: Every top-level key, in declaration (and documentation) order.
TOP: dict[str, Key] = {k.name: k for k in declared(Config)}
#: Other top-level spellings (conduwuit's) -> the key they set.
TOP_ALIASES: dict[str, str] = {a: k.name for k in TOP.values() for a in k.aliases if "." not in a}
#: Tables whose keys set top-level keys (C{[global.turn]}): table -> {key -> top-level key}.
ALIAS_TABLES: dict[str, dict[str, str]] = {}
for _k in TOP.values():
    for _alias in _k.aliases:
        if "." in _alias:
            _table, _sub = _alias.split(".", 1)
            ALIAS_TABLES.setdefault(_table, {})[_sub] = _k.name


def _table_keys(k: Key) -> frozenset[str]:
    if k.nested is not None:
        return frozenset(s.name for s in declared(k.nested))
    return frozenset(k.type.table_keys if k.type else ())


#: Table-shaped keys -> the key names inside them (for C{CONDUIT_*} and L{KNOWN_KEYS}).
TABLES: dict[str, frozenset[str]] = {
    **{k.name: _table_keys(k) for k in TOP.values() if k.is_table},
    **{t: frozenset(m) for t, m in ALIAS_TABLES.items()},
}


def plain(why: str) -> str:
    """A reason as the start-up notice says it (the docs' Markdown code marks removed)."""
    return why.replace("`", "")


def _not_effective() -> dict[str, str]:
    out = {}
    for k in TOP.values():
        if k.not_effective:
            out[k.name] = plain(k.not_effective)
        for sub in declared(k.nested) if k.nested else ():
            if sub.not_effective:
                out[f"{k.name}.{sub.name}"] = plain(sub.not_effective)
    return out


#: Keys that are validated and kept in L{Config} but that nothing in the server reads
#: yet (key -> why), derived from C{not_effective=} of the declarations. Setting one
#: logs one notice. Dotted keys name a key inside a table (C{tls.dual_protocol});
#: C{media} is the whole table.
NOT_EFFECTIVE_YET: dict[str, str] = _not_effective()

#: Every dotted key L{load_config} recognises, implemented or not (for docs and tests).
KNOWN_KEYS: frozenset[str] = frozenset(
    [*TOP, *NO_EFFECT, *TOP_ALIASES, *TABLES]
    + [f"{t}.{k}" for t, keys in TABLES.items() for k in keys]
)
#: Keys accepted only for compatibility (plus any key starting with these prefixes).
NO_EFFECT_KEYS: frozenset[str] = frozenset(NO_EFFECT)
NO_EFFECT_PREFIXES_TUPLE: tuple[str, ...] = tuple(NO_EFFECT_PREFIXES)


def is_known_top(key: str) -> bool:
    """Whether C{key} names something at the top of C{[global]}."""
    return key in TOP or key in TABLES or key in TOP_ALIASES or no_effect_reason(key) is not None


def is_known_key(dotted: str) -> bool:
    """Whether C{dotted} (relative to C{[global]}, e.g. C{well_known.client}) is recognised."""
    return dotted in KNOWN_KEYS or (
        "." not in dotted and dotted.startswith(NO_EFFECT_PREFIXES_TUPLE)
    )
