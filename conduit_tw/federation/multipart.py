"""
The C{multipart/mixed} bodies of the federation content repository
(server-server-api "Content Repository"; content_repository.yaml): exactly
two parts delimited by a C{boundary} (RFC 2046 section 5.1), the first
C{application/json} metadata (currently always C{{}}), the second either
the media's bytes (with C{Content-Type} and C{Content-Disposition}) or a
C{Location} header to fetch them from.

Writing: L{MultipartFile} reads like a file (C{read(n)}, C{close()}) so a
response streams the media from disk between the two small framing
pieces. Reading: L{parse} works on a file the body was spooled to and
returns the offsets of the second part's bytes, so a large file is never
read into memory.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import unquote

#: How much of a body may come before the second part's bytes
#: (delimiters, metadata and part headers).
HEAD_LIMIT = 64 * 1024
#: How much may follow the closing delimiter (an epilogue).
TAIL_LIMIT = 4096

_BOUNDARY_PARAM = re.compile(r';\s*boundary\s*=\s*("([^"]{1,70})"|[^\s;"]{1,70})', re.I)
_FILENAME_STAR = re.compile(r";\s*filename\*\s*=\s*([A-Za-z0-9_-]+)'[^']*'([^;\s]+)", re.I)
_FILENAME = re.compile(r';\s*filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;\s]+)', re.I)


class MultipartError(ValueError):
    """A body that is not the two-part C{multipart/mixed} of the spec."""


def new_boundary() -> str:
    """A random boundary (32 hex characters: never in a body by chance)."""
    return secrets.token_hex(16)


def content_type(boundary: str) -> bytes:
    """The C{Content-Type} of a response with this boundary."""
    return b"multipart/mixed; boundary=" + boundary.encode("ascii")


def head(boundary: str, headers: dict[bytes, bytes], metadata: Any = None) -> bytes:
    """
    Everything before the media's bytes: the metadata part and the headers
    of the second part (C{Content-Type}, C{Content-Disposition} or
    C{Location}).
    """
    b = boundary.encode("ascii")
    meta = json.dumps({} if metadata is None else metadata, separators=(",", ":")).encode("utf-8")
    second = b"".join(name + b": " + value + b"\r\n" for name, value in headers.items())
    return (
        b"--" + b + b"\r\nContent-Type: application/json\r\n\r\n" + meta + b"\r\n"
        + b"--" + b + b"\r\n" + second + b"\r\n"
    )


def tail(boundary: str) -> bytes:
    """The closing delimiter after the media's bytes."""
    return b"\r\n--" + boundary.encode("ascii") + b"--\r\n"


class MultipartFile:
    """
    C{head}, the bytes of C{file}, C{tail}, read in order like one file
    (C{read(n)}, C{close()}), for a streamed response; C{size} is the total.
    """

    def __init__(self, head: bytes, file: BinaryIO | None, file_size: int, tail: bytes) -> None:
        self._pieces: list[bytes | BinaryIO] = [head] + ([file] if file is not None else []) + [tail]
        self._file = file
        self.size = len(head) + (file_size if file is not None else 0) + len(tail)

    def read(self, n: int = -1) -> bytes:
        """Up to C{n} bytes (all with C{n < 0}); C{b""} at the end."""
        out: list[bytes] = []
        want = n
        while self._pieces and (want < 0 or want > 0):
            piece = self._pieces[0]
            if isinstance(piece, bytes):
                chunk = piece if want < 0 else piece[:want]
                rest = b"" if want < 0 else piece[want:]
                if rest:
                    self._pieces[0] = rest
                else:
                    self._pieces.pop(0)
            else:
                chunk = piece.read(want)
                if not chunk or (want < 0):
                    self._pieces.pop(0)
            out.append(chunk)
            if want > 0:
                want -= len(chunk)
        return b"".join(out)

    def close(self) -> None:
        """Close the media file."""
        self._pieces = []
        if self._file is not None:
            self._file.close()


def multipart_body(
    boundary: str, headers: dict[bytes, bytes], file: BinaryIO | None, size: int
) -> MultipartFile:
    """A two-part body around C{file} (or without bytes, for a C{Location})."""
    return MultipartFile(head(boundary, headers), file, size, tail(boundary))


