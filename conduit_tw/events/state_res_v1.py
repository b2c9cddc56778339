"""
State resolution of room version 1 (rooms/v1 "State resolution").

Conflicts are resolved key by key: power levels, then join rules, then
memberships (each by ascending depth, applying events while they pass the
auth rules), then every other key (the deepest event that passes).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator, Mapping, Sequence

from conduit_tw.events.auth_rules import AuthError, POWER_LEVELS_KEY, check_auth
from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import RoomVersion

StateKey = tuple[str, str]
GetEvent = Callable[[str], "Event | None"]


class StateView(Mapping[StateKey, Event]):
    """
    A read-only C{(type, state_key) -> Event} view over a map of event IDs,
    fetching (and caching) events on demand; unknown events read as absent.
    """

    def __init__(self, ids: Mapping[StateKey, str], fetch: Callable[[str], Event | None]) -> None:
        self.ids = ids
        self._fetch = fetch

    def __getitem__(self, key: StateKey) -> Event:
        event_id = self.ids[key]
        event = self._fetch(event_id)
        if event is None:
            raise KeyError(key)
        return event

    def get(self, key: StateKey, default: Event | None = None) -> Event | None:  # type: ignore[override]
        event_id = self.ids.get(key)
        if event_id is None:
            return default
        event = self._fetch(event_id)
        return default if event is None else event

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[StateKey]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def separate_v1(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """
    Split into unconflicted state and conflicts. In v1 a conflict is only
    two states holding different events for one key; a key missing from
    some states is not a conflict.
    """
    values: dict[StateKey, set[str]] = {}
    for state in state_sets:
        for key, event_id in state.items():
            values.setdefault(key, set()).add(event_id)
    unconflicted = {k: next(iter(v)) for k, v in values.items() if len(v) == 1}
    conflicted = {k: v for k, v in values.items() if len(v) > 1}
    return unconflicted, conflicted


def resolve_v1(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    get_event: GetEvent,
) -> dict[StateKey, str]:
    """Resolve states with the room v1 algorithm (rooms/v1 "State resolution")."""
    unconflicted, conflicted = separate_v1(state_sets)
    cache: dict[str, Event | None] = {}

    def fetch(event_id: str) -> Event | None:
        if event_id not in cache:
            cache[event_id] = get_event(event_id)
        return cache[event_id]

    resolved: dict[StateKey, str] = dict(unconflicted)
    view = StateView(resolved, fetch)

    pending: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted.items():
        events = [e for e in (fetch(i) for i in sorted(ids)) if e is not None]
        if len(events) == 1:
            resolved[key] = events[0].event_id
        elif events:
            pending[key] = events

    def passes(event: Event) -> bool:
        try:
            check_auth(event, view)
        except AuthError:
            return False
        return True

    def resolve_auth_key(key: StateKey) -> None:
        # Ascending depth, then descending sha1(event_id).
        events = sorted(pending.pop(key), key=lambda e: _sha1(e.event_id), reverse=True)
        events.sort(key=lambda e: _int(e.depth))
        resolved[key] = events[0].event_id
        for event in events[1:]:
            if not passes(event):
                break
            resolved[key] = event.event_id

    if POWER_LEVELS_KEY in pending:
        resolve_auth_key(POWER_LEVELS_KEY)
    for event_type in ("m.room.join_rules", "m.room.member"):
        for key in sorted(k for k in pending if k[0] == event_type):
            resolve_auth_key(key)

    for key in sorted(pending):
        # Highest depth, then lowest sha1(event_id), that passes auth. When
        # none passes, the last candidate is kept, as other servers do.
        events = sorted(pending[key], key=lambda e: (-_int(e.depth), _sha1(e.event_id)))
        chosen = next((e for e in events if passes(e)), events[-1])
        resolved[key] = chosen.event_id
    return resolved
