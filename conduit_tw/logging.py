"""
Logging with twisted.logger, filtered by the C{log} config key.

twistd installs its own observer before our service exists, so the level is
applied where our events are emitted: every logger made by L{get_logger}
publishes through one L{FilteringLogObserver} whose predicate follows the
configured level (C{"warn"}, C{"info,conduit_tw.api=debug"} ...).
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    globalLogPublisher,
)

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])
#: (namespace, level) -> L{is_enabled}'s answer, until the next L{configure}
#: (asked once per HTTP request).
_enabled: dict[tuple[str, LogLevel], bool] = {}

#: Conduit's (tracing's) level names; C{None} for "off".
LEVELS: dict[str, LogLevel | None] = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
    "off": None,
}


def parse_level(name: str) -> LogLevel:
    """Map a tracing-style level name to a L{LogLevel} (ValueError if unknown)."""
    try:
        level = LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}") from None
    # "off": only what must never be hidden.
    return LogLevel.critical if level is None else level


def configure(spec: str) -> None:
    """
    Apply a Conduit-style filter such as C{"warn"} or
    C{"info,conduit_tw.api=debug"}: a default level and per-namespace
    levels. Unknown parts raise L{ValueError}.
    """
    default = LogLevel.info
    namespaces: list[tuple[str, LogLevel]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" in part:
            namespace, _, level = part.partition("=")
            namespace = namespace.strip()
            if not namespace.startswith("conduit_tw"):
                namespace = "conduit_tw." + namespace
            namespaces.append((namespace, parse_level(level)))
        else:
            default = parse_level(part)
    # clearLogLevels() takes the default from defaultLogLevel: set it first.
    _predicate.defaultLogLevel = default
    _predicate.clearLogLevels()
    for namespace, level in namespaces:
        _predicate.setLogLevelForNamespace(namespace, level)
    _enabled.clear()


def get_logger(namespace: str) -> Logger:
    """A L{Logger} for C{namespace} whose events obey the configured level."""
    return Logger(namespace=namespace, observer=_observer)


def is_enabled(namespace: str, level: LogLevel) -> bool:
    """Whether an event at C{level} in C{namespace} would be emitted."""
    key = (namespace, level)
    enabled = _enabled.get(key)
    if enabled is None:
        enabled = _enabled[key] = level >= _predicate.logLevelForNamespace(namespace)
    return enabled
