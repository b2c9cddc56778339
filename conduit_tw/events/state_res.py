"""
State resolution: the resolved room state of several states (e.g. the
states after each of an event's C{prev_events}).

Dispatches on the room version's algorithm: v1 (rooms/v1 "State
resolution", L{conduit_tw.events.state_res_v1}), v2 (rooms v2-11,
fragments/v2-state-res.md) and v2.1 (rooms/v12 "State resolution"), both
in L{conduit_tw.events.state_res_v2}. Pure: events come from C{get_event}.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import RoomVersion, StateResAlgorithm
from conduit_tw.events.state_res_v1 import resolve_v1
from conduit_tw.events.state_res_v2 import resolve_v2

StateKey = tuple[str, str]

__all__ = ["resolve_state"]


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    get_event: Callable[[str], Event | None],
) -> dict[StateKey, str]:
    """
    Resolve C{state_sets} (each C{(type, state_key) -> event_id}) into one
    state, with the algorithm of C{room_version}.

    C{get_event} must return every event of the states and of their auth
    chains (rejected ones included, flagged C{rejected}); an ID it does not
    know is left out of the computation. The result does not depend on the
    order of C{state_sets}.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    if room_version.state_res is StateResAlgorithm.V1:
        return resolve_v1(room_version, state_sets, get_event)
    return resolve_v2(room_version, state_sets, get_event)
