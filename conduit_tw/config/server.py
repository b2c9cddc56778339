"""Keys of the server itself: identity, storage, listening, TLS and logging."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from twisted.logger import LogLevel

from conduit_tw.config import declare, values
from conduit_tw.config.declare import key, section, table
from conduit_tw.config.values import ConfigError, Type
from conduit_tw.logging import LEVELS

_BACKUP = "there is no online backup command yet"


@section("tls")
class TlsConfig:
    """C{[global.tls]}: serve HTTPS directly (PEM files)."""

    # declare.key: the field "key" hides the function inside this class body.
    certs: str = declare.key(doc="Path of the PEM certificate chain.", type=values.NONEMPTY_STR)
    key: str = declare.key(doc="Path of the PEM private key.", type=values.NONEMPTY_STR)
    #: Also accept plain HTTP on the same port (conduwuit's C{dual_protocol}).
    dual_protocol: bool = declare.key(
        False,
        "Also accept plain HTTP on the same ports (the first byte tells a TLS handshake from "
        "HTTP). Insecure for clients that use plain HTTP; meant for a reverse proxy or "
        "local tools on the same host.",
    )


@section("storage")
class StorageKeys:
    """Identity and storage."""

    server_name: str = key(
        "localhost",
        "The name in user and room IDs (`@alice:server_name`). Checked against the spec's "
        "server name grammar (`example.com`, `example.com:8448`, `1.2.3.4`, `[::1]:8448`). "
        "Cannot be changed once users exist.",
        values.SERVER_NAME,
    )
    database_path: str = key(
        "./conduit_data",
        "Directory where the server keeps all its data, including media.",
        values.NONEMPTY_STR,
    )
    database_backend: str = key(
        "sqlite",
        '`"sqlite"`, `"lmdb"` or `"postgresql"` (with `database_url`). `"rocksdb"` (Conduit\'s recommendation) is accepted as an '
        'alias of `"lmdb"` with a notice, so Conduit configs start unchanged; an existing '
        "Conduit RocksDB database is **not** read. Any other name is looked up among "
        "installed storage plugins (`twisted/plugins/`); an unknown one stops start-up with "
        "the list of available backends.",
        values.BACKEND,
    )
    database_url: str | None = key(
        None,
        'PostgreSQL connection for `database_backend = "postgresql"`: a libpq URI '
        "(`postgresql://user@host:5432/dbname`) or key=value string. Also from the "
        "environment as `CONDUIT_DATABASE_URL`, which keeps a password out of the file. "
        "A bad URL, an unreachable server or a refused login stops start-up naming this key.",
    )
    database_password_file: str | None = key(
        None,
        "File holding the PostgreSQL password (first line), used with `database_url`; "
        "libpq's own `passfile` / `~/.pgpass` work too.",
    )
    database_statement_timeout_ms: int = key(
        0,
        "PostgreSQL: abort any statement running longer than this (milliseconds; 0: no limit).",
        values.NONNEG,
    )
    database_backup_path: str | None = key(
        None,
        "Directory for online backups of the database (admin command).",
    )
    database_backups_to_keep: int = key(
        1, "How many backups to keep in `database_backup_path`.", values.NONNEG,
    )
    db_cache_capacity_mb: float = key(
        256.0,
        "Memory, in MB, the database engine may use for its caches (SQLite page cache; "
        "grows only with use).",
    )
    #: SQLite durability: "full" (fsync per commit: survives power loss),
    #: "normal" (survives a crash or kill -9 of the server, may lose the last
    #: commits on power loss), "extra".
    sqlite_synchronous: str = key(
        "full",
        'SQLite durability. `"full"`: every commit is fsynced, nothing acknowledged is lost '
        'even on power loss. `"normal"`: commits survive a crash or `kill -9` of the server '
        'but the last ones may be lost on power loss (faster writes). `"extra"`: also syncs '
        'the directory. `"off"` is refused (it can corrupt the database).',
        values.choice("full", "normal", "extra"),
    )
    #: LMDB durability: "full" (sync + metasync) or "normal" (no metasync).
    lmdb_sync: str = key(
        "full",
        'LMDB durability: `"full"` (sync + metasync on every commit) or `"normal"` (no '
        "metasync: the last commit may be lost on power loss, never corruption).",
        values.choice("full", "normal"),
    )
    conduit_cache_capacity_modifier: float = key(
        1.0,
        "Multiplier for the sizes of the server's in-memory caches (must be > 0).",
        values.number(0.0, strictly_above=True),
    )
    pdu_cache_capacity: int = key(
        150_000, "Number of events kept in the in-memory event cache.", values.NONNEG
    )
    cleanup_second_interval: int = key(
        60,
        "Seconds between database housekeeping runs: expired login and OpenID tokens, "
        "expired `/create` media ids, day-old client transaction IDs and UIA sessions are "
        "forgotten.",
        values.POSITIVE,
    )

    def database_options(self) -> dict[str, Any]:
        """The backend options the storage layer takes from this config."""
        return {
            "db_cache_capacity_mb": self.db_cache_capacity_mb,
            "sqlite_synchronous": self.sqlite_synchronous,
            "lmdb_sync": self.lmdb_sync,
            "database_url": self.database_url,
            "database_password_file": self.database_password_file,
            "database_statement_timeout_ms": self.database_statement_timeout_ms,
        }


@section("listening")
class ListenKeys:
    """Where and how the server listens."""

    address: list[str] = key(
        ["127.0.0.1"],
        'IP address to listen on, or a list (`["127.0.0.1", "::1"]`). Use `"0.0.0.0"` / '
        '`"::"` in containers.',
        values.ADDRESSES,
    )
    port: list[int] = key(
        [6167],
        "Port, or a list of ports (`[8008, 8448]`). The server listens on every "
        "address × port combination.",
        values.PORTS,
    )
    unix_socket_path: str | None = key(
        None,
        "Listen on this UNIX socket **instead** of `address`/`port` (which are then "
        "ignored, with a notice).",
    )
    #: As written in the file: C{660} means mode C{0o660} (see L{unix_socket_mode}).
    unix_socket_perms: int = key(
        660,
        'Permissions of the socket, as octal digits (`660`, `"0660"` or `"0o660"`). '
        "`Config.unix_socket_mode` gives the mode (`0o660`).",
        values.PERMS,
    )
    tls: TlsConfig | None = table(
        TlsConfig,
        "Serve HTTPS directly instead of behind a reverse proxy (which is recommended). If "
        "the table is present, both files are required.",
        optional=True,
    )
    trusted_proxies: list[str] = key(
        [],
        "IP addresses or CIDR ranges of reverse proxies whose `X-Forwarded-For` header is "
        "believed (for client IPs in logs and rate limits). Empty: the header is ignored.",
        values.list_of(values.NETWORK, "IP addresses or CIDR ranges", "list of CIDR ranges"),
    )
    max_request_size: int = key(
        20_000_000,
        "Largest request body accepted, in bytes (uploads included).",
        values.POSITIVE,
    )
    gzip_compression: bool = key(
        False,
        "Compress JSON responses (of 256 bytes or more) with gzip for clients that send "
        "`Accept-Encoding: gzip`. Compression over TLS can leak secrets (BREACH); leave off "
        "unless you know you need it.",
    )

    @property
    def unix_socket_mode(self) -> int:
        """C{unix_socket_perms} as a file mode: C{660} -> C{0o660}."""
        return int(str(self.unix_socket_perms), 8)

    def listen_addresses(self) -> list[tuple[str, int]]:
        """Every (address, port) to listen on; empty when C{unix_socket_path} is set."""
        if self.unix_socket_path is not None:
            return []
        return [(a, p) for a in self.address for p in self.port]


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
            if level_name not in LEVELS or not target.strip():
                raise ConfigError(
                    f"{path}: cannot read the directive {directive!r}; expected target=level "
                    f"with level one of trace, debug, info, warn, error, critical, off"
                )
            targets[target.strip()] = LEVELS[level_name]
        elif directive.lower() in LEVELS:
            default = LEVELS[directive.lower()]
        else:
            raise ConfigError(
                f"{path}: cannot read the directive {directive!r}; expected a level (trace, "
                f"debug, info, warn, error, critical, off) or target=level"
            )
    return (LogLevel.critical if default is None else default), targets


def _log(path: str, v: Any) -> str:
    if not isinstance(v, str):
        raise values.bad(path, 'a log filter such as "info" or "warn,state_res=warn"', v)
    parse_log_filter(v, path)
    return v


@section("logging")
class LoggingKeys:
    """Logging; C{log_level} and C{log_targets} are derived from C{log}."""

    log: str = key(
        "info",
        "A filter in Conduit's (Rust tracing) syntax: a default level plus `target=level` "
        'directives, comma separated, e.g. `"warn,state_res=warn"` or '
        '`"info,conduit_tw.api=debug"`.',
        Type("log filter", _log, env_verbatim=True),
    )
    log_level: LogLevel = LogLevel.info
    #: Per-target levels from C{log} (C{None} = C{off}), e.g. C{{"state_res": warn}}.
    log_targets: dict[str, LogLevel | None] = field(default_factory=dict)


def after_load(config: Any, g: dict[str, Any], notices: list[str]) -> None:
    config.log_level, config.log_targets = parse_log_filter(config.log, "global.log")
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
