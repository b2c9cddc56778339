"""
Benchmark of state resolution on a large conflict (not a test).

Builds a room with a long common history, then several forks with many
joins, topic changes, power level changes, kicks and bans each, and times
resolving the forks' states with state resolution v2 (room version 2 and
11) and v2.1 (room version 12). Prints milliseconds.

    .venv/bin/python bench/state_res_bench.py [--forks 4] [--per-fork 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from conduit_tw.events.auth_rules import auth_types_for_event  # noqa: E402
from conduit_tw.events.event import Event  # noqa: E402
from conduit_tw.events.room_versions import RoomVersion, get_room_version  # noqa: E402
from conduit_tw.events.state_res import resolve_state  # noqa: E402

State = dict[tuple[str, str], str]
CREATOR = "@creator:bench.example"


class Builder:
    """Makes events with sequential IDs; states are copied per fork."""

    def __init__(self, version: RoomVersion) -> None:
        self.version = version
        self.events: dict[str, Event] = {}
        self.n = 0
        self.room_id = "!create" if version.room_id_from_create_event else "!room:bench.example"

    def add(self, state: State, prev: str | None, etype: str, sender: str,
            state_key: str | None, content: dict[str, Any]) -> tuple[str, State]:
        self.n += 1
        event_id = "$e%d" % self.n if etype != "m.room.create" else "$create"
        if self.version.event_id_in_event:
            event_id += ":bench.example"
        keys = auth_types_for_event(self.version, etype, sender, state_key, content)
        auth = sorted(state[k] for k in keys if k in state)
        prevs = [prev] if prev else []
        if self.version.event_id_in_event:
            auth_refs: list[Any] = [[a, {}] for a in auth]
            prev_refs: list[Any] = [[p, {}] for p in prevs]
        else:
            auth_refs, prev_refs = auth, prevs
        pdu: dict[str, Any] = {
            "type": etype, "sender": sender, "content": content,
            "origin_server_ts": 1_000_000 + self.n, "depth": self.n,
            "auth_events": auth_refs, "prev_events": prev_refs,
        }
        if not (etype == "m.room.create" and self.version.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        self.events[event_id] = Event(pdu, event_id, self.version)
        if state_key is not None:
            state = {**state, (etype, state_key): event_id}
        return event_id, state


def build(version: RoomVersion, history: int, forks: int, per_fork: int) -> tuple[Builder, list[State]]:
    b = Builder(version)
    create_content = {} if version.implicit_room_creator else {"creator": CREATOR}
    last, state = b.add({}, None, "m.room.create", CREATOR, "", create_content)
    last, state = b.add(state, last, "m.room.member", CREATOR, CREATOR, {"membership": "join"})
    admins = ["@admin%d:bench.example" % i for i in range(5)]
    users = {a: 75 for a in admins}
    if not version.privileged_creators:
        users[CREATOR] = 100
    last, state = b.add(state, last, "m.room.power_levels", CREATOR, "", {"users": users})
    last, state = b.add(state, last, "m.room.join_rules", CREATOR, "", {"join_rule": "public"})
    for a in admins:
        last, state = b.add(state, last, "m.room.member", a, a, {"membership": "join"})
    for i in range(history):
        user = "@old%d:bench.example" % i
        last, state = b.add(state, last, "m.room.member", user, user, {"membership": "join"})
        if i % 50 == 0:
            users = {**users, user: 10}
            last, state = b.add(state, last, "m.room.power_levels", CREATOR, "", {"users": users})
    fork_states = []
    for f in range(forks):
        s, prev = state, last
        fork_users = dict(users)
        for i in range(per_fork):
            admin = admins[(f + i) % len(admins)]
            user = "@f%d_%d:bench.example" % (f, i)
            kind = i % 8
            if kind in (0, 1, 2):
                prev, s = b.add(s, prev, "m.room.member", user, user, {"membership": "join"})
            elif kind == 3:
                prev, s = b.add(s, prev, "m.room.topic", admin, "", {"topic": "%d/%d" % (f, i)})
            elif kind == 4:
                fork_users = {**fork_users, user: 5}
                prev, s = b.add(s, prev, "m.room.power_levels", admin, "", {"users": fork_users})
            elif kind == 5:
                target = "@old%d:bench.example" % ((f * per_fork + i) % max(history, 1))
                prev, s = b.add(s, prev, "m.room.member", admin, target, {"membership": "ban"})
            elif kind == 6:
                target = "@f%d_%d:bench.example" % (f, i - 6)
                prev, s = b.add(s, prev, "m.room.member", admin, target, {"membership": "leave"})
            else:
                prev, s = b.add(s, prev, "m.room.message", user, None, {"body": "x"})
        fork_states.append(s)
    return b, fork_states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=2000, help="common events before the fork")
    parser.add_argument("--forks", type=int, default=4)
    parser.add_argument("--per-fork", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for identifier in ("2", "11", "12"):
        version = get_room_version(identifier)
        b, states = build(version, args.history, args.forks, args.per_fork)
        conflicted = {
            k for s in states for k in s if len({st.get(k) for st in states}) > 1
        }
        conflicted_events = {st[k] for st in states for k in conflicted if k in st}
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = resolve_state(version, states, b.events.get)
            best = min(best, time.perf_counter() - started)
        print(
            "room v%-2s (%s): %d events, %d conflicted keys, %d conflicted events, "
            "%d resolved keys: %.1f ms"
            % (identifier, version.state_res.name, len(b.events), len(conflicted),
               len(conflicted_events), len(result), best * 1000)
        )


if __name__ == "__main__":
    main()
