"""
State resolution v2 (room versions 2-11, fragments/v2-state-res.md) and
v2.1 (room version 12, rooms/v12 "State resolution").

v2.1 differs in two places: the first iterative auth checks start from
the empty state instead of the unconflicted state map, and the full
conflicted set also contains the *conflicted state subgraph*.

Everything is computed from the events' C{auth_events} through
C{get_event}; each event is fetched once per call. In room v12 the create
event is not listed in C{auth_events} but is implied by the room ID, so
it is treated as an extra auth event here (it is in every auth chain, so
it never enters the auth difference).
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Iterable, Mapping, Sequence

from conduit_tw.events.auth_rules import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    AuthError,
    auth_types_for,
    check_auth,
    get_user_power_level,
)
from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import RoomVersion, StateResAlgorithm
from conduit_tw.events.state_res_v1 import StateView

StateKey = tuple[str, str]
GetEvent = Callable[[str], "Event | None"]


class _Graph:
    """The auth DAG as far as C{get_event} knows it, with per-call caches."""

    def __init__(self, get_event: GetEvent) -> None:
        self._get_event = get_event
        self._events: dict[str, Event | None] = {}
        self._auth_ids: dict[str, tuple[str, ...]] = {}
        self._pl_parent: dict[str, str | None] = {}

    def get(self, event_id: str) -> Event | None:
        try:
            return self._events[event_id]
        except KeyError:
            event = self._events[event_id] = self._get_event(event_id)
            return event

    def auth_ids(self, event_id: str) -> tuple[str, ...]:
        """The event's auth event IDs (plus, in v12, its create event)."""
        ids = self._auth_ids.get(event_id)
        if ids is None:
            event = self.get(event_id)
            if event is None:
                ids = ()
            else:
                listed = event.auth_event_ids()
                create_id = _implied_create_id(event)
                if create_id is not None and create_id not in listed:
                    listed = listed + [create_id]
                ids = tuple(dict.fromkeys(listed))
            self._auth_ids[event_id] = ids
        return ids

    def auth_state(self, event_id: str) -> dict[StateKey, Event]:
        """The event's (non-rejected) auth events by (type, state_key)."""
        out: dict[StateKey, Event] = {}
        for aid in self.auth_ids(event_id):
            aev = self.get(aid)
            if aev is not None and not aev.rejected and aev.state_key is not None:
                out.setdefault((aev.type, aev.state_key), aev)
        return out

    def pl_parent(self, event_id: str) -> str | None:
        """The m.room.power_levels event among the event's auth events."""
        if event_id in self._pl_parent:
            return self._pl_parent[event_id]
        found = None
        for aid in self.auth_ids(event_id):
            aev = self.get(aid)
            if aev is not None and aev.type == "m.room.power_levels" and aev.state_key == "":
                found = aid
                break
        self._pl_parent[event_id] = found
        return found

    def closure(self, starts: Iterable[str]) -> set[str]:
        """C{starts} and every event reachable from them by auth edges."""
        seen = set(starts)
        stack = list(seen)
        while stack:
            for aid in self.auth_ids(stack.pop()):
                if aid not in seen:
                    seen.add(aid)
                    stack.append(aid)
        return seen


def _implied_create_id(event: Event) -> str | None:
    """v12: the create event ID named by a (non-create) event's room ID."""
    if not event.room_version.room_id_from_create_event or event.type == "m.room.create":
        return None
    room_id = event.room_id
    if isinstance(room_id, str) and room_id.startswith("!"):
        return "$" + room_id[1:]
    return None


def _ts(event: Event) -> int:
    ts = event.origin_server_ts
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0


