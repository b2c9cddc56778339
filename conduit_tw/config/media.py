"""Keys of the media repository (C{[global.media]}) and URL previews."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from conduit_tw.config import values
from conduit_tw.config.declare import key, section, table
from conduit_tw.config.values import ConfigError, Type, bad

_PREVIEW = "URL previews are not implemented yet"


@section("media.directory_structure")
class MediaDirectoryStructure:
    """Conduit's deep media layout: C{depth} directories of C{length} hex characters."""

    length: int = key(2, "Hex characters per directory name.", values.integer(1, 255))
    depth: int = key(2, "Levels of directories.", values.integer(1, 255))

    def validate(self, path: str) -> None:
        """Refuse a layout that needs more characters than a SHA-256 hex digest has."""
        if self.length * self.depth >= 64:
            raise ConfigError(
                f"{path}: length x depth must be below 64 (the length of a SHA-256 "
                f"hex digest), got {self.length} x {self.depth}"
            )


@dataclass
class MediaRetention:
    """One C{[[global.media.retention]]} policy; durations in seconds, sizes in bytes."""

    scope: str | None = None
    accessed: float | None = None
    created: float | None = None
    space: int | None = None


_DURATION_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("nsec", "ns"), 1e-9),
    (("usec", "us"), 1e-6),
    (("msec", "ms"), 1e-3),
    (("seconds", "second", "sec", "secs", "s"), 1),
    (("minutes", "minute", "min", "mins", "m"), 60),
    (("hours", "hour", "hr", "hrs", "h"), 3600),
    (("days", "day", "d"), 86400),
    (("weeks", "week", "w"), 7 * 86400),
    (("months", "month", "M"), 30.44 * 86400),
    (("years", "year", "y"), 365.25 * 86400),
):
    for _n in _names:
        _DURATION_UNITS[_n] = _secs


def _parse_duration(path: str, v: Any) -> float:
    """Humantime durations (C{"30d"}, C{"1h 30m"}) or an integer number of seconds."""
    what = 'a duration such as "30d", "12h" or "1h 30m"'
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return float(v)
    if not isinstance(v, str) or not v.strip():
        raise bad(path, what, v)
    total, pos, text = 0.0, 0, v.strip()
    for m in re.finditer(r"\s*(\d+)\s*([A-Za-z]+)\s*", text):
        if m.start() != pos:
            raise bad(path, what, v)
        unit = m.group(2) if m.group(2) in _DURATION_UNITS else m.group(2).lower()
        if unit not in _DURATION_UNITS:
            raise bad(path, what, v)
        total += int(m.group(1)) * _DURATION_UNITS[unit]
        pos = m.end()
    if pos != len(text):
        raise bad(path, what, v)
    return total


_SIZE_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_p] = _SIZE_UNITS[_p + "b"] = 1000**_i
    _SIZE_UNITS[_p + "i"] = _SIZE_UNITS[_p + "ib"] = 1024**_i


def _parse_size(path: str, v: Any) -> int:
    """Byte sizes such as C{"10GB"}, C{"512 MiB"} or an integer number of bytes."""
    what = 'a size such as "10GB" or "512MiB"'
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", v) if isinstance(v, str) else None
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise bad(path, what, v)
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


_RETENTION_TABLES = values.list_of(values.TABLE, "tables (scope, accessed, created, space)")


def _retention(path: str, value: Any) -> list[MediaRetention]:
    out: list[MediaRetention] = []
    seen: set[str | None] = set()
    for i, entry in enumerate(_RETENTION_TABLES(path, value)):
        p = f"{path}[{i}]"
        r = MediaRetention()
        for k, v in entry.items():
            if k == "scope":
                if v not in ("remote", "local", "thumbnail"):
                    raise bad(f"{p}.scope", '"remote", "local" or "thumbnail"', v)
                r.scope = v
            elif k in ("accessed", "created"):
                setattr(r, k, _parse_duration(f"{p}.{k}", v))
            elif k == "space":
                r.space = _parse_size(f"{p}.space", v)
            else:
                raise bad(p, "a table with scope, accessed, created and space keys", entry)
        if r.scope in seen:
            raise ConfigError(f"{p}.scope: {r.scope or 'the default (no scope)'} is given twice")
        seen.add(r.scope)
        out.append(r)
    return out


def _backend(path: str, v: Any) -> str:
    backend = values.STR(path, v).lower()
    if backend != "filesystem":
        raise ConfigError(
            f"{path}: only \"filesystem\" is supported by conduit-tw, got "
            f"{backend!r} (media would otherwise be stored somewhere you did not ask for)"
        )
    return backend


@section("media")
class MediaConfig:
    """C{[global.media]}: where media files live (only the C{filesystem} backend)."""

    backend: str = key(
        "filesystem",
        'Only `"filesystem"`; Conduit\'s `"s3"` stops start-up (we will not store media '
        "somewhere you did not ask for).",
        Type("string", _backend),
    )
    #: Defaults to C{<database_path>/media}.
    path: str = key(
        "", "Directory for media files.", values.NONEMPTY_STR, doc_default="`<database_path>/media`"
    )
    #: C{None} means a flat directory (Conduit's C{directory_structure = {}}).
    directory_structure: MediaDirectoryStructure | None = table(
        MediaDirectoryStructure,
        "Files are spread over `depth` levels of directories named by `length` hex "
        "characters of their hash (`length × depth` < 64). An empty table "
        "(`directory_structure = {}`) stores them all in one directory.",
        empty_means_none=True,
        doc_default="`{ length = 2, depth = 2 }`",
    )
    retention: list[MediaRetention] = key(
        [],
        "List of `[[global.media.retention]]` policies, see below.",
        Type("list of tables", _retention),
        doc_default="none (keep everything)",
    )


@section("media_table")
class MediaKeys:
    """The C{[global.media]} table itself."""

    media: MediaConfig = table(
        MediaConfig,
        "Where uploaded and downloaded media files are kept.",
    )
    freeze_legacy_media: bool = key(
        True,
        "Media uploaded while `true` is served only on the authenticated "
        "`/_matrix/client/v1/media` endpoints; media uploaded while `false` stays reachable "
        "on the legacy unauthenticated `/_matrix/media/v3` ones too (docs/media.md).",
    )


@section("url_previews")
class UrlPreviewKeys:
    """URL previews (C{/preview_url})."""

    url_preview_domain_contains_allowlist: list[str] = key(
        [],
        'Preview URLs whose domain **contains** one of these (`"*"`: all).',
    )
    url_preview_domain_explicit_allowlist: list[str] = key(
        [], 'Preview URLs whose domain **is** one of these (`"*"`: all).',
    )
    url_preview_url_contains_allowlist: list[str] = key(
        [], 'Preview URLs that contain one of these strings (`"*"`: all).',
    )
    url_preview_domain_explicit_denylist: list[str] = key(
        [], "Never preview these domains (checked first).",
    )
    url_preview_max_spider_size: int = key(
        384_000,
        "Most bytes downloaded to make a preview.",
        values.POSITIVE,
    )
    url_preview_check_root_domain: bool = key(
        False,
        "Match the domain lists against the root domain too (`en.wikipedia.org` matches "
        "`wikipedia.org`).",
    )


def after_load(config: Any, g: dict[str, Any], notices: list[str]) -> None:
    if not config.media.path:
        config.media.path = os.path.join(config.database_path, "media")
