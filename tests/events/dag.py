"""
Test helper: build small room DAGs of L{Event}s with made-up event IDs.

A L{Room} holds every event by ID (its L{Room.get} is the C{get_event} of
state resolution). Events are added on top of a I{state} (a
C{(type, state_key) -> event_id} map) and a list of prev events; their
C{auth_events} are chosen from that state by the auth events selection.
"""

from __future__ import annotations

import itertools
from typing import Any

from conduit_tw.events.auth_rules import AuthError, auth_types_for_event, check_auth
from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import RoomVersion

State = dict[tuple[str, str], str]

ALICE = "@alice:a.example"
BOB = "@bob:b.example"
CHARLIE = "@charlie:c.example"
DAVE = "@dave:d.example"


class Room:
    """A room under construction; C{version} decides the event format."""

    def __init__(self, version: RoomVersion, creator: str = ALICE) -> None:
        self.version = version
        self.creator = creator
        self.events: dict[str, Event] = {}
        self._ids = itertools.count(1)
        self._ts = itertools.count(1000, 10)
        content: dict[str, Any] = {"room_version": version.identifier}
        if not version.implicit_room_creator:
            content["creator"] = creator
        if version.room_id_from_create_event:
            self.room_id = "!create"
        else:
            self.room_id = "!room:a.example"
        self.create = self.add({}, [], "m.room.create", creator, "", content,
                               event_id=self._make_id("create"), check=False)
        self.state: State = {("m.room.create", ""): self.create.event_id}
        self.last = self.create.event_id

    def _make_id(self, name: str | None = None) -> str:
        name = name or "e%d" % next(self._ids)
        return "$%s:a.example" % name if self.version.event_id_in_event else "$" + name

    def get(self, event_id: str) -> Event | None:
        """The C{get_event} callable for state resolution."""
        return self.events.get(event_id)

    def add(
        self,
        state: State,
        prev: list[str],
        etype: str,
        sender: str,
        state_key: str | None = None,
        content: dict[str, Any] | None = None,
        *,
        ts: int | None = None,
        event_id: str | None = None,
        check: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> Event:
        """
        Build one event on top of C{state} with the given prev events.
        With C{check}, raise L{AuthError} unless it passes the auth rules
        against C{state}.
        """
        content = content if content is not None else {}
        event_id = event_id or self._make_id()
        keys = auth_types_for_event(self.version, etype, sender, state_key, content)
        auth_ids = sorted(state[k] for k in keys if k in state)
        pdu: dict[str, Any] = {
            "type": etype,
            "sender": sender,
            "content": content,
            "origin_server_ts": ts if ts is not None else next(self._ts),
            "depth": 1 + max((self.events[p].depth for p in prev), default=0),
            "prev_events": self._refs(prev),
            "auth_events": self._refs(auth_ids),
            "hashes": {"sha256": "x"},
            "signatures": {},
        }
        if not (etype == "m.room.create" and self.version.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if self.version.event_id_in_event:
            pdu["event_id"] = event_id
        if extra:
            pdu.update(extra)
        event = Event(pdu, event_id, self.version)
        if check:
            auth_state = {k: self.events[v] for k, v in state.items()}
            if ("m.room.create", "") not in auth_state and etype != "m.room.create":
                raise AuthError("test room without create event")
            check_auth(event, auth_state)
        self.events[event_id] = event
        return event

    def _refs(self, ids: list[str]) -> list[Any]:
        if self.version.event_id_in_event:
            return [[i, {"sha256": "x"}] for i in ids]
        return list(ids)

    def send(
        self,
        etype: str,
        sender: str,
        state_key: str | None = None,
        content: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Event:
        """Add an event on the main line (after L{last}, on L{state})."""
        event = self.add(self.state, [self.last], etype, sender, state_key, content, **kw)
        self.last = event.event_id
        if state_key is not None:
            self.state = {**self.state, (etype, state_key): event.event_id}
        return event

    def branch(self) -> "Branch":
        """A fork starting at the current main line."""
        return Branch(self, dict(self.state), self.last)

    # Shorthands ---------------------------------------------------------

    def join(self, user: str, **kw: Any) -> Event:
        return self.send("m.room.member", user, user, {"membership": "join"}, **kw)

    def setup(
        self,
        users: dict[str, int] | None = None,
        join_rule: str = "public",
        members: tuple[str, ...] = (),
        **pl: Any,
    ) -> None:
        """Creator joins, power levels, join rules, then C{members} join."""
        self.join(self.creator)
        user_levels = dict(users or {})
        if self.version.privileged_creators:
            user_levels.pop(self.creator, None)  # v12: creators are implicit
        else:
            user_levels.setdefault(self.creator, 100)
        self.send("m.room.power_levels", self.creator, "", {"users": user_levels, **pl})
        self.send("m.room.join_rules", self.creator, "", {"join_rule": join_rule})
        for user in members:
            self.join(user)


class Branch:
    """A line of events forked from a room's main line."""

    def __init__(self, room: Room, state: State, last: str) -> None:
        self.room = room
        self.state = state
        self.last = last

    def send(
        self,
        etype: str,
        sender: str,
        state_key: str | None = None,
        content: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Event:
        event = self.room.add(self.state, [self.last], etype, sender, state_key, content, **kw)
        self.last = event.event_id
        if state_key is not None:
            self.state = {**self.state, (etype, state_key): event.event_id}
        return event
