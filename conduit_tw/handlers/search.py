"""
Server-side search (client-server-api "Server Side Search",
modules/search.md, search.yaml): C{POST /search} over the C{room_events}
category, answered from the term index of storage/stores/search.py, which
L{SearchHandler.event_persisted} (an C{EventStore} persist hook: local and
federation events alike) fills and a redaction empties.

- Query: the search term is tokenised like the indexed text; an event
  matches when every query term is a prefix of one of its terms in one of
  the requested C{keys} (default: all three).
- Rooms: those the user is or was in (any remembered membership),
  narrowed by the filter's C{rooms}/C{not_rooms}; every candidate then
  passes history visibility (handlers/visibility.py), so a user never
  finds an event from before their join in a C{joined} room, nor one after
  they left, and the filter (C{senders}, C{types}, ...).
- Rank: the occurrences of the query terms, an exact term counting twice
  a prefix match; C{order_by: recent} sorts by timeline order instead.
- Pagination: C{next_batch} is the offset in the ordered results; at most
  L{MAX_CANDIDATES} visible results are considered per query (C{count}
  is then a lower bound, "approximate" in the spec's words).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.filtering import room_event_filter_from_json
from conduit_tw.handlers.room_history import encode_token
from conduit_tw.storage.stores.search import KEYS, SearchStore, tokenise
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.serialize import EventSerializer
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.txn import StoreTxn

JsonDict = dict[str, Any]

#: Results per page: default and most.
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
#: Postings read per term, key and room.
MAX_POSTINGS = 5000
#: Visible results considered per query.
MAX_CANDIDATES = 1000
#: Query terms used (the rest are ignored).
MAX_QUERY_TERMS = 16
#: event_context: default and most events on each side.
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 50
_GROUP_KEYS = ("room_id", "sender")


def _bad(msg: str, code: str = Codes.BAD_JSON) -> MatrixError:
    return MatrixError(400, code, msg)


@dataclass(slots=True)
class _Candidate:
    short: int
    order: int
    rank: float


class SearchHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: SearchStore,
        events: "EventStore",
        visibility: "Visibility",
        serializer: "EventSerializer",
    ) -> None:
        self.store = store
        self.events = events
        self.visibility = visibility
        self.serializer = serializer

    # ------------------------------------------------------------------
    # The index

    async def event_persisted(self, txn: "StoreTxn", event: StoredEvent) -> None:
        """The C{EventStore.persist_hooks} entry: index new text, drop redacted text."""
        if event.type == "m.room.redaction" and event.redacts:
            pruned = await self.events.get_event(event.redacts, txn)
            if pruned is not None and pruned.redacted_because:
                original = await self.events.get_event(event.redacts)  # as committed
                if original is not None and not original.redacted_because and original.order:
                    self.store.unindex(
                        txn, original.shortroomid, original.order, original.type,
                        original.pdu.get("content"),
                    )
        self.store.index(
            txn, event.shortroomid, event.short, event.order, event.type,
            event.pdu.get("content"),
        )

    # ------------------------------------------------------------------
    # POST /search

    async def search(
        self, requester: "Requester", body: Any, next_batch: str | None
    ) -> JsonDict:
        """C{POST /search}: see the module docstring."""
        user_id = requester.user_id
        if not isinstance(body, dict) or not isinstance(body.get("search_categories"), dict):
            raise _bad("search_categories must be an object", Codes.MISSING_PARAM)
        criteria = body["search_categories"].get("room_events")
        if criteria is None:
            return {"search_categories": {}}
        if not isinstance(criteria, dict):
            raise _bad("room_events must be an object")
        term = criteria.get("search_term")
        if not isinstance(term, str):
            raise _bad("room_events.search_term must be a string", Codes.MISSING_PARAM)
        keys = criteria.get("keys", list(KEYS))
        if not isinstance(keys, list) or not keys or any(not isinstance(k, str) or k not in KEYS for k in keys):
            raise _bad("keys must be a list of content.body, content.name, content.topic")
        order_by = criteria.get("order_by", "rank")
        if order_by not in ("rank", "recent"):
            raise _bad("order_by must be 'rank' or 'recent'")
        event_filter = room_event_filter_from_json(criteria.get("filter") or {})
        context = criteria.get("event_context")
        if context is not None:
            if not isinstance(context, dict):
                raise _bad("event_context must be an object")
            context = {
                "before_limit": _context_limit(context, "before_limit"),
                "after_limit": _context_limit(context, "after_limit"),
                "include_profile": context.get("include_profile", False),
            }
            if not isinstance(context["include_profile"], bool):
                raise _bad("include_profile must be a boolean")
        include_state = criteria.get("include_state", False)
        if not isinstance(include_state, bool):
            raise _bad("include_state must be a boolean")
        group_by = self._group_keys(criteria.get("groupings"))
        offset = 0
        if next_batch is not None:
            if not next_batch.isdigit() or len(next_batch) > 9:
                raise _bad("Invalid next_batch", Codes.INVALID_PARAM)
            offset = int(next_batch)
        limit = max(1, min(event_filter.limit or DEFAULT_LIMIT, MAX_LIMIT))

        terms = list(dict.fromkeys(tokenise(term)))[:MAX_QUERY_TERMS]
        key_bytes = [KEYS[k] for k in dict.fromkeys(keys)]
        highlights: set[str] = set()
        candidates: list[_Candidate] = []
        if terms:
            for record in await self.events.rooms_for_user(user_id, None):
                if not event_filter.allows_room(record.room_id):
                    continue
                room = await self.events.get_room(record.room_id)
                if room is not None:
                    candidates += await self._room_candidates(
                        room.short, terms, key_bytes, highlights
                    )
        if order_by == "rank":
            candidates.sort(key=lambda c: (-c.rank, -c.order))
        else:
            candidates.sort(key=lambda c: -c.order)

        visible: list[tuple[StoredEvent, float]] = []
        for i in range(0, len(candidates), 100):
            if len(visible) >= MAX_CANDIDATES:
                break
            batch = candidates[i:i + 100]
            loaded = [(await self.events.get_event_by_short(c.short), c.rank) for c in batch]
            events = [ev for ev, _ in loaded if ev is not None and event_filter.matches(ev.pdu)]
            allowed = {
                e.short for e in await self.visibility.filter_events_for_user(user_id, events)
            }
            visible += [(ev, r) for ev, r in loaded if ev is not None and ev.short in allowed]
        page = visible[offset:offset + limit]

        serialized = await self.serializer.serialize_events(
            [ev for ev, _ in page], user_id, requester.device_id
        )
        results = []
        for (ev, rank), client_ev in zip(page, serialized):
            item: JsonDict = {"rank": rank, "result": client_ev}
            if context is not None:
                item["context"] = await self._context(requester, ev, context)
            results.append(item)
        out: JsonDict = {
            "count": len(visible),
            "highlights": sorted(highlights | set(terms)),
            "results": results,
        }
        more = offset + limit < len(visible)
        if more:
            out["next_batch"] = str(offset + limit)
        if group_by:
            out["groups"] = self._groups(page, group_by, out.get("next_batch"))
        if include_state:
            out["state"] = await self._state({ev.room_id_or_create() for ev, _ in page}, user_id, requester.device_id)
        return {"search_categories": {"room_events": out}}

    @staticmethod
    def _group_keys(groupings: Any) -> list[str]:
        if groupings is None:
            return []
        if not isinstance(groupings, dict):
            raise _bad("groupings must be an object")
        group_by = groupings.get("group_by", [])
        if not isinstance(group_by, list):
            raise _bad("groupings.group_by must be a list")
        out = []
        for g in group_by:
            if not isinstance(g, dict) or g.get("key") not in _GROUP_KEYS:
                raise _bad("group_by keys must be room_id or sender")
            out.append(g["key"])
        return out

    async def _room_candidates(
        self, shortroomid: int, terms: list[str], key_bytes: list[bytes], highlights: set[str]
    ) -> list[_Candidate]:
        """Events of one room matching every term (AND), with their rank."""
        matched: dict[int, _Candidate] | None = None
        for term in terms:
            this: dict[int, _Candidate] = {}
            for key in key_bytes:
                for p in await self.store.lookup(shortroomid, key, term, MAX_POSTINGS):
                    weight = 2.0 if p.term == term else 1.0
                    c = this.get(p.short)
                    if c is None:
                        this[p.short] = _Candidate(p.short, p.order, weight * p.count)
                    else:
                        c.rank += weight * p.count
                    if matched is None or p.short in matched:
                        highlights.add(p.term)
            if matched is None:
                matched = this
            else:
                for short in list(matched):
                    other = this.get(short)
                    if other is None:
                        del matched[short]
                    else:
                        matched[short].rank += other.rank
            if not matched:
                return []
        return list((matched or {}).values())

    async def _context(
        self, requester: "Requester", event: StoredEvent, context: JsonDict
    ) -> JsonDict:
        """search.yaml C{context}: events around a result, and their senders' profiles."""
        before_n, after_n = context["before_limit"], context["after_limit"]
        include_profile = context["include_profile"]
        user_id = requester.user_id
        room_id = event.room_id_or_create()
        before = await self.events.timeline_range(room_id, event.order - 1, False, before_n) if before_n else []
        after = await self.events.timeline_range(room_id, event.order + 1, True, after_n) if after_n else []
        before = await self.visibility.filter_events_for_user(user_id, before)
        after = await self.visibility.filter_events_for_user(user_id, after)
        out: JsonDict = {
            "start": encode_token(before[-1].order - 1 if before else event.order - 1),
            "end": encode_token(after[-1].order if after else event.order),
            "events_before": await self.serializer.serialize_events(
                before, user_id, requester.device_id
            ),
            "events_after": await self.serializer.serialize_events(
                after, user_id, requester.device_id
            ),
        }
        if include_profile:
            profiles: JsonDict = {}
            for ev in [event, *before, *after]:
                if ev.sender in profiles:
                    continue
                member = await self.events.state_event(ev.state_after, "m.room.member", ev.sender)
                content = member.pdu.get("content", {}) if member is not None else {}
                profiles[ev.sender] = {
                    k: content[k] for k in ("displayname", "avatar_url")
                    if isinstance(content.get(k), str)
                }
            out["profile_info"] = profiles
        return out

    @staticmethod
    def _groups(
        page: list[tuple[StoredEvent, float]], group_by: list[str], next_batch: str | None
    ) -> JsonDict:
        groups: JsonDict = {}
        for key in group_by:
            by_value: JsonDict = {}
            for ev, _ in page:
                value = ev.room_id_or_create() if key == "room_id" else ev.sender
                entry = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
                entry["results"].append(ev.event_id)
            if next_batch is not None:
                for entry in by_value.values():
                    entry["next_batch"] = next_batch
            groups[key] = by_value
        return groups

    async def _state(self, room_ids: set[str], user_id: str, device_id: str | None) -> JsonDict:
        """The current state of the result rooms the user is joined to."""
        out: JsonDict = {}
        for room_id in sorted(room_ids):
            if await self.events.membership(user_id, room_id) != "join":
                continue
            state = await self.events.current_state_events(room_id)
            out[room_id] = await self.serializer.serialize_events(
                state.values(), user_id, device_id, depth=0
            )
        return out


def _context_limit(context: JsonDict, name: str) -> int:
    value = context.get(name, DEFAULT_CONTEXT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"event_context.{name} must be a non-negative integer")
    return min(value, MAX_CONTEXT)
