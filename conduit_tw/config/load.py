"""
L{load_config}: read C{conduit.toml}, apply C{CONDUIT_*} and the command line, and
check every value against its declaration (see L{conduit_tw.config.declare}).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

from conduit_tw.config import values
from conduit_tw.config.compat import no_effect_reason
from conduit_tw.config.declare import Key, declared
from conduit_tw.config.env import ENV_CONFIG_PATH, EnvValue, apply_env, check, set_path, unwrap
from conduit_tw.config.schema import (
    AFTER_LOAD,
    ALIAS_TABLES,
    TABLES,
    TOP,
    TOP_ALIASES,
    Config,
    is_known_top,
    plain,
)
from conduit_tw.config.values import ConfigError


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
    apply_env(table, env, is_known_top, TABLES)
    for key, value in (overrides or {}).items():
        if value is not None:
            set_path(table, key.split("."), value, f"the command line option for {key}")
    config = _Builder(notices).build(table)
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


class _Builder:
    """One L{Config} from one C{[global]} table, collecting notices."""

    def __init__(self, notices: list[str]) -> None:
        self.notices = notices
        self.config = Config()

    def build(self, g: dict[str, Any]) -> Config:
        """Plain keys in the order given, then tables in declaration order, then checks."""
        config = self.config
        for alias, target in TOP_ALIASES.items():
            if alias in g:
                g.setdefault(target, g.pop(alias))
        for name, value in g.items():
            decl = TOP.get(name)
            reason = no_effect_reason(name)
            if decl is not None and not decl.is_table:
                self.set(decl, f"global.{name}", value)
            elif decl is not None or name in ALIAS_TABLES:
                continue
            elif reason is not None:
                config.extra[name] = unwrap(value)
                self.notices.append(
                    f"global.{name}: accepted but has no effect in conduit-tw ({reason})"
                )
            else:
                self.unknown(f"global.{name}", value)
        done: set[str] = set()
        for decl in TOP.values():
            if decl.is_table and decl.name in g:
                self.set(decl, f"global.{decl.name}", g[decl.name])
            for table in (a.split(".", 1)[0] for a in decl.aliases if "." in a):
                if table in g and table not in done:
                    done.add(table)
                    self.alias_table(table, g[table])
        for after in AFTER_LOAD:
            after(config, g, self.notices)
        return config

    def set(self, decl: Key, path: str, value: Any) -> None:
        """Parse C{value} for the top-level C{decl} and note if it has no effect yet."""
        parsed = self.parse(decl, path, value, decl.name)
        setattr(self.config, decl.name, parsed)
        if decl.not_effective and not (decl.notice_unless and decl.notice_unless(parsed)):
            self.not_effective(decl.name, decl.not_effective)

    def parse(self, decl: Key, path: str, value: Any, dotted: str) -> Any:
        """The typed value of C{decl} (recursing into nested tables)."""
        if decl.nested is None:
            assert decl.type is not None
            return check(decl.type, path, value)
        t = check(values.TABLE, path, value)
        if not t and decl.empty_means_none:
            return None
        subs = {k.name: k for k in declared(decl.nested)}
        kwargs = {}
        for name, v in t.items():
            sub = subs.get(name)
            if sub is None:
                self.unknown(f"{path}.{name}", v)
                continue
            kwargs[name] = self.parse(sub, f"{path}.{name}", v, f"{dotted}.{name}")
            if sub.not_effective:
                self.not_effective(f"{dotted}.{name}", sub.not_effective)
        required = [k.name for k in subs.values() if k.required]
        for name in required:
            if name not in t:
                raise ConfigError(f"{path}.{name}: missing; [{path}] needs {' and '.join(required)}")
        result = decl.nested(**kwargs)
        if hasattr(result, "validate"):
            result.validate(path)
        return result

    def alias_table(self, table: str, value: Any) -> None:
        """Conduit's C{[global.turn]}: its keys set top-level keys, and win over them."""
        path = f"global.{table}"
        for name, v in check(values.TABLE, path, value).items():
            target = ALIAS_TABLES[table].get(name)
            if target is None:
                self.unknown(f"{path}.{name}", v)
            else:
                decl = TOP[target]
                setattr(self.config, target, self.parse(decl, f"{path}.{name}", v, target))
                if decl.not_effective:
                    self.not_effective(target, decl.not_effective)

    def not_effective(self, dotted: str, why: str) -> None:
        """Note once that C{dotted} (of L{NOT_EFFECTIVE_YET}) was set but does nothing yet."""
        line = f"global.{dotted} is set but has no effect yet: {plain(why)}"
        if line not in self.notices:
            self.notices.append(line)

    def unknown(self, dotted: str, value: Any = None) -> None:
        """Report C{dotted} as unknown (the variable too, if it came from the environment)."""
        self.config.unknown_keys.append(dotted)
        origin = (
            f", set by the environment variable {value.var}" if isinstance(value, EnvValue) else ""
        )
        self.notices.append(f"{dotted}: unknown key, ignored (check its spelling{origin})")
