"""
Simulated remote servers for federation tests: each holds a real ed25519
key, crafts and signs events with it, and answers the federation requests
the pipeline makes (C{/event}, C{/state_ids}, C{/event_auth},
C{/get_missing_events}) from its own event graph. L{SimKeyring} verifies
with the simulated servers' real public keys; L{SimClient} routes the
pipeline's requests to the simulated server named as destination.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from signedjson.key import generate_signing_key, get_verify_key

from conduit_tw.events.auth_rules import auth_types_for_event
from conduit_tw.events.event_ids import event_id_from_reference_hash
from conduit_tw.events.room_versions import RoomVersion
from conduit_tw.events.signing import hash_and_sign_event, key_id_of, verify_json

StateMap = dict[tuple[str, str], str]

_ts = itertools.count(1_700_000_000_000)


class SimServer:
    """
    A remote homeserver: C{events} (ID -> PDU) and the state before each
    (C{state_before}); C{requests} records what it was asked.
    """

    def __init__(self, name: str, version: RoomVersion, room_id: str) -> None:
        self.name = name
        self.version = version
        self.room_id = room_id
        self.signing_key = generate_signing_key("sim")
        self.events: dict[str, dict[str, Any]] = {}
        self.state_before: dict[str, StateMap] = {}
        self.requests: list[tuple[str, str, Any]] = []
        #: Replace an answer: C{(method, first path segment after v1) -> callable(path, args)}.
        self.overrides: dict[tuple[str, str], Callable[[str, Any], Any]] = {}

    @property
    def verify_keys(self) -> dict[str, Any]:
        """This server's key by key ID."""
        return {key_id_of(self.signing_key): get_verify_key(self.signing_key)}

    # -- the graph

    def learn(self, event_id: str, pdu: Mapping[str, Any], state_before: StateMap) -> None:
        """Know an event made elsewhere (e.g. by the server under test)."""
        self.events[event_id] = copy.deepcopy(dict(pdu))
        self.state_before[event_id] = dict(state_before)

    def state_after(self, event_id: str) -> StateMap:
        """The state after an event of the graph (single-parent view)."""
        pdu = self.events[event_id]
        state = dict(self.state_before[event_id])
        if "state_key" in pdu:
            state[(pdu["type"], pdu["state_key"])] = event_id
        return state

    def make(
        self,
        sender: str,
        etype: str,
        content: dict[str, Any],
        prev: list[str],
        state_key: str | None = None,
        state: StateMap | None = None,
        sign_with: Any = None,
    ) -> tuple[str, dict[str, Any]]:
        """
        Build and sign an event on top of C{prev} (its state: the state
        after the first prev event unless C{state} is given), with auth
        events chosen from that state; returns C{(event_id, pdu)}.
        """
        if state is None:
            state = self.state_after(prev[0])
        wanted = auth_types_for_event(self.version, etype, sender, state_key, content)
        pdu: dict[str, Any] = {
            "room_id": self.room_id,
            "sender": sender,
            "type": etype,
            "content": content,
            "origin_server_ts": next(_ts),
            "depth": max(self.events[p]["depth"] for p in prev) + 1,
            "prev_events": list(prev),
            "auth_events": sorted(state[k] for k in wanted if k in state),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        digest = hash_and_sign_event(pdu, self.version, sign_with or self.signing_key, self.name)
        event_id = event_id_from_reference_hash(digest, self.version)
        self.learn(event_id, pdu, state)
        return event_id, copy.deepcopy(pdu)

    def auth_chain_ids(self, event_ids: list[str]) -> set[str]:
        """The auth chain (in this graph) of the events."""
        out: set[str] = set()
        todo = [a for e in event_ids if e in self.events for a in self.events[e]["auth_events"]]
        while todo:
            a = todo.pop()
            if a in out or a not in self.events:
                continue
            out.add(a)
            todo.extend(self.events[a]["auth_events"])
        return out

    # -- answering federation requests

    def answer(self, method: str, path: str, args: Any) -> Any:
        """The answer to one federation request (KeyError -> not found)."""
        self.requests.append((method, path, args))
        parts = [unquote(p) for p in path.split("/")]
        # /_matrix/federation/v1/<what>/...
        what = parts[4]
        override = self.overrides.get((method, what))
        if override is not None:
            return override(path, args)
        if what == "event":
            return {"origin": self.name, "origin_server_ts": 0, "pdus": [self.events[parts[5]]]}
        if what == "state_ids":
            at = args["event_id"]
            state = list(self.state_before[at].values())
            return {"pdu_ids": state, "auth_chain_ids": sorted(self.auth_chain_ids(state))}
        if what == "event_auth":
            return {"auth_chain": [self.events[a] for a in self.auth_chain_ids([parts[6]])]}
        if what == "get_missing_events":
            return {"events": self.missing_events(args)}
        raise KeyError(path)

    def missing_events(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """get_missing_events over the graph (breadth first from latest_events)."""
        seen = set(body["earliest_events"]) | set(body["latest_events"])
        frontier = [p for e in body["latest_events"] for p in self.events[e]["prev_events"]]
        found: list[str] = []
        while frontier and len(found) < body["limit"]:
            nxt = []
            for e in frontier:
                if e in seen or e not in self.events or len(found) >= body["limit"]:
                    continue
                seen.add(e)
                found.append(e)
                nxt.extend(self.events[e]["prev_events"])
            frontier = nxt
        found.sort(key=lambda e: self.events[e]["depth"])
        return [self.events[e] for e in found]


class SimKeyring:
    """The keyring interface, verifying with the simulated servers' real keys."""

    def __init__(self, servers: dict[str, SimServer]) -> None:
        self.servers = servers

    async def verify_json_for_server(
        self, server_name: str, obj: Mapping[str, Any], min_valid_until_ts: int = 0
    ) -> None:
        server = self.servers.get(server_name)
        verify_json(obj, server_name, server.verify_keys if server else {})


class SimClient:
    """The federation client interface, answered by the simulated servers."""

    def __init__(self, servers: dict[str, SimServer]) -> None:
        self.servers = servers

    async def get_json(self, destination: str, path: str, args: Any = None) -> Any:
        return self.servers[destination].answer("GET", path, args)

    async def post_json(self, destination: str, path: str, body: Any) -> Any:
        return self.servers[destination].answer("POST", path, body)
