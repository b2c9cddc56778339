"""
A small router: (method, path pattern) -> async handler.

Patterns are written as paths with C{{name}} segments, e.g.
C{/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}}. A
variable matches one URL-decoded path segment; a trailing C{{name:*}}
matches the rest of the path (possibly empty, slashes included), which the
spec needs for state keys and media. Static routes are one dict lookup;
dynamic routes are bucketed by their number of segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from conduit_tw.errors import Codes, MatrixError

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One registered route."""

    method: str
    pattern: str
    handler: Handler
    #: Literal segment text, or None where a variable sits.
    segments: tuple[str | None, ...]
    names: tuple[str, ...]
    #: Name of a trailing catch-all variable, if any.
    rest: str | None


class Router:
    """Routes requests to handlers; see the module docstring."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Handler]] = {}
        # segment count -> index of the route's last literal segment ->
        # that literal -> routes. Looking a path up costs a dict probe per
        # distinct index (a handful), not a comparison per route.
        self._dynamic: dict[int, dict[int, dict[str, list[Route]]]] = {}
        self._rest: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register C{handler} for C{method} (C{GET}, C{PUT} ...) on C{pattern}."""
        method = method.upper()
        parts = pattern.strip("/").split("/")
        if "{" not in pattern:
            self._static.setdefault("/" + "/".join(parts), {})[method] = handler
            return
        rest = None
        if parts[-1].endswith(":*}"):
            rest = parts.pop()[1:-3]
        segments: list[str | None] = []
        names: list[str] = []
        for p in parts:
            if p.startswith("{") and p.endswith("}"):
                segments.append(None)
                names.append(p[1:-1])
            else:
                segments.append(p)
        route = Route(method, pattern, handler, tuple(segments), tuple(names), rest)
        if rest is None:
            literal_at = max(i for i, seg in enumerate(segments) if seg is not None)
            by_index = self._dynamic.setdefault(len(segments), {})
            by_literal = by_index.setdefault(literal_at, {})
            by_literal.setdefault(segments[literal_at], []).append(route)  # type: ignore[index]
        else:
            self._rest.append(route)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """
        Find the handler for a request.

        @param path: the raw (still percent-encoded) request path.
        @raise MatrixError: 404 M_UNRECOGNIZED for an unknown path, 405
            M_UNRECOGNIZED for a known path with another method.
        """
        if method == "HEAD":
            method = "GET"
        trimmed = path.rstrip("/") if len(path) > 1 else path
        static = self._static.get(trimmed)
        if static is not None:
            handler = static.get(method)
            if handler is None:
                raise _method_not_allowed()
            return handler, {}
        parts = path.strip("/").split("/")
        known_path = False
        for index, by_literal in self._dynamic.get(len(parts), {}).items():
            for route in by_literal.get(parts[index], ()):
                args = _match(route, parts)
                if args is not None:
                    if route.method == method:
                        return route.handler, args
                    known_path = True
        for route in self._rest:
            n = len(route.segments)
            if len(parts) < n:
                continue
            args = _match(route, parts[:n])
            if args is None:
                continue
            if route.method != method:
                known_path = True
                continue
            assert route.rest is not None
            args[route.rest] = unquote("/".join(path.lstrip("/").split("/")[n:]))
            return route.handler, args
        if known_path:
            raise _method_not_allowed()
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")


def _match(route: Route, parts: list[str]) -> dict[str, str] | None:
    args: dict[str, str] = {}
    names = iter(route.names)
    for literal, part in zip(route.segments, parts):
        if literal is None:
            args[next(names)] = unquote(part)
        elif literal != part:
            return None
    return args


def _method_not_allowed() -> MatrixError:
    return MatrixError(405, Codes.UNRECOGNIZED, "Method not allowed for this endpoint")
