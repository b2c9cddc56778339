"""
The space hierarchy (client-server-api "Spaces", "Discovering rooms within
spaces"; space_hierarchy.yaml): C{GET /rooms/{roomId}/hierarchy}.

- **Walk.** Depth first from the requested room: a room's entry is its
  summary (handlers/room_summary.py) with C{children_state}, the
  m.space.child events of a space-room (stripped, with
  C{origin_server_ts}; only those with a non-empty C{via} list, the spec's
  test for a valid link). Children are visited in the spec's order
  ("Ordering of children within a space": a valid C{order} first, by code
  points, then C{origin_server_ts}, then room ID), before the parent's next
  sibling. Only space-rooms (C{type: m.space}) have children. A room seen
  before on the walk is not visited again, so loops end.
- **Who sees what.** The requested room must be one the user may preview
  (L{RoomSummaries.accessible}), else 403 M_FORBIDDEN. Children the user
  may not preview are left out (and not descended into); their
  m.space.child events still appear in the parent's C{children_state},
  which the user can read anyway.
- **Options.** C{suggested_only} follows only children whose event says
  C{suggested: true}; C{max_depth} (default and maximum L{MAX_DEPTH}) stops
  descending at that depth (0: the room alone); C{limit} (default
  L{DEFAULT_LIMIT}, at most L{MAX_LIMIT}) rooms per page.
- **Pagination.** C{next_batch} is stateless: the root, C{max_depth},
  C{suggested_only} and the number of rooms already returned, so a later
  page walks again and skips that many rooms (the walk is deterministic for
  unchanged state). A token for another room, or C{max_depth} /
  C{suggested_only} given with other values than the token's, is 400
  M_INVALID_PARAM; when they are omitted the token's values apply.
- **Other servers' rooms.** A child this server has no state for is asked
  of L{SpaceHierarchy.remote_hierarchy} (federation C{GET /hierarchy},
  written by the federation side and assigned by the HomeServer) with the
  child's C{via}: its C{room} is the child's entry (the same preview rules
  apply), its C{children} answer grandchildren without another request.
  While it is unset such children are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.util.opaque import decode_token, encode_token

if TYPE_CHECKING:
    from conduit_tw.handlers.room_summary import RoomSummaries
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.timeline import StoredEvent

#: Rooms per page without C{limit}, and the most per page.
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
#: C{max_depth} without one, and the deepest allowed.
MAX_DEPTH = 10
#: Rooms one walk visits at most (a bound on one request's work).
MAX_VISITED = 5000

SPACE_CHILD = "m.space.child"

#: C{remote_hierarchy(room_id, via)}: the federation C{/hierarchy} answer
#: (C{room}, C{children}, C{inaccessible_children}) or None.
RemoteHierarchy = Callable[[str, list[str]], Awaitable["dict[str, Any] | None"]]


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


def valid_order(order: Any) -> bool:
    """An C{order} of m.space.child: at most 50 characters, each 0x20-0x7E."""
    return (
        isinstance(order, str) and len(order) <= 50 and all(0x20 <= ord(c) <= 0x7E for c in order)
    )


def child_sort_key(child: Mapping[str, Any]) -> tuple[Any, ...]:
    """The spec's order of a stripped child event (with C{origin_server_ts})."""
    order = child["content"].get("order")
    if valid_order(order):
        return (0, order, child["origin_server_ts"], child["state_key"])
    return (1, "", child["origin_server_ts"], child["state_key"])


def child_events(events: list["StoredEvent"]) -> list[dict[str, Any]]:
    """The valid m.space.child events as stripped state with C{origin_server_ts}, ordered."""
    out = []
    for ev in events:
        via = ev.content.get("via")
        if not (isinstance(via, list) and via and all(isinstance(v, str) for v in via)):
            continue
        out.append({
            "type": SPACE_CHILD,
            "state_key": ev.state_key,
            "content": dict(ev.content),
            "sender": ev.sender,
            "origin_server_ts": ev.pdu.get("origin_server_ts", 0),
        })
    out.sort(key=child_sort_key)
    return out


def _decode(token: str) -> tuple[str, int, bool, int]:
    """C{(root, max_depth, suggested_only, skip)} of a C{from} token; 400 otherwise."""
    data = decode_token(token)
    root, depth, suggested, skip = data.get("r"), data.get("d"), data.get("s"), data.get("n")
    if not (
        isinstance(root, str) and type(depth) is int and isinstance(suggested, bool)
        and type(skip) is int and skip >= 0 and 0 <= depth <= MAX_DEPTH
    ):
        raise _invalid("Unknown pagination token")
    return root, depth, suggested, skip


