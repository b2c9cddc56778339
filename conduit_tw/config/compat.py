"""
Keys of Conduit and conduwuit that concern things conduit-tw does not have: accepted
(so their configs load), kept in C{Config.extra}, each with a one-line notice.
"""

from __future__ import annotations

_SENTRY = "Sentry crash reporting is not built in"
_FLAME = "tracing flame graphs are a Rust tracing feature"
_ROCKSDB = "RocksDB is not used (database_backend 'rocksdb' means 'lmdb')"
_GZIP_ONLY = "only gzip response compression is available (gzip_compression)"

#: Key -> why it has no effect here.
NO_EFFECT: dict[str, str] = {
    "sentry": _SENTRY,
    "sentry_endpoint": _SENTRY,
    "sentry_send_server_name": _SENTRY,
    "sentry_traces_sample_rate": _SENTRY,
    "zstd_compression": _GZIP_ONLY,
    "brotli_compression": _GZIP_ONLY,
    "allow_check_for_updates": "conduit-tw never calls home for announcements",
    "allow_jaeger": "Jaeger tracing is not built in",
    "tracing_flame": _FLAME,
    "tracing_flame_filter": _FLAME,
    "tracing_flame_output_path": _FLAME,
    "workers": "Twisted runs one reactor thread; there is no worker pool to size",
    "cache_capacity": "deprecated in Conduit; use db_cache_capacity_mb",
    "dual_protocol": "it belongs in [global.tls]",
    "rocksdb_max_open_files": _ROCKSDB,
}
#: Prefixes of keys that tune software conduit-tw does not use -> why.
NO_EFFECT_PREFIXES: dict[str, str] = {
    "rocksdb_": _ROCKSDB,
    "jemalloc_": "jemalloc is a Rust allocator; Python manages its own memory",
    "tokio_": "the Rust tokio runtime is not used",
}


def no_effect_reason(key: str) -> str | None:
    """Why the top-level C{key} is accepted without effect, or C{None} if it is not."""
    if key in NO_EFFECT:
        return NO_EFFECT[key]
    return next((r for p, r in NO_EFFECT_PREFIXES.items() if key.startswith(p)), None)
