"""
Spaces over federation (server-server-api "Spaces",
C{GET /_matrix/federation/v1/hierarchy/{roomId}}; client-server-api
"Spaces" for the room summary's fields) both ways.

Served (L{SpaceHierarchy.serve}): the space's summary with its
C{m.space.child} events (stripped state plus C{origin_server_ts}; only
children with a non-empty C{via} list are valid, and with
C{suggested_only} only suggested ones), then each child room we hold:
its summary in C{children} when the asking server could peek or join it,
its ID in C{inaccessible_children} otherwise; children we know nothing
about are left out, as the spec says. A server "could peek or join" a
room that is world readable, public, knockable, or restricted to a room
one of its users is joined to, or where one of its users is joined. The
space itself must pass the room's server ACL and be accessible that way
(404 otherwise, as for an unknown room: nothing leaks).

Asked (L{SpaceHierarchy.fetch_remote}): for rooms we are not in, the
client C{/hierarchy} (issue 15's) calls this with the C{via} servers of
the child event; the first well-formed answer is returned as it came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import quote

from conduit_tw.errors import not_found
from conduit_tw.federation.acl import SERVER_ACL, is_server_allowed
from conduit_tw.federation.event_serving import server_of
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.federation.hierarchy")

SPACE_CHILD = "m.space.child"
#: Children looked at per space (the rest are left out).
MAX_CHILDREN = 100
#: Servers asked per remote space before giving up.
MAX_SERVERS = 5
_SUMMARY_STATE = (
    ("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", ""),
    ("m.room.canonical_alias", ""), ("m.room.join_rules", ""), ("m.room.history_visibility", ""),
    ("m.room.guest_access", ""), ("m.room.encryption", ""),
)


def _content(events: dict[tuple[str, str], StoredEvent], key: tuple[str, str]) -> dict[str, Any]:
    ev = events.get(key)
    return ev.content if ev is not None and isinstance(ev.content, dict) else {}


def valid_child(event: StoredEvent, suggested_only: bool = False) -> bool:
    """An C{m.space.child} event naming a room with a non-empty C{via} list (and suggested, if asked)."""
    content = event.content if isinstance(event.content, dict) else {}
    via = content.get("via")
    if not isinstance(via, list) or not via or not event.state_key:
        return False
    return not suggested_only or content.get("suggested") is True


class SpaceHierarchy:
    """See the module docstring."""

    def __init__(self, server_name: str, store: "EventStore", client: Callable[[], Any]) -> None:
        self.server_name = server_name
        self.store = store
        #: Returns the federation client (looked up at each request).
        self.client = client

    # -- summaries

    async def summary(self, room_id: str) -> dict[str, Any] | None:
        """The room summary (client-server-api "Spaces") of a room we hold state for, or None."""
        room = await self.store.get_room(room_id)
        if room is None or not (await self.store.head(room)).statehash:
            return None
        events = await self.store.current_state_events(room_id, _SUMMARY_STATE)
        create = _content(events, ("m.room.create", ""))
        join_rules = _content(events, ("m.room.join_rules", ""))
        out: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": len(await self.store.members(room_id, "join")),
            "world_readable": _content(events, ("m.room.history_visibility", "")).get("history_visibility")
            == "world_readable",
            "guest_can_join": _content(events, ("m.room.guest_access", "")).get("guest_access") == "can_join",
            "join_rule": join_rules.get("join_rule", "invite"),
            "room_version": room.version.identifier,
        }
        for key, field, name in (
            (("m.room.name", ""), "name", "name"), (("m.room.topic", ""), "topic", "topic"),
            (("m.room.avatar", ""), "url", "avatar_url"),
            (("m.room.canonical_alias", ""), "alias", "canonical_alias"),
            (("m.room.encryption", ""), "algorithm", "encryption"),
        ):
            value = _content(events, key).get(field)
            if isinstance(value, str) and value:
                out[name] = value
        if isinstance(create.get("type"), str):
            out["room_type"] = create["type"]
        allowed = [
            a.get("room_id") for a in join_rules.get("allow", []) or []
            if isinstance(a, dict) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)
        ]
        if out["join_rule"] in ("restricted", "knock_restricted"):
            out["allowed_room_ids"] = allowed
        return out

    async def server_can_access(self, origin: str, summary: dict[str, Any]) -> bool:
        """Could C{origin}'s users peek or join the room (see the module docstring)?"""
        room_id = summary["room_id"]
        acl = await self.store.current_state_event(room_id, SERVER_ACL, "")
        if not is_server_allowed(origin, acl.content if acl is not None else None):
            return False
        if summary["world_readable"] or summary["join_rule"] in ("public", "knock", "knock_restricted"):
            return True
        if await self._server_joined(origin, room_id):
            return True
        for allowed in summary.get("allowed_room_ids", []):
            if await self._server_joined(origin, allowed):
                return True
        return False

    async def _server_joined(self, origin: str, room_id: str) -> bool:
        return any(server_of(u) == origin for u in await self.store.members(room_id, "join"))

    async def children_state(self, room_id: str, suggested_only: bool = False) -> list[dict[str, Any]]:
        """The space's valid C{m.space.child} events, stripped, with C{origin_server_ts}."""
        state = await self.store.current_state_ids(room_id)
        keys = [k for k in state if k[0] == SPACE_CHILD][:MAX_CHILDREN]
        events = await self.store.current_state_events(room_id, keys)
        return [
            {"type": e.type, "state_key": e.state_key, "content": e.content, "sender": e.sender,
             "origin_server_ts": e.origin_server_ts}
            for _, e in sorted(events.items()) if valid_child(e, suggested_only)
        ]

    # -- serving

    async def serve(self, origin: str, room_id: str, suggested_only: bool = False) -> dict[str, Any]:
        """C{GET /hierarchy/{roomId}} for C{origin}."""
        summary = await self.summary(room_id)
        if summary is None or not await self.server_can_access(origin, summary):
            raise not_found("Unknown room")
        children_state = await self.children_state(room_id, suggested_only)
        children, inaccessible = [], []
        for child in children_state:
            child_summary = await self.summary(child["state_key"])
            if child_summary is None:
                continue  # we cannot tell anything about it
            if await self.server_can_access(origin, child_summary):
                children.append(child_summary)
            else:
                inaccessible.append(child["state_key"])
        return {
            "room": {**summary, "children_state": children_state},
            "children": children,
            "inaccessible_children": inaccessible,
        }

    # -- asking

    async def fetch_remote(
        self, room_id: str, via: Iterable[str], suggested_only: bool = False
    ) -> dict[str, Any] | None:
        """
        Ask the C{via} servers for a space we are not in; the first
        well-formed answer (C{room}, C{children}, C{inaccessible_children}),
        or None when none answered.
        """
        path = "/_matrix/federation/v1/hierarchy/%s" % quote(room_id, safe="")
        args = {"suggested_only": ["true" if suggested_only else "false"]}
        servers = [s for s in dict.fromkeys(via) if isinstance(s, str) and s != self.server_name]
        for server in servers[:MAX_SERVERS]:
            try:
                answer = await self.client().get_json(server, path, args)
            except Exception as e:
                log.info("hierarchy of {room} from {server} failed: {e}", room=room_id, server=server, e=e)
                continue
            if (
                isinstance(answer, dict) and isinstance(answer.get("room"), dict)
                and answer["room"].get("room_id") == room_id
                and isinstance(answer.get("children"), list)
                and isinstance(answer.get("inaccessible_children", []), list)
            ):
                answer.setdefault("inaccessible_children", [])
                return answer
        return None

    async def fetch_summary(self, room_id: str, via: Iterable[str]) -> dict[str, Any] | None:
        """
        The summary of a room we are not in: the C{room} of its federation
        C{/hierarchy} (MSC3266 has no federation endpoint of its own), or None.
        """
        answer = await self.fetch_remote(room_id, via)
        return None if answer is None else answer["room"]