class SpaceHierarchy:
    """See the module docstring."""

    def __init__(self, store: "EventStore", summaries: "RoomSummaries") -> None:
        self.store = store
        self.summaries = summaries
        #: Other servers' rooms (None: skipped); see the module docstring.
        self.remote_hierarchy: RemoteHierarchy | None = None

    async def _local_entry(self, room_id: str) -> dict[str, Any] | None:
        summary = await self.summaries.local_summary(room_id)
        if summary is None:
            return None
        children: list[dict[str, Any]] = []
        if summary.get("room_type") == "m.space":
            state_ids = await self.store.current_state_ids(room_id)
            keys = [k for k in state_ids if k[0] == SPACE_CHILD]
            state = await self.store.current_state_events(room_id, keys)
            children = child_events(list(state.values()))
        summary["children_state"] = children
        return summary

    async def hierarchy(
        self,
        user_id: str,
        room_id: str,
        *,
        suggested_only: bool | None = None,
        max_depth: int | None = None,
        limit: int | None = None,
        from_token: str | None = None,
    ) -> dict[str, Any]:
        """C{GET /rooms/{roomId}/hierarchy} for C{user_id}."""
        if limit is not None and limit <= 0:
            raise _invalid("limit must be greater than zero")
        if max_depth is not None and max_depth < 0:
            raise _invalid("max_depth must not be negative")
        limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        skip = 0
        if from_token is not None:
            root, depth, suggested, skip = _decode(from_token)
            if root != room_id:
                raise _invalid("The pagination token is for another room")
            if (max_depth is not None and min(max_depth, MAX_DEPTH) != depth) or (
                suggested_only is not None and suggested_only != suggested
            ):
                raise _invalid("suggested_only and max_depth cannot change on paginated requests")
            max_depth, suggested_only = depth, suggested
        max_depth = MAX_DEPTH if max_depth is None else min(max_depth, MAX_DEPTH)
        suggested_only = bool(suggested_only)

        root_entry = await self._local_entry(room_id)
        if root_entry is None or not await self.summaries.accessible(user_id, root_entry):
            raise forbidden("You are not allowed to view this room.")

        rooms: list[dict[str, Any]] = []
        seen = {room_id}
        remote_known: dict[str, dict[str, Any]] = {}
        # (entry or None, room_id, via, depth), popped from the end.
        stack: list[tuple[dict[str, Any] | None, str, list[str], int]] = [
            (root_entry, room_id, [], 0)
        ]
        returned = 0
        more = False
        visited = 0
        while stack and visited < MAX_VISITED:
            entry, rid, via, depth = stack.pop()
            visited += 1
            if entry is None:
                entry = await self._entry(rid, via, remote_known)
                if entry is None or not await self.summaries.accessible(user_id, entry):
                    continue
            if returned >= skip:
                if len(rooms) == limit:
                    more = True
                    break
                rooms.append(entry)
            returned += 1
            if depth >= max_depth:
                continue
            children = entry["children_state"]
            if suggested_only:
                children = [c for c in children if c["content"].get("suggested") is True]
            for child in reversed(children):
                cid = child["state_key"]
                if cid in seen:
                    continue
                seen.add(cid)
                stack.append((None, cid, list(child["content"]["via"]), depth + 1))
        body: dict[str, Any] = {"rooms": rooms}
        if more:
            body["next_batch"] = encode_token(
                {"r": room_id, "d": max_depth, "s": suggested_only, "n": skip + len(rooms)}
            )
        return body

    async def _entry(
        self, room_id: str, via: list[str], remote_known: dict[str, dict[str, Any]]
    ) -> dict[str, Any] | None:
        """A child's entry: local state first, then what other servers said."""
        entry = await self._local_entry(room_id)
        if entry is not None:
            return entry
        known = remote_known.get(room_id)
        if known is None and self.remote_hierarchy is not None:
            answer = await self.remote_hierarchy(room_id, via)
            if isinstance(answer, dict):
                for item in [answer.get("room"), *(answer.get("children") or [])]:
                    if isinstance(item, dict) and isinstance(item.get("room_id"), str):
                        remote_known.setdefault(item["room_id"], item)
                known = remote_known.get(room_id)
        if known is None:
            return None
        children = known.get("children_state")
        entry = dict(known)
        entry["children_state"] = [
            c for c in (children if isinstance(children, list) else [])
            if isinstance(c, dict) and c.get("type") == SPACE_CHILD
            and isinstance(c.get("state_key"), str) and isinstance(c.get("content"), dict)
            and isinstance(c["content"].get("via"), list) and c["content"]["via"]
            and isinstance(c.get("origin_server_ts"), int)
        ]
        entry["children_state"].sort(key=child_sort_key)
        return entry