@dataclass
class SecondPart:
    """What L{parse} found: the metadata, the second part's headers and where its bytes are."""

    metadata: dict[str, Any]
    #: Header names lower-cased; values as sent (latin-1 decoded).
    headers: dict[str, str] = field(default_factory=dict)
    start: int = 0
    end: int = 0

    @property
    def location(self) -> str | None:
        """The C{Location} to fetch the media from, if the part gives one."""
        return self.headers.get("location")


def boundary_of(content_type_value: str | None) -> str | None:
    """The boundary of a C{multipart/mixed} C{Content-Type}, or None for other types."""
    if not content_type_value:
        return None
    if content_type_value.split(";")[0].strip().lower() != "multipart/mixed":
        return None
    m = _BOUNDARY_PARAM.search(content_type_value)
    if not m:
        raise MultipartError("multipart/mixed without a boundary")
    return m.group(2) if m.group(2) is not None else m.group(1)


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise MultipartError("malformed part header")
        out[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return out


def parse(f: BinaryIO, boundary: str) -> SecondPart:
    """
    Parse the two-part body in C{f} (from its start). The second part's
    bytes are C{f[start:end]}; C{end == start} for a C{Location} part.

    @raise MultipartError: not exactly the shape of the spec.
    """
    delimiter = b"--" + boundary.encode("ascii")
    f.seek(0, 2)
    total = f.tell()
    f.seek(0)
    data = f.read(HEAD_LIMIT)
    # The first delimiter: at the very start or after a preamble's CRLF.
    if data.startswith(delimiter):
        pos = len(delimiter)
    else:
        i = data.find(b"\r\n" + delimiter)
        if i < 0:
            raise MultipartError("no opening delimiter")
        pos = i + 2 + len(delimiter)

    def part_headers(pos: int) -> tuple[dict[str, str], int]:
        if data[pos : pos + 2] == b"--":
            raise MultipartError("fewer than two parts")
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise MultipartError("truncated delimiter line")
        if data[pos:eol].strip(b" \t"):
            raise MultipartError("garbage after delimiter")
        if data[eol + 2 : eol + 4] == b"\r\n":  # no headers at all
            return {}, eol + 4
        end = data.find(b"\r\n\r\n", eol + 2)
        if end < 0:
            raise MultipartError("part headers too long or truncated")
        return _headers(data[eol + 2 : end]), end + 4

    first_headers, body_start = part_headers(pos)
    ctype = first_headers.get("content-type", "application/json")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise MultipartError("the first part is not application/json")
    next_delim = data.find(b"\r\n" + delimiter, body_start)
    if next_delim < 0:
        raise MultipartError("no second part")
    try:
        metadata = json.loads(data[body_start:next_delim].decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError):
        raise MultipartError("metadata is not JSON") from None
    if not isinstance(metadata, dict):
        raise MultipartError("metadata is not a JSON object")
    headers, start = part_headers(next_delim + 2 + len(delimiter))
    # The bytes end at the last closing delimiter (the sender chose a
    # boundary that is not in them; an epilogue may follow).
    f.seek(max(start, total - TAIL_LIMIT - len(delimiter) - 4))
    tail_data = f.read()
    closing = tail_data.rfind(b"\r\n" + delimiter + b"--")
    if closing < 0:
        if "location" in headers and data[start:].startswith(delimiter + b"--"):
            return SecondPart(metadata, headers, start, start)  # empty part, no CRLF before
        raise MultipartError("no closing delimiter")
    end = total - len(tail_data) + closing
    if end < start:
        raise MultipartError("no closing delimiter")
    if "location" not in headers and "content-type" not in headers:
        headers["content-type"] = "application/octet-stream"
    return SecondPart(metadata, headers, start, end)


def disposition_filename(value: str | None) -> str | None:
    """
    The file name of a C{Content-Disposition} (RFC 6266: C{filename*}
    preferred over C{filename}), or None.
    """
    if not value:
        return None
    m = _FILENAME_STAR.search(value)
    if m:
        charset = m.group(1).lower()
        try:
            return unquote(m.group(2), encoding="utf-8" if charset == "utf-8" else "latin-1",
                           errors="strict")
        except (UnicodeDecodeError, LookupError):
            return None
    m = _FILENAME.search(value)
    if m:
        if m.group(2) is not None:
            return re.sub(r"\\(.)", r"\1", m.group(2))
        return m.group(1)
    return None
