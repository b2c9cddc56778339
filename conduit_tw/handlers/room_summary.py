"""
Room summaries and who may preview a room: C{GET /room_summary/{roomIdOrAlias}}
(room_summary.yaml, v1.15; also at MSC3266's unstable
C{/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary}
that clients still call), and the entries of the space hierarchy
(handlers/spaces.py) and of the published directory (handlers/directory.py,
L{public_chunk}).

A summary (definitions/room_summary.yaml) is built from the room's current
state: the C{PublishedRoomsChunk} fields (name, topic, avatar, canonical
alias, join rule, room type, C{world_readable}, C{guest_can_join}, joined
count) plus C{room_version}, C{encryption} and C{allowed_room_ids}.

A user may preview a room (L{RoomSummaries.accessible}) when one of the
hierarchy's conditions (space_hierarchy.yaml, C{rooms}) holds: they are
joined or invited; the join rule is C{public}; it is C{knock} or
C{knock_restricted} in a version that has it; it is C{restricted} (or
C{knock_restricted}) and they are joined to one of the rooms it allows; or
the history is C{world_readable}. Banned users never may. Without a user
(an unauthenticated summary request, which the spec allows) only the
public, knockable and world-readable cases count. Other rooms, and rooms
this server does not know, are 404 M_NOT_FOUND, so a summary does not
reveal that a room exists. Rooms we have no state for are summarised
through L{RoomSummaries.remote_summary} (federation C{/hierarchy}, written
elsewhere; unset: 404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.timeline import StoredEvent

StateKey = tuple[str, str]

#: The state a summary is built from.
SUMMARY_KEYS: list[StateKey] = [
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.topic", ""),
    ("m.room.avatar", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.join_rules", ""),
    ("m.room.history_visibility", ""),
    ("m.room.guest_access", ""),
    ("m.room.encryption", ""),
]

#: C{remote_summary(room_id, via)}: a summary of a room of another server
#: (the C{room} of its federation C{/hierarchy}), or None.
RemoteSummary = Callable[[str, list[str]], Awaitable["dict[str, Any] | None"]]


def plain_topic(content: Mapping[str, Any]) -> str | None:
    """The plain-text topic: C{topic}, else the text/plain entry of C{m.topic}."""
    topic = content.get("topic")
    if isinstance(topic, str) and topic:
        return topic
    block = content.get("m.topic")
    if isinstance(block, dict):
        block = block.get("m.text")
    if isinstance(block, list):
        for rep in block:
            if (
                isinstance(rep, dict)
                and rep.get("mimetype", "text/plain") == "text/plain"
                and isinstance(rep.get("body"), str)
                and rep["body"]
            ):
                return rep["body"]
    return None


def public_chunk(room_id: str, state: Mapping[StateKey, "StoredEvent"]) -> dict[str, Any]:
    """
    The C{PublishedRoomsChunk} fields of a room from its state (every field
    but C{num_joined_members}).
    """

    def content(etype: str) -> Mapping[str, Any]:
        ev = state.get((etype, ""))
        return ev.content if ev is not None else {}

    chunk: dict[str, Any] = {"room_id": room_id}
    for key, etype, field in (
        ("name", "m.room.name", "name"),
        ("avatar_url", "m.room.avatar", "url"),
        ("canonical_alias", "m.room.canonical_alias", "alias"),
        ("join_rule", "m.room.join_rules", "join_rule"),
        ("room_type", "m.room.create", "type"),
    ):
        value = content(etype).get(field)
        if isinstance(value, str) and value:
            chunk[key] = value
    topic = plain_topic(content("m.room.topic"))
    if topic is not None:
        chunk["topic"] = topic
    chunk["world_readable"] = (
        content("m.room.history_visibility").get("history_visibility") == "world_readable"
    )
    chunk["guest_can_join"] = content("m.room.guest_access").get("guest_access") == "can_join"
    return chunk


def allowed_room_ids(join_rules: Mapping[str, Any]) -> list[str]:
    """The room IDs of the C{m.room_membership} conditions of restricted join rules."""
    allow = join_rules.get("allow")
    return [
        a["room_id"]
        for a in (allow if isinstance(allow, list) else [])
        if isinstance(a, dict) and a.get("type") == "m.room_membership"
        and isinstance(a.get("room_id"), str)
    ]


class RoomSummaries:
    """See the module docstring."""

    def __init__(
        self,
        store: "EventStore",
        resolve_alias: Callable[[str], Awaitable[dict[str, Any]]],
    ) -> None:
        """
        @param resolve_alias: C{alias -> {"room_id", "servers"}} (ours and
            other servers'; L{DirectoryHandler.resolve_alias}).
        """
        self.store = store
        self.resolve_alias = resolve_alias
        #: Summaries of rooms this server has no state for (None: none).
        self.remote_summary: RemoteSummary | None = None

    async def local_summary(self, room_id: str) -> dict[str, Any] | None:
        """The summary of a room we have state for (None otherwise)."""
        room = await self.store.get_room(room_id)
        if room is None:
            return None
        head = await self.store.head(room)
        if not head.statehash:
            return None
        state = await self.store.state_events(head.statehash, SUMMARY_KEYS)
        summary = public_chunk(room_id, state)
        summary["num_joined_members"] = head.joined
        summary["room_version"] = room.version.identifier
        enc = state.get(("m.room.encryption", ""))
        if enc is not None and isinstance(enc.content.get("algorithm"), str):
            summary["encryption"] = enc.content["algorithm"]
        jr = state.get(("m.room.join_rules", ""))
        if jr is not None and summary.get("join_rule") in ("restricted", "knock_restricted"):
            summary["allowed_room_ids"] = allowed_room_ids(jr.content)
        return summary

    async def accessible(self, user_id: str | None, summary: Mapping[str, Any]) -> bool:
        """Whether C{user_id} (None: unauthenticated) may preview the summarised room."""
        membership = None
        if user_id is not None:
            membership = await self.store.membership(user_id, summary["room_id"])
            if membership in ("join", "invite"):
                return True
            if membership == "ban":
                return False
        if summary.get("world_readable"):
            return True
        rule = summary.get("join_rule", "public")
        if rule == "public":
            return True
        version = KNOWN_ROOM_VERSIONS.get(summary.get("room_version", ""))
        if version is not None and (
            (rule == "knock" and version.knocking)
            or (rule == "knock_restricted" and version.knock_restricted)
        ):
            return True
        if rule in ("restricted", "knock_restricted") and user_id is not None:
            for other in summary.get("allowed_room_ids") or ():
                if await self.store.membership(user_id, other) == "join":
                    return True
        return False

    async def summary(
        self, user_id: str | None, room_id_or_alias: str, via: list[str]
    ) -> dict[str, Any]:
        """C{GET /room_summary/{roomIdOrAlias}} for C{user_id} (None: no token)."""
        if room_id_or_alias.startswith("#"):
            answer = await self.resolve_alias(room_id_or_alias)
            room_id = answer["room_id"]
            via = [*via, *answer.get("servers", [])]
        elif room_id_or_alias.startswith("!"):
            room_id = room_id_or_alias
        else:
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a room ID or alias")
        summary = await self.local_summary(room_id)
        if summary is None and self.remote_summary is not None:
            remote = await self.remote_summary(room_id, via)
            if remote is not None and remote.get("room_id") == room_id:
                summary = dict(remote)
                summary.pop("children_state", None)
        if summary is None or not await self.accessible(user_id, summary):
            raise not_found("Room not found or not accessible")
        if user_id is not None:
            summary["membership"] = await self.store.membership(user_id, room_id) or "leave"
        return summary
