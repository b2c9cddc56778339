"""
Filters (client-server-api "Filtering"; schemas
data/api/client-server/definitions/{sync_filter,event_filter,room_event_filter}.yaml).

L{validate_filter} checks a filter definition as C{POST /user/{userId}/filter}
receives it; L{Filter} is the parsed form that /sync, /messages and
/context use to select events. L{FilterHandler} stores filters and resolves
the C{filter} query parameter (inline JSON or a stored filter ID).

Matching rules, per the schema descriptions:

- C{not_*} lists win over the inclusive lists; an absent inclusive list
  includes everything, an empty one includes nothing.
- C{types}/C{not_types} accept C{*} as a wildcard for any run of characters.
- A criterion applies only to events that have the field: account data
  has no C{sender} and global account data/presence no C{room_id}, so
  C{senders}/C{rooms} lists do not exclude them.
- C{contains_url}: C{true} keeps only events whose content has a C{url}
  key, C{false} drops them.

Deviation: the schema says C{limit} "must be an integer greater than 0";
C{0} is accepted as well (clients use it for a timeline-less /sync, and
Synapse accepts it). Negative and non-integer limits are refused.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.handlers.push_rules import parse_path

if TYPE_CHECKING:
    from conduit_tw.storage.stores.filters import FilterStore

_EVENT_FILTER_LISTS = ("types", "not_types", "senders", "not_senders")
_ROOM_EVENT_FILTER_LISTS = _EVENT_FILTER_LISTS + ("rooms", "not_rooms")
_ROOM_EVENT_FILTER_BOOLS = (
    "lazy_load_members", "include_redundant_members", "unread_thread_notifications",
)
_ROOM_SECTIONS = ("ephemeral", "state", "timeline", "account_data")


class InvalidFilter(MatrixError):
    """400 M_BAD_JSON naming what is wrong with a filter."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.BAD_JSON, f"Invalid filter: {msg}")


# -- validation


def _check_string_list(obj: Mapping[str, Any], key: str, where: str, prefix: str = "") -> None:
    if key not in obj:
        return
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidFilter(f"{where}{key} must be a list of strings")
    if prefix and not all(v.startswith(prefix) for v in value):
        kind = "user IDs" if prefix == "@" else "room IDs"
        raise InvalidFilter(f"{where}{key} must contain {kind}")