def separate(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """
    The unconflicted state map (keys present in every state with the same
    event) and the conflicted state set, per key (fragments/v2-state-res.md
    "Unconflicted state map and conflicted state set").
    """
    values: dict[StateKey, set[str]] = {}
    counts: dict[StateKey, int] = {}
    for state in state_sets:
        for key, event_id in state.items():
            values.setdefault(key, set()).add(event_id)
            counts[key] = counts.get(key, 0) + 1
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, ids in values.items():
        if len(ids) == 1 and counts[key] == len(state_sets):
            unconflicted[key] = next(iter(ids))
        else:
            conflicted[key] = ids
    return unconflicted, conflicted


def is_power_event(event: Event) -> bool:
    """
    Power events (fragments/v2-state-res.md "Power events"): state events
    of type m.room.power_levels or m.room.join_rules, and memberships
    leave/ban whose sender is not the target (kicks and bans).
    """
    if event.state_key is None:
        return False
    if event.type in ("m.room.power_levels", "m.room.join_rules"):
        return True
    return (
        event.type == "m.room.member"
        and event.membership() in ("leave", "ban")
        and event.sender != event.state_key
    )


def _auth_difference(
    graph: _Graph, state_sets: Sequence[Mapping[StateKey, str]]
) -> set[str]:
    """
    Union minus intersection of the full auth chains of the state sets
    ("Auth difference"). Each state's chain is taken to include its own
    events, so an event present in every state never enters the
    difference (as Synapse computes it).
    """
    chains = [graph.closure(set(s.values())) for s in state_sets]
    union = set().union(*chains)
    common = set(chains[0]).intersection(*chains[1:])
    return union - common


def _conflicted_subgraph(graph: _Graph, conflicted: set[str]) -> set[str]:
    """
    rooms/v12 "Conflicted state subgraph": the events on auth paths from a
    conflicted event to another (endpoints included), i.e. those reachable
    from a conflicted event that can themselves reach one.
    """
    below = graph.closure(conflicted)
    parents: dict[str, list[str]] = {}
    for eid in below:
        for aid in graph.auth_ids(eid):
            parents.setdefault(aid, []).append(eid)
    # Walk upwards from the conflicted events, staying inside `below`.
    reaching = set(conflicted)
    stack = list(conflicted)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in reaching:
                reaching.add(parent)
                stack.append(parent)
    return reaching & below


def _sender_power(graph: _Graph, event_id: str) -> int | float:
    """The sender's power level according to the event's own auth events."""
    event = graph.get(event_id)
    assert event is not None
    return get_user_power_level(event.sender, graph.auth_state(event_id))


def _reverse_topological_power_order(
    graph: _Graph, events: set[str]
) -> list[str]:
    """
    "Reverse topological power ordering": Kahn's algorithm over the auth
    DAG restricted to C{events} (an edge x -> y when y is reachable from x
    through events outside the set), taking at each step the smallest
    candidate by (greater sender power, smaller origin_server_ts, smaller
    event_id).
    """
    # nearest[n], for n outside `events`: the members of `events` reachable
    # from n through non-members only.
    nearest: dict[str, frozenset[str]] = {}
    empty: frozenset[str] = frozenset()

    def nearest_from(node: str) -> frozenset[str]:
        # Iterative post-order DFS over non-members (cycle-safe).
        stack: list[tuple[str, bool]] = [(node, False)]
        in_progress: set[str] = set()
        while stack:
            n, expanded = stack.pop()
            if n in nearest:
                continue
            if not expanded:
                in_progress.add(n)
                stack.append((n, True))
                for a in graph.auth_ids(n):
                    if a not in events and a not in nearest and a not in in_progress:
                        stack.append((a, False))
                continue
            acc: set[str] = set()
            for a in graph.auth_ids(n):
                if a in events:
                    acc.add(a)
                else:
                    acc.update(nearest.get(a, empty))
            nearest[n] = frozenset(acc) if acc else empty
            in_progress.discard(n)
        return nearest.get(node, empty)

    def nearest_below(start: str) -> set[str]:
        result: set[str] = set()
        for a in graph.auth_ids(start):
            if a in events:
                result.add(a)
            else:
                result.update(nearest_from(a))
        result.discard(start)
        return result

    parents_of: dict[str, set[str]] = {}
    out_degree: dict[str, int] = {}
    for eid in events:
        below = nearest_below(eid)
        out_degree[eid] = len(below)
        for b in below:
            parents_of.setdefault(b, set()).add(eid)

    def order_key(eid: str) -> tuple[float, int, str]:
        event = graph.get(eid)
        assert event is not None
        return (-_sender_power(graph, eid), _ts(event), eid)

    heap = [(order_key(e), e) for e, d in out_degree.items() if d == 0]
    heapq.heapify(heap)
    result: list[str] = []
    while heap:
        _, eid = heapq.heappop(heap)
        result.append(eid)
        for parent in parents_of.get(eid, ()):
            out_degree[parent] -= 1
            if out_degree[parent] == 0:
                heapq.heappush(heap, (order_key(parent), parent))
    return result


def _mainline_order(graph: _Graph, events: Iterable[str], power_levels_id: str | None) -> list[str]:
    """
    "Mainline ordering" based on the resolved power levels: by mainline
    position descending (infinity first), then origin_server_ts, then
    event_id.
    """
    position: dict[str, float] = {}
    pl = power_levels_id
    i = 0
    while pl is not None and pl not in position:
        position[pl] = i
        i += 1
        pl = graph.pl_parent(pl)

    def mainline_position(eid: str) -> float:
        # Walk e_1, e_2, ... (the power levels chain of the event, not the
        # event itself) until the mainline; memoise the whole walk.
        walk: list[str] = []
        walked: set[str] = set()
        cur = graph.pl_parent(eid)
        while cur is not None and cur not in position:
            if cur in walked:  # a cycle (malformed DAG): not on the mainline
                cur = None
                break
            walk.append(cur)
            walked.add(cur)
            cur = graph.pl_parent(cur)
        found = position[cur] if cur is not None else math.inf
        for w in walk:
            position[w] = found
        return found

    keyed = []
    for eid in events:
        event = graph.get(eid)
        assert event is not None
        keyed.append(((-mainline_position(eid), _ts(event), eid), eid))
    keyed.sort()
    return [eid for _, eid in keyed]


def _iterative_auth_checks(
    graph: _Graph, event_ids: Sequence[str], state: dict[StateKey, str]
) -> None:
    """
    "Iterative auth checks": apply each event to C{state} (in place) if
    the auth rules allow it against that state; a needed key missing from
    the state is taken from the event's own non-rejected auth events (in
    v12 the create event implied by the room ID counts as one).
    """
    view = StateView(state, graph.get)
    for eid in event_ids:
        event = graph.get(eid)
        if event is None or event.state_key is None:
            continue
        auth_state: dict[StateKey, Event] = graph.auth_state(eid)
        for key in auth_types_for(event) | {CREATE_KEY}:
            current = view.get(key)
            if current is not None:
                auth_state[key] = current
        try:
            check_auth(event, auth_state)
        except AuthError:
            continue
        state[(event.type, event.state_key)] = eid


def resolve_v2(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    get_event: GetEvent,
) -> dict[StateKey, str]:
    """
    Resolve states with state resolution v2 (rooms 2-11) or v2.1 (room
    12), per C{room_version.state_res} (fragments/v2-state-res.md
    "Algorithm"; rooms/v12 "Algorithm").
    """
    v2_1 = room_version.state_res is StateResAlgorithm.V2_1
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    graph = _Graph(get_event)

    conflicted_ids = set().union(*conflicted.values())
    full = conflicted_ids | _auth_difference(graph, state_sets)
    if v2_1:
        full |= _conflicted_subgraph(graph, conflicted_ids)
    full = {eid for eid in full if graph.get(eid) is not None}

    # Step 1: power events of the full conflicted set, plus the events of
    # their auth chains that are in the full conflicted set.
    powers = {eid for eid in full if is_power_event(graph.get(eid))}  # type: ignore[arg-type]
    below = graph.closure(a for p in powers for a in graph.auth_ids(p))
    selected = powers | (below & full)
    power_order = _reverse_topological_power_order(graph, selected)

    # Step 2: iterative auth checks from the unconflicted state (v2) or
    # from the empty state (v2.1).
    state: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    _iterative_auth_checks(graph, power_order, state)

    # Steps 3-4: the rest, in mainline order of the resolved power levels.
    rest = _mainline_order(graph, full - selected, state.get(POWER_LEVELS_KEY))
    _iterative_auth_checks(graph, rest, state)

    # Step 5: the unconflicted state map wins.
    state.update(unconflicted)
    return state
