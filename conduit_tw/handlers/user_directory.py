"""
The user directory (client-server-api "User directory"; users.yaml):
C{POST /user_directory/search}.

- **Who is searched.** The spec's minimum and no more: users who share a
  room with the searcher, and users joined to a room whose join rule is
  C{public} or whose history is C{world_readable} (current state), local
  and remote alike. Anyone else, e.g. a user in no room, is never found.
  Membership is read when searching, so leaving a room or a room turning
  private takes effect at once.
- **The index** (storage/stores/user_directory.py) holds the profile each
  user is searched by: a local user's global profile, a remote user's
  display name and avatar from their latest join event. It is written in
  the batch of each join event (an C{EventStore.persist_hooks} entry) and
  when a local user's profile changes (C{ProfileHandler.on_profile_changed});
  when our server's first user joins a room (a remote join), the remote
  members of the state it came with are indexed too.
  Users who joined rooms before the index existed are found once they
  join again or change their profile.
- **Matching.** The search term is split into words (runs of word
  characters, case-folded); a user matches when every word is a prefix of
  a word of their localpart or display name (or of the whole localpart).
  Candidates come from the index terms starting with the longest word, at
  most L{MAX_CANDIDATES} of them. A term starting with C{@} also matches
  the user IDs it starts.
- **Ranking.** Exact localpart or display name first, then those that
  start with the whole term, then other matches; within a rank users with
  a display name first ("ordered by rank and then whether or not profile
  info is available"), then by user ID. C{limit} (default 10, at most
  L{MAX_LIMIT}) results; C{limited} when more matched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.storage.stores.user_directory import UserDirectoryStore, terms, words

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.timeline import StoredEvent
    from conduit_tw.storage.stores.users import UserStore
    from conduit_tw.storage.txn import StoreTxn

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
#: Index rows one search reads at most.
MAX_CANDIDATES = 5000

_PROFILE_FIELDS = ("displayname", "avatar_url")


def _profile(content: dict[str, Any]) -> dict[str, Any]:
    return {k: content[k] for k in _PROFILE_FIELDS if isinstance(content.get(k), str)}


class UserDirectory:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        index: UserDirectoryStore,
        store: "EventStore",
        users: "UserStore",
    ) -> None:
        self.server_name = server_name
        self.index = index
        self.store = store
        self.users = users

    def _is_local(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self.server_name

    # ------------------------------------------------------------------
    # Keeping the index

    async def event_persisted(self, txn: "StoreTxn", event: "StoredEvent") -> None:
        """C{EventStore.persist_hooks}: index the user of a join event."""
        if event.type != "m.room.member" or event.membership() != "join":
            return
        user_id = event.state_key
        if not isinstance(user_id, str):
            return
        if self._is_local(user_id):
            profile = _profile(await self.users.get_profile(user_id))
            room_id = event.room_id_or_create()
            if not any(self._is_local(u) for u in await self.store.members(room_id)):
                # Our server's first member: the others came with the
                # room's state (a remote join), not as live events.
                await self._index_members(txn, event.state_after)
        else:
            profile = _profile(event.content)
        await self.index.set(user_id, profile, txn)

    async def _index_members(self, txn: "StoreTxn", statehash: int) -> None:
        """Index the remote joined members of a state that are not indexed yet."""
        keys = [k for k in await self.store.state_ids(statehash) if k[0] == "m.room.member"]
        for (_, user_id), ev in (await self.store.state_events(statehash, keys, txn)).items():
            if (
                ev.membership() == "join" and not self._is_local(user_id)
                and await self.index.get(user_id, txn) is None
            ):
                await self.index.set(user_id, _profile(ev.content), txn)

    async def profile_changed(self, user_id: str, field: str, value: Any) -> None:
        """C{ProfileHandler.on_profile_changed}: re-index a local user's profile."""
        if field in _PROFILE_FIELDS:
            await self.index.set(user_id, _profile(await self.users.get_profile(user_id)))

    # ------------------------------------------------------------------
    # Searching

    async def _room_is_open(self, room_id: str, cache: dict[str, bool]) -> bool:
        """Whether the room's join rule is public or its history world_readable."""
        if room_id not in cache:
            state = await self.store.current_state_events(
                room_id, [("m.room.join_rules", ""), ("m.room.history_visibility", "")]
            )
            jr = state.get(("m.room.join_rules", ""))
            hv = state.get(("m.room.history_visibility", ""))
            cache[room_id] = (
                jr is not None and jr.content.get("join_rule") == "public"
            ) or (hv is not None and hv.content.get("history_visibility") == "world_readable")
        return cache[room_id]

    async def _visible(self, user_id: str, mine: set[str], cache: dict[str, bool]) -> bool:
        rooms = await self.store.joined_room_ids(user_id)
        if mine.intersection(rooms):
            return True
        for room_id in rooms:
            if await self._room_is_open(room_id, cache):
                return True
        return False

    async def search(self, searcher: str, search_term: Any, limit: Any = None) -> dict[str, Any]:
        """C{POST /user_directory/search} for C{searcher}."""
        if not isinstance(search_term, str):
            raise MatrixError(400, Codes.BAD_JSON, "search_term must be a string")
        if limit is None:
            limit = DEFAULT_LIMIT
        if type(limit) is not int or limit < 0:
            raise MatrixError(400, Codes.BAD_JSON, "limit must be a non-negative integer")
        limit = min(limit, MAX_LIMIT)
        wanted = words(search_term)
        if not wanted:
            return {"results": [], "limited": False}
        stripped = search_term.strip()
        whole = stripped.casefold().lstrip("@")
        mine = set(await self.store.joined_room_ids(searcher))
        cache: dict[str, bool] = {}
        matches = []
        candidates = await self.index.users_with_term_prefix(
            max(wanted, key=len), MAX_CANDIDATES
        )
        by_id = []
        if stripped.startswith("@"):
            # A user ID, or the start of one.
            by_id = await self.index.users_with_id_prefix(stripped, MAX_CANDIDATES)
            candidates = list(dict.fromkeys([*by_id, *candidates]))
        for user_id in candidates:
            profile = await self.index.get(user_id)
            if profile is None:
                continue
            own = terms(user_id, profile)
            if user_id not in by_id and not all(any(t.startswith(w) for t in own) for w in wanted):
                continue
            if not await self._visible(user_id, mine, cache):
                continue
            localpart = user_id[1:].partition(":")[0].casefold()
            name = profile.get("displayname", "").casefold()
            if whole in (localpart, name, user_id[1:].casefold()):
                rank = 0
            elif localpart.startswith(whole) or name.startswith(whole):
                rank = 1
            else:
                rank = 2
            matches.append(((rank, "displayname" not in profile, user_id), user_id, profile))
        matches.sort(key=lambda m: m[0])
        results = []
        for _, user_id, profile in matches[:limit]:
            entry = {"user_id": user_id}
            if "displayname" in profile:
                entry["display_name"] = profile["displayname"]
            if "avatar_url" in profile:
                entry["avatar_url"] = profile["avatar_url"]
            results.append(entry)
        return {"results": results, "limited": len(matches) > limit}
