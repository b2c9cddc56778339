"""
The copy command: moves a server's database to another backend.

    conduit-copy-database --config conduit.toml TARGET
    twistd conduit --config conduit.toml --copy-database-to TARGET

The source is the database the configuration names (C{database_backend},
C{database_path}, C{database_url}); C{TARGET} is one of::

    postgresql://user@host:5432/dbname   (or postgres://..., a libpq URI)
    postgresql:host=... dbname=...       (a libpq key=value string)
    lmdb:/var/lib/conduit-lmdb           (a directory)
    sqlite:/var/lib/conduit-sqlite
    <backend>:<directory>                (any installed storage plugin)

Every tree is copied (L{conduit_tw.storage.copy}), with a progress bar,
then verified (row count and SHA-256 per tree, both sides read again). An
empty target is required. Errors are one line, exit status 1. Stop the
server first: the copy is of the database as it is while the command runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, TextIO

from twisted.python import usage

from conduit_tw.config import Config, ConfigError, load_config
from conduit_tw.storage.copy import CopyError, Progress, copy_database, verify_copy


class Options(usage.Options):
    """Options of C{conduit-copy-database}."""

    synopsis = "conduit-copy-database [--config PATH] [--quiet] TARGET"
    longdesc = __doc__
    optParameters = [
        ["config", "c", None, "Path to conduit.toml (default: $CONDUIT_CONFIG)."],
    ]
    optFlags = [["quiet", "q", "No progress bar; only the summary."]]

    target: str

    def parseArgs(self, target: str) -> None:  # type: ignore[override]
        self.target = target


@dataclass
class Target:
    """Where to copy to: a backend and its directory and options."""

    backend: str
    path: str
    options: dict[str, Any]
    description: str
    #: A directory made for the command, removed at the end.
    scratch: str | None = None


def parse_target(text: str, config: Config) -> Target:
    """
    The L{Target} C{text} names (see the module docstring); its options
    start from C{config}'s (cache size, durability), with the URL replaced.

    @raise CopyError: C{text} names none, or names the source itself.
    """
    text = text.strip()
    options = dict(config.database_options())
    options["database_password_file"] = None
    backend, sep, rest = text.partition(":")
    backend = backend.lower()
    if not sep or not rest:
        raise CopyError(
            f"target {text!r}: expected postgresql://..., lmdb:<directory>, "
            "sqlite:<directory> or <backend>:<directory>"
        )
    if backend in ("postgresql", "postgres"):
        from conduit_tw.storage.postgresql import describe_url, parse_url

        url = text if rest.startswith("//") else rest
        try:
            parse_url(url)
        except ValueError as e:
            raise CopyError(f"target: {str(e).replace('database_url: ', '')}") from None
        if config.database_backend == "postgresql" and config.database_url == url:
            raise CopyError("the target is the configured database itself")
        options["database_url"] = url
        scratch = tempfile.mkdtemp(prefix="conduit-copy-")
        return Target("postgresql", scratch, options, f"postgresql {describe_url(url)}", scratch)
    path = os.path.abspath(os.path.expanduser(rest))
    from conduit_tw.storage.database import find_backend

    try:
        name = find_backend(backend).name
    except Exception as e:
        raise CopyError(f"target: {e}") from None
    if name == config.database_backend and path == os.path.abspath(config.database_path):
        raise CopyError("the target is the configured database itself")
    return Target(name, path, options, f"{name} {path}")


def _source_description(config: Config) -> str:
    if config.database_backend == "postgresql":
        from conduit_tw.storage.postgresql import describe_url

        return f"postgresql {describe_url(config.database_url or '')}"
    return f"{config.database_backend} {os.path.abspath(config.database_path)}"


class ProgressBar:
    """
    Renders L{Progress}: a bar redrawn in place on a terminal, one line per
    tree otherwise (logs).
    """

    WIDTH = 30

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        verb = "copying" if p.phase == "copy" else "verifying"
        if not self.tty:
            if p.tree_done:
                self.out.write(
                    f"{verb} {p.tree_index}/{p.trees} {p.tree}: {p.tree_rows} rows"
                    f" ({p.rows} in all)\n"
                )
                self.out.flush()
            return
        now = time.monotonic()
        if not p.tree_done and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.WIDTH * (p.tree_index - (0 if p.tree_done else 1)) / max(p.trees, 1))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"{verb} [{bar}] {p.tree_index}/{p.trees} trees, {p.rows:,} rows  {p.tree}"
        self.out.write("\r" + line[:120].ljust(120))
        if p.tree_done and p.tree_index == p.trees:
            self.out.write("\n")
        self.out.flush()


async def run(config: Config, target_text: str, out: TextIO, quiet: bool = False) -> None:
    """
    Copy the database of C{config} to C{target_text} and verify it,
    reporting on C{out}.

    @raise CopyError: or L{conduit_tw.storage.database.DatabaseError}: the
        copy was not made or did not verify; the message is one line.
    """
    from conduit_tw.storage.database import (
        DatabaseError,
        database_ready,
        find_backend,
        open_database,
    )

    target = parse_target(target_text, config)
    source_desc = _source_description(config)
    if config.database_backend != "postgresql" and not os.path.isdir(config.database_path):
        raise CopyError(f"source: database_path {config.database_path!r} is not a directory")
    try:
        source = open_database(
            config.database_backend, config.database_path, config.database_options()
        )
        await database_ready(source)
    except DatabaseError as e:
        raise CopyError(f"source ({source_desc}): {e}") from None
    try:
        try:
            db = find_backend(target.backend).open(target.path, target.options)
        except Exception as e:
            raise CopyError(f"target ({target.description}): {e}") from None
        try:
            out.write(f"copying {source_desc} -> {target.description}\n")
            bar = ProgressBar(out, quiet)
            started = time.monotonic()
            try:
                copied = await copy_database(source, db, bar)
            except CopyError:
                raise
            except Exception as e:
                raise CopyError(_one_line(e)) from e
            rows = sum(d.rows for d in copied)
            out.write(
                f"copied {len(copied)} trees, {rows:,} rows in "
                f"{time.monotonic() - started:.1f} s; verifying\n"
            )
            try:
                await verify_copy(source, db, copied, bar)
            except CopyError:
                raise
            except Exception as e:
                raise CopyError(_one_line(e)) from e
            out.write(
                f"verified: {len(copied)} trees, {rows:,} rows, same counts and "
                "SHA-256 per tree in both databases\n"
            )
        finally:
            db.close()
    finally:
        source.close()
        if target.scratch is not None:
            shutil.rmtree(target.scratch, ignore_errors=True)
    out.write(_next_steps(config, target))
    out.flush()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _next_steps(config: Config, target: Target) -> str:
    lines = ["To run the server on the copy, set in the configuration:"]
    lines.append(f'  database_backend = "{target.backend}"')
    if target.backend == "postgresql":
        lines.append('  database_url = "..."   (the target above; or CONDUIT_DATABASE_URL)')
        lines.append(
            f"  and keep database_path = {config.database_path!r} (media stay there)"
        )
    else:
        lines.append(f'  database_path = "{target.path}"')
        if os.path.abspath(target.path) != os.path.abspath(config.database_path):
            lines.append(
                f"  and move the media ({config.media.path}) along, or set media.path to it"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, environ: Any = None) -> None:
    """The C{conduit-copy-database} console script."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"conduit-copy-database: {e}\n{options.getSynopsis()}\n")
        raise SystemExit(2)
    env = os.environ if environ is None else environ
    path = options["config"] or env.get("CONDUIT_CONFIG") or None
    try:
        config = load_config(path, env)
    except (ConfigError, OSError) as e:
        sys.stderr.write(f"conduit-copy-database: configuration error: {e}\n")
        raise SystemExit(1)
    react_copy(config, options.target, options["quiet"], "conduit-copy-database")


def react_copy(config: Config, target: str, quiet: bool, program: str) -> None:
    """Run L{run} on the reactor, then exit the process (status 0, or 1 with one line)."""
    from twisted.internet import defer, task

    async def go(reactor: Any) -> None:
        try:
            await run(config, target, sys.stdout, quiet)
        except CopyError as e:
            sys.stdout.flush()
            sys.stderr.write(f"\n{program}: {e}\n")
            raise SystemExit(1)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(go(reactor)))


if __name__ == "__main__":
    main()