def _check_event_filter(obj: Any, where: str, room_event: bool) -> None:
    if not isinstance(obj, dict):
        raise InvalidFilter(f"{where.rstrip('.')} must be an object")
    if "limit" in obj:
        limit = obj["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidFilter(f"{where}limit must be a non-negative integer")
    _check_string_list(obj, "types", where)
    _check_string_list(obj, "not_types", where)
    _check_string_list(obj, "senders", where, "@")
    _check_string_list(obj, "not_senders", where, "@")
    if room_event:
        _check_string_list(obj, "rooms", where, "!")
        _check_string_list(obj, "not_rooms", where, "!")
        for key in _ROOM_EVENT_FILTER_BOOLS + ("contains_url",):
            if key in obj and not isinstance(obj[key], bool):
                raise InvalidFilter(f"{where}{key} must be a boolean")


def validate_filter(definition: Any) -> None:
    """
    Check a filter definition against the spec's schema.

    @raise InvalidFilter: 400 M_BAD_JSON naming the offending field.
    """
    if not isinstance(definition, dict):
        raise InvalidFilter("the filter must be a JSON object")
    if "event_fields" in definition:
        _check_string_list(definition, "event_fields", "")
    if "event_format" in definition and definition["event_format"] not in ("client", "federation"):
        raise InvalidFilter("event_format must be 'client' or 'federation'")
    for key in ("presence", "account_data"):
        if key in definition:
            _check_event_filter(definition[key], f"{key}.", room_event=False)
    if "room" in definition:
        room = definition["room"]
        if not isinstance(room, dict):
            raise InvalidFilter("room must be an object")
        _check_string_list(room, "rooms", "room.", "!")
        _check_string_list(room, "not_rooms", "room.", "!")
        if "include_leave" in room and not isinstance(room["include_leave"], bool):
            raise InvalidFilter("room.include_leave must be a boolean")
        for section in _ROOM_SECTIONS:
            if section in room:
                _check_event_filter(room[section], f"room.{section}.", room_event=True)


# -- matching


def _wildcard_matcher(pattern: str) -> Callable[[str], bool]:
    """
    Whole-value match of a C{*} wildcard, in O(len(value) * len(pattern))
    whatever the pattern (a regex of C{.*}s backtracks exponentially on
    C{*a*a*a*a*!}): the fixed parts between the C{*}s are placed left to
    right, each at its leftmost possible position.
    """
    parts = pattern.split("*")
    first, last, middle = parts[0], parts[-1], [p for p in parts[1:-1] if p]

    def match(value: str) -> bool:
        end = len(value) - len(last)
        if end < len(first) or not value.startswith(first) or not value.endswith(last):
            return False
        pos = len(first)
        for part in middle:
            found = value.find(part, pos, end)
            if found < 0:
                return False
            pos = found + len(part)
        return True

    return match


@lru_cache(maxsize=1024)
def _type_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Exact types as a set, wildcard ones as linear-time matchers."""
    exact = frozenset(p for p in patterns if "*" not in p)
    wild = [_wildcard_matcher(p) for p in patterns if "*" in p]
    if not wild:
        return exact.__contains__
    return lambda t: t in exact or any(m(t) for m in wild)


class EventFilter:
    """
    One C{EventFilter}/C{RoomEventFilter}. An absent section is the
    all-including filter (C{EventFilter({})}).
    """

    __slots__ = (
        "definition", "limit", "lazy_load_members", "include_redundant_members",
        "unread_thread_notifications", "_types", "_not_types", "_senders",
        "_not_senders", "_rooms", "_not_rooms", "_contains_url", "_everything",
    )

    def __init__(self, definition: Mapping[str, Any] | None) -> None:
        d = dict(definition or {})
        self.definition = d
        #: The requested limit, or None (callers apply their default and cap).
        self.limit: int | None = d.get("limit")
        self.lazy_load_members: bool = bool(d.get("lazy_load_members", False))
        self.include_redundant_members: bool = bool(d.get("include_redundant_members", False))
        self.unread_thread_notifications: bool = bool(d.get("unread_thread_notifications", False))
        self._types = _type_matcher(tuple(d["types"])) if "types" in d else None
        self._not_types = _type_matcher(tuple(d["not_types"])) if d.get("not_types") else None
        self._senders = frozenset(d["senders"]) if "senders" in d else None
        self._not_senders = frozenset(d.get("not_senders", ()))
        self._rooms = frozenset(d["rooms"]) if "rooms" in d else None
        self._not_rooms = frozenset(d.get("not_rooms", ()))
        self._contains_url: bool | None = d.get("contains_url")
        self._everything = not any(
            k in d for k in _ROOM_EVENT_FILTER_LISTS + ("contains_url",)
        )

    def get_limit(self, default: int, maximum: int) -> int:
        """The limit to apply: the requested one (or C{default}), at most C{maximum}."""
        limit = default if self.limit is None else self.limit
        return max(0, min(limit, maximum))

    def allows_room(self, room_id: str) -> bool:
        """Whether C{rooms}/C{not_rooms} let this room through."""
        if room_id in self._not_rooms:
            return False
        return self._rooms is None or room_id in self._rooms

    def allows_type(self, event_type: str) -> bool:
        """Whether C{types}/C{not_types} let this type through."""
        if self._not_types is not None and self._not_types(event_type):
            return False
        return self._types is None or self._types(event_type)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the event (client or federation format dict) passes."""
        if self._everything:
            return True
        event_type = event.get("type")
        if isinstance(event_type, str) and not self.allows_type(event_type):
            return False
        sender = event.get("sender")
        if isinstance(sender, str):
            if sender in self._not_senders:
                return False
            if self._senders is not None and sender not in self._senders:
                return False
        room_id = event.get("room_id")
        if isinstance(room_id, str) and not self.allows_room(room_id):
            return False
        if self._contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, dict) and "url" in content
            if has_url != self._contains_url:
                return False
        return True

    def filter(self, events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The events that pass, in order."""
        if self._everything:
            return list(events)
        return [e for e in events if self.matches(e)]


class Filter:
    """
    A whole filter (C{sync_filter.yaml}): the sections as L{EventFilter}s
    plus C{event_fields}, C{event_format}, C{room.rooms}/C{not_rooms} and
    C{room.include_leave}.
    """

    def __init__(self, definition: Mapping[str, Any] | None = None) -> None:
        d = dict(definition or {})
        self.definition = d
        room = d.get("room") or {}
        self.event_fields: list[str] | None = d.get("event_fields")
        self.event_format: str = d.get("event_format", "client")
        self.presence = EventFilter(d.get("presence"))
        self.account_data = EventFilter(d.get("account_data"))
        self.room_timeline = EventFilter(room.get("timeline"))
        self.room_state = EventFilter(room.get("state"))
        self.room_ephemeral = EventFilter(room.get("ephemeral"))
        self.room_account_data = EventFilter(room.get("account_data"))
        self.include_leave: bool = bool(room.get("include_leave", False))
        self._rooms = frozenset(room["rooms"]) if "rooms" in room else None
        self._not_rooms = frozenset(room.get("not_rooms", ()))

    @classmethod
    def from_json(cls, definition: Any) -> "Filter":
        """Validate, then parse (400 M_BAD_JSON when invalid)."""
        validate_filter(definition)
        return cls(definition)

    def allows_room(self, room_id: str) -> bool:
        """C{room.rooms}/C{room.not_rooms}, applied before the room sections."""
        if room_id in self._not_rooms:
            return False
        return self._rooms is None or room_id in self._rooms

    def project(self, event: dict[str, Any]) -> dict[str, Any]:
        """Apply C{event_fields} to one (serialised) event."""
        if self.event_fields is None:
            return event
        return apply_event_fields(event, self.event_fields)


def room_event_filter_from_json(definition: Any) -> EventFilter:
    """
    A C{RoomEventFilter} as the C{filter} query parameter of C{/messages}
    and C{/context} gives it (not a whole sync filter), validated.
    """
    _check_event_filter(definition, "", room_event=True)
    return EventFilter(definition)


def apply_event_fields(event: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """
    Keep only the listed dot-separated paths of C{event}
    (C{["content.body"]} keeps C{{"content": {"body": ...}}}).
    """
    out: dict[str, Any] = {}
    for path in fields:
        parts = parse_path(path)  # appendices "Dot-separated property paths"
        src: Any = event
        for part in parts:
            if not isinstance(src, dict) or part not in src:
                break
            src = src[part]
        else:
            dst = out
            for part in parts[:-1]:
                dst = dst.setdefault(part, {})
                if not isinstance(dst, dict):
                    break
            else:
                dst[parts[-1]] = src
    return out


class FilterHandler:
    """Stores filters and resolves the C{filter} query parameter."""

    def __init__(self, store: "FilterStore") -> None:
        self.store = store

    async def create(self, requester_id: str, user_id: str, definition: Any) -> str:
        """C{POST /user/{userId}/filter}: validate, store, return the ID."""
        if requester_id != user_id:
            raise forbidden("Cannot create filters for other users.")
        validate_filter(definition)
        return await self.store.add(user_id, definition)

    async def get(self, requester_id: str, user_id: str, filter_id: str) -> dict[str, Any]:
        """C{GET /user/{userId}/filter/{filterId}}: the definition, or 404."""
        if requester_id != user_id:
            raise forbidden("Cannot get filters of other users.")
        definition = await self.store.get(user_id, filter_id)
        if definition is None:
            raise not_found("Unknown filter.")
        return definition

    async def resolve(self, user_id: str, param: str | None) -> Filter:
        """
        The L{Filter} for a C{filter} query parameter: inline JSON when it
        starts with C{{}, else a stored filter ID of C{user_id}; no
        parameter is the all-including filter.

        @raise MatrixError: 400 M_BAD_JSON/M_NOT_JSON for bad inline JSON,
            404 M_NOT_FOUND for an unknown filter ID.
        """
        if param is None or param == "":
            return Filter()
        if param.lstrip().startswith("{"):
            try:
                definition = json.loads(param)
            except ValueError:
                raise MatrixError(400, Codes.NOT_JSON, "The filter is not valid JSON.") from None
            return Filter.from_json(definition)
        definition = await self.store.get(user_id, param)
        if definition is None:
            raise not_found("Unknown filter.")
        return Filter(definition)

    async def resolve_room_event_filter(self, user_id: str, param: str | None) -> EventFilter:
        """
        The L{EventFilter} for the C{filter} parameter of C{/messages} and
        C{/context}: inline JSON is a C{RoomEventFilter}; a stored filter
        ID gives that filter's C{room.timeline} section.
        """
        if param is None or param == "":
            return EventFilter(None)
        if param.lstrip().startswith("{"):
            try:
                definition = json.loads(param)
            except ValueError:
                raise MatrixError(400, Codes.NOT_JSON, "The filter is not valid JSON.") from None
            return room_event_filter_from_json(definition)
        return (await self.resolve(user_id, param)).room_timeline
