"""
Walking auth chains in the store: the closure of events under
C{auth_events} (server-server-api "Auth chain"; rooms/v2 "Auth chain").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore


async def load_closure(store: "EventStore", event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    """
    The stored events among C{event_ids} and, recursively, among their
    auth events, by ID. Unknown IDs are left out. Read in batches, one
    per level of the chain.
    """
    found: dict[str, StoredEvent] = {}
    frontier = set(event_ids)
    while frontier:
        events = await store.get_events(frontier)
        asked = frontier
        frontier = set()
        for event_id, event in events.items():
            found[event_id] = event
        for event in events.values():
            for auth_id in event.auth_event_ids():
                if auth_id not in found and auth_id not in asked:
                    frontier.add(auth_id)
    return found


async def auth_chain(store: "EventStore", event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    """The auth chain of the events C{event_ids} (their auth events, recursively; not themselves)."""
    starts = await store.get_events(event_ids)
    auth_ids = {a for ev in starts.values() for a in ev.auth_event_ids()}
    return await load_closure(store, auth_ids)
