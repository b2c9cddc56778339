"""
Dropin: conduit-tw's built-in storage backends, found with
C{getPlugins(IStorageBackend)} and chosen by C{database_backend}.

Backend modules are imported only in C{open()}, so scanning plugins stays
cheap. (Never add C{twisted/plugins/__init__.py}.)
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from conduit_tw.storage.interfaces import IKeyValueDatabase, IStorageBackend


@implementer(IPlugin, IStorageBackend)
class _BuiltinBackend:
    """A backend whose class is C{module:cls}, imported on first open."""

    def __init__(
        self, name: str, description: str, target: str, aliases: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.description = description
        self.aliases = aliases
        self._target = target

    def __repr__(self) -> str:
        return f"<storage backend {self.name!r} ({self._target})>"

    def open(self, path: str, options: dict[str, Any]) -> IKeyValueDatabase:
        from importlib import import_module

        module, cls = self._target.split(":")
        return getattr(import_module(module), cls)(path, options)


sqlite = _BuiltinBackend(
    "sqlite",
    "SQLite: one file (conduit.db), WAL, one table per tree",
    "conduit_tw.storage.sqlite:SQLiteDatabase",
)

lmdb = _BuiltinBackend(
    "lmdb",
    "LMDB key-value store: memory-mapped, one sub-database per tree",
    "conduit_tw.storage.lmdb:LMDBDatabase",
    aliases=("rocksdb",),
)

postgresql = _BuiltinBackend(
    "postgresql",
    "PostgreSQL (psycopg 3): one table (tree, key, value) in the database at database_url",
    "conduit_tw.storage.postgresql:PostgreSQLDatabase",
    aliases=("postgres",),
)
