"""
Opening a database: find the backend plugin named by C{database_backend},
open it in a directory, and check the schema version stored in it.

Backends are Twisted plugins (L{IStorageBackend}, found with
C{getPlugins(IStorageBackend, twisted.plugins)}); ours are in
C{twisted/plugins/conduit_backends.py}, third parties ship their own
dropin (docs/plugins/storage.md).
"""

from __future__ import annotations

import os
import struct
import weakref
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.python.failure import Failure

from conduit_tw.storage.interfaces import IKeyValueDatabase, IStorageBackend
from conduit_tw.storage.keys import u64

SCHEMA_VERSION = 1
"""The data format this code reads and writes; stored in C{global}."""

GLOBAL_TREE = "global"
SCHEMA_KEY = b"schema_version"

log = Logger()


class DatabaseError(Exception):
    """The database cannot be opened; the message is for the operator."""


class UnknownBackend(DatabaseError, ValueError):
    """No installed storage backend has the requested name."""


class IncompatibleDatabase(DatabaseError):
    """The database was written by a newer conduit-tw (or is not ours)."""


def _ensure_builtin_dropins() -> None:
    # Twisted computes twisted.plugins.__path__ from sys.path when it is
    # first imported; a checkout put on sys.path later (trial given a file
    # path, an embedding application) would not be scanned. Add the dropin
    # directory that ships next to this package, so the built-in backends
    # are found however the process was started.
    import twisted.plugins

    here = os.path.dirname(os.path.abspath(__file__))
    dropins = os.path.join(os.path.dirname(os.path.dirname(here)), "twisted", "plugins")
    path = twisted.plugins.__path__
    if os.path.isdir(dropins) and not any(
        os.path.abspath(p) == dropins for p in path
    ):
        path.append(dropins)


def list_backends() -> list[IStorageBackend]:
    """Every installed storage backend, sorted by name (first one wins on a clash)."""
    import twisted.plugins

    _ensure_builtin_dropins()
    found: dict[str, IStorageBackend] = {}
    for backend in getPlugins(IStorageBackend, twisted.plugins):
        if backend.name in found:
            log.warn(
                "Two storage backends are called {name!r}; ignoring {backend!r}",
                name=backend.name,
                backend=backend,
            )
            continue
        found[backend.name] = backend
    return [found[name] for name in sorted(found)]


def _describe(backends: list[IStorageBackend]) -> str:
    names = []
    for b in backends:
        aliases = tuple(getattr(b, "aliases", ()))
        names.append(b.name + (f" (alias: {', '.join(aliases)})" if aliases else ""))
    return ", ".join(names) or "none"


def find_backend(name: str) -> IStorageBackend:
    """
    The backend whose name, or one of whose aliases, is C{name}
    (case-insensitive).

    @raise UnknownBackend: none is; the message lists the available ones.
    """
    wanted = name.strip().lower()
    backends = list_backends()
    for backend in backends:
        if backend.name.lower() == wanted:
            return backend
    for backend in backends:
        if wanted in (a.lower() for a in getattr(backend, "aliases", ())):
            log.warn(
                "database_backend = {alias!r} selects the {name!r} backend "
                "(an alias: it does not read data written by another program)",
                alias=name,
                name=backend.name,
            )
            return backend
    raise UnknownBackend(
        f"unknown database_backend {name!r}; available: {_describe(backends)}"
    )


def check_schema(db: IKeyValueDatabase, where: str = "the database") -> Deferred[int]:
    """
    Record L{SCHEMA_VERSION} in a new database, or check the stored one.

    @return: a L{Deferred} firing with the stored version (older ones are
        left for the migrations to upgrade), or failing with
        L{IncompatibleDatabase}, without writing anything, if it is newer
        than L{SCHEMA_VERSION} or unreadable.
    """

    async def check() -> int:
        tree = db.open_tree(GLOBAL_TREE)
        raw = await tree.get(SCHEMA_KEY)
        if raw is None:
            await tree.insert(SCHEMA_KEY, u64(SCHEMA_VERSION))
            return SCHEMA_VERSION
        try:
            (version,) = struct.unpack(">Q", raw)
        except struct.error:
            raise IncompatibleDatabase(
                f"{where}: {GLOBAL_TREE}[{SCHEMA_KEY!r}] is {raw!r}, not a "
                "version number; is this a conduit-tw database?"
            ) from None
        if version > SCHEMA_VERSION:
            raise IncompatibleDatabase(
                f"{where} has schema version {version}, but this conduit-tw "
                f"understands versions up to {SCHEMA_VERSION}: it was written by "
                "a newer release. Run that release (or restore a backup); the "
                "database was left untouched."
            )
        return int(version)

    return Deferred.fromCoroutine(check())


def _settled(d: Deferred[Any], db: Any = None) -> list[Any]:
    """C{[result]} if C{d} fired (after asking a group-committing backend to commit), else C{[]}."""
    results: list[Any] = []
    d.addBoth(results.append)
    if not results and hasattr(db, "flush"):
        # A backend that groups commits (SQLite) fires write Deferreds at
        # its commit: make it commit now.
        db.flush()
    return results


#: Schema checks still running, per database opened by L{open_database}
#: (backends that answer later); L{database_ready} awaits them.
_checks: weakref.WeakKeyDictionary[Any, Deferred[Any]] = weakref.WeakKeyDictionary()


async def database_ready(db: IKeyValueDatabase) -> None:
    """
    Wait until the start-up check of a database opened by L{open_database}
    is done (at once for a backend that answers at once).

    @raise DatabaseError: the check failed (the database is closed); a
        backend's own error (cannot connect, ...) is wrapped with its message.
    """
    d = _checks.pop(db, None)
    if d is None:
        return
    try:
        await d
    except DatabaseError:
        db.close()
        raise
    except Exception as e:
        db.close()
        raise DatabaseError(str(e)) from e


def open_database(
    backend_name: str, path: str, options: dict[str, Any] | None = None
) -> IKeyValueDatabase:
    """
    Open (creating if needed) the database in directory C{path} with the
    backend called C{backend_name}, and check its schema version: at once
    for a backend that answers at once; otherwise the check runs on and
    the caller must await L{database_ready} before the first use.

    @param options: backend tuning from the config (see each backend).
    @raise UnknownBackend: no such backend; the message lists the installed ones.
    @raise IncompatibleDatabase: the database is from a newer conduit-tw;
        it is closed again without having been modified.
    @raise DatabaseError: the backend refused to open it (a bad option, a
        file that is not a database, ...); the cause is chained.
    @raise OSError: the directory cannot be created or read.
    """
    backend = find_backend(backend_name)
    os.makedirs(path, exist_ok=True)
    try:
        db = backend.open(path, dict(options or {}))
    except (DatabaseError, OSError):
        raise
    except Exception as e:
        raise DatabaseError(
            f"the {backend.name} backend cannot open {path!r}: {e}"
        ) from e
    d = check_schema(db, f"database {path!r}")
    results = _settled(d, db)
    if not results:
        # A backend that answers later (network): the caller awaits
        # database_ready(db) before using it.
        d2: Deferred[Any] = Deferred()
        _checks[db] = d2
        d.addBoth(d2.callback)
        d2.addCallback(lambda r: r.raiseException() if isinstance(r, Failure) else r)
        return db
    if isinstance(results[0], Failure):
        db.close()
        results[0].raiseException()
    return db
