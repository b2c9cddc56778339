"""
C{CONDUIT_*} environment variables: C{CONDUIT_<KEY>} sets C{global.<key>}, C{__}
separates nested tables. Values are TOML when they parse as TOML, else strings; a key
whose type is L{values.Type.env_verbatim} gets the text as written.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conduit_tw.config.values import ConfigError, Type

ENV_PREFIX = "CONDUIT_"
ENV_CONFIG_PATH = "CONDUIT_CONFIG"


@dataclass
class EnvValue:
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


def env_key_path(
    var: str, is_known_top: Callable[[str], bool], tables: Mapping[str, frozenset[str]]
) -> list[str] | None:
    """C{CONDUIT_WELL_KNOWN__CLIENT} -> C{["well_known", "client"]}; C{None} to skip."""
    if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_PATH:
        return None
    parts = var[len(ENV_PREFIX) :].lower().split("__")
    if not all(parts):
        return None
    if len(parts) == 1 and not is_known_top(parts[0]):
        # Convenience: CONDUIT_WELL_KNOWN_CLIENT means well_known.client.
        for name, keys in tables.items():
            rest = parts[0].removeprefix(name + "_")
            if rest != parts[0] and rest in keys:
                return [name, rest]
    return parts


def apply_env(
    table: dict[str, Any],
    environ: Mapping[str, str],
    is_known_top: Callable[[str], bool],
    tables: Mapping[str, frozenset[str]],
) -> None:
    """Set the keys named by C{CONDUIT_*} variables of C{environ} in C{table} (C{[global]})."""
    paths = {n: env_key_path(n, is_known_top, tables) for n in environ}
    # Whole tables first, so CONDUIT_X then CONDUIT_X__Y merges rather than clobbers.
    for var in sorted((n for n, p in paths.items() if p), key=lambda n: (n.count("__"), n)):
        raw = environ[var]
        set_path(table, paths[var] or [], EnvValue(var, raw, _parse_env_value(raw)), var)


def set_path(root: dict[str, Any], parts: list[str], value: Any, origin: str) -> None:
    """Set C{root[parts[0]][parts[1]]...} to C{value}, making tables as needed."""
    node = root
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if isinstance(nxt, EnvValue) and isinstance(nxt.parsed, dict):
            nxt = dict(nxt.parsed)
        if nxt is None:
            nxt = {}
        if not isinstance(nxt, dict):
            where = "global." + ".".join(parts[: i + 1])
            raise ConfigError(f"{where}: is not a table, so {origin} cannot set a key inside it")
        node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def check(type_: Type, path: str, value: Any) -> Any:
    """Run C{type_}'s check, unwrapping environment values and naming their variable on error."""
    origin = None
    if isinstance(value, EnvValue):
        origin = value.var
        if type_.env_verbatim and not isinstance(value.parsed, str):
            value = value.raw
        else:
            value = value.parsed
    try:
        return type_(path, value)
    except ConfigError as e:
        if origin is not None:
            raise ConfigError(f"{e} (set by the environment variable {origin})") from None
        raise


def unwrap(value: Any) -> Any:
    """The value itself, for a value that may have come from the environment."""
    return value.parsed if isinstance(value, EnvValue) else value
