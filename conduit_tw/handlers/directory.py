"""
Room aliases and the published room directory (client-server-api "Room
aliases", "Published room directory"; directory.yaml,
list_public_rooms.yaml).

Aliases (L{AliasStore}, local aliases only):

- creating one needs a valid alias on this server, a room we have, and
  membership of it (server admins excepted, as Synapse's default
  C{require_membership_for_aliases}); C{forbidden_alias_names} refuses
  matching aliases with 400 M_INVALID_PARAM, as C{createRoom} does, except
  for server admins (the setting reserves names for the operator); a taken
  alias is 409 M_UNKNOWN (the spec's example).
- deleting one is allowed to its creator, server admins, and members of
  the room who may send m.room.canonical_alias (Synapse's rule for room
  moderators). An alias named in the room's m.room.canonical_alias (as
  C{alias} or in C{alt_aliases}) is removed from it by a new event sent
  as the deleting user; when they may not send it the alias is deleted
  anyway (the spec recommends this) and the event is left alone.
- resolving one answers the room ID and C{servers}: ours first, then the
  servers of the room's other joined members, most members first.
  Aliases of other servers are asked of their server through
  L{DirectoryHandler.remote_resolve} (federation queries; 404 when it
  is not installed); L{resolve_local_alias} answers other servers'
  queries for ours.
- m.room.canonical_alias sent through L{EventHandler.send} is checked
  (the C{EventHandler.validators} hook): the aliases it adds (those not in
  the current event, as Synapse does, so removing one always works) must
  be valid (400 M_INVALID_PARAM) and point to the room (400 M_BAD_ALIAS).
  Aliases of other servers cannot be checked without federation, so new
  ones are refused with M_BAD_ALIAS.

Published directory (L{DirectoryStore}):

- changing a room's visibility needs the same power as deleting an alias
  (a member who may send m.room.canonical_alias) or a server admin;
  guests may not. With C{lockdown_public_room_directory} only server
  admins may publish (403); anyone allowed may still unpublish.
  C{createRoom} with C{visibility: public} publishes the room (refused
  before the room is made under lockdown).
- C{/publicRooms} lists published rooms that have joined members, largest
  first (then by room ID), with keyset pagination: tokens hold the
  (joined count, room ID) of the page edge and a direction, so paging
  both ways is stable while counts do not change. Entries are built from
  the room's current state and cached per state hash, so a listing reads
  only room heads (cached) once warm. Search matches the name, topic and
  canonical alias case-insensitively; C{room_types} filters on the create
  event's C{type} (C{null}: rooms without one). Third-party networks do
  not exist here: C{third_party_instance_id} lists nothing. Other
  servers' directories are listed through
  L{DirectoryHandler.remote_public_rooms} (federation; 404 when it is not
  installed).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from conduit_tw.config import is_valid_server_name
from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.events.auth_rules import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    get_send_level,
    get_user_power_level,
    split_identifier,
)
from conduit_tw.handlers.room_summary import SUMMARY_KEYS, public_chunk
from conduit_tw.handlers.rooms import alias_forbidden
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.directory import DirectoryStore
from conduit_tw.util.caches import LruCache, scaled

if TYPE_CHECKING:
    from conduit_tw.events.event import Event
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.rooms import RoomInfo
    from conduit_tw.storage.stores.users import UserStore

log = get_logger("conduit_tw.directory")

CANONICAL_ALIAS = "m.room.canonical_alias"
_FEDERATION = "federation, which this server does not support yet"

#: C{/publicRooms} without a C{limit}, and the most one page holds.
DEFAULT_LIMIT = 100
MAX_LIMIT = 500

def is_valid_alias(alias: Any) -> bool:
    """
    Whether C{alias} follows the grammar of the appendices ("Room Aliases"):
    C{#localpart:server_name}, the localpart without C{:} or NUL, at most
    255 bytes in all.
    """
    parts = split_identifier(alias, "#")
    if parts is None:
        return False
    localpart, server = parts
    if any(0xD800 <= ord(c) <= 0xDFFF for c in localpart):
        return False
    return is_valid_server_name(server)


def _invalid_alias(alias: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, "Room alias invalid: %r" % (alias,))


def _encode_token(direction: str, joined: int, room_id: str) -> str:
    raw = "%s%d|%s" % (direction, joined, room_id)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_token(token: str) -> tuple[bool, tuple[int, str]]:
    """C{(forward, (-joined, room_id))} of a C{since} token."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        direction, rest = raw[0], raw[1:]
        joined, _, room_id = rest.partition("|")
        if direction not in "fb" or not room_id:
            raise ValueError(raw)
        return direction == "f", (-int(joined), room_id)
    except (ValueError, IndexError, binascii.Error, UnicodeDecodeError):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid since token") from None


class _Entry:
    """A published room's directory entry and what search looks at."""

    __slots__ = ("chunk", "search_text", "room_type")

    def __init__(self, chunk: dict[str, Any]) -> None:
        self.chunk = chunk
        self.search_text = "\n".join(
            chunk[k] for k in ("name", "topic", "canonical_alias") if k in chunk
        ).casefold()
        self.room_type = chunk.get("room_type")


class DirectoryHandler:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        published: DirectoryStore,
        store: "EventStore",
        aliases: "AliasStore",
        users: "UserStore",
        events: "EventHandler",
        visibility: "Visibility",
        *,
        forbidden_alias_names: Sequence[str] = (),
        lockdown_public_room_directory: bool = False,
        cache_modifier: float = 1.0,
    ) -> None:
        """
        HomeServer registers the hooks: L{check_canonical_alias} on
        C{EventHandler.validators}, L{check_create_publish} and
        L{room_created} on room creation, L{room_upgraded} on upgrades.
        """
        self.server_name = server_name
        self.store = store
        self.aliases = aliases
        self.published = published
        self.users = users
        self.events = events
        self.visibility = visibility
        #: C{forbidden_alias_names}: patterns refused in new aliases.
        self.forbidden_alias_names = tuple(forbidden_alias_names)
        #: C{lockdown_public_room_directory}: only admins publish rooms.
        self.lockdown_public_room_directory = lockdown_public_room_directory
        #: Checks run before a room is published (raise to refuse): the
        #: admin room is never published.
        self.publish_checks: list[Callable[[str], None]] = []
        #: Directory entries (without the member count) by state hash.
        self._entries: LruCache[int, _Entry] = LruCache(scaled(10_000, cache_modifier))
        #: C{alias -> {"room_id", "servers"}} for aliases of other servers
        #: (federation queries, installed by HomeServer).
        self.remote_resolve: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        #: C{(server, **public_rooms arguments) -> listing} of another
        #: server's directory (federation queries, installed by HomeServer).
        self.remote_public_rooms: Callable[..., Awaitable[dict[str, Any]]] | None = None
        #: C{(alias, requester) -> None}, raising 400 M_EXCLUSIVE for an
        #: alias in another's exclusive appservice namespace (installed by
        #: HomeServer from the appservice registry).
        self.alias_checks: list[Callable[[str, "Requester"], None]] = []
        #: C{alias -> bool}: asks the appservices whose namespaces hold an
        #: unknown local alias (application-service-api "Query Room Alias").
        self.unknown_alias: Callable[[str], Awaitable[bool]] | None = None
        #: C{instance_id or None -> room IDs}: the rooms appservices
        #: published for one third-party network (None: for every one).
        self.network_rooms: Callable[[str | None], Awaitable[list[str]]] | None = None

    # ------------------------------------------------------------------
    # Permissions

    async def _is_admin(self, requester: "Requester") -> bool:
        return await self.users.is_admin(requester.user_id)

    async def _is_room_moderator(self, user_id: str, room_id: str) -> bool:
        """Joined, with the power to send m.room.canonical_alias."""
        if await self.store.membership(user_id, room_id) != "join":
            return False
        auth = await self.store.current_state_events(room_id, [CREATE_KEY, POWER_LEVELS_KEY])
        return get_user_power_level(user_id, auth) >= get_send_level(auth, CANONICAL_ALIAS, "")

    async def _local_room_or_404(self, room_id: str) -> None:
        if not room_id.startswith("!"):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a room ID: %r" % (room_id,))
        if not await self.store.room_exists(room_id):
            raise not_found("Room not found")

    # ------------------------------------------------------------------
    # Aliases

    def _parse_alias(self, alias: str, local: bool) -> None:
        """400 M_INVALID_PARAM unless valid (and ours, when C{local})."""
        if not is_valid_alias(alias):
            raise _invalid_alias(alias)
        if local and alias.partition(":")[2] != self.server_name:
            raise MatrixError(
                400, Codes.INVALID_PARAM,
                "Room alias %s is not on this server (%s)" % (alias, self.server_name),
            )

    async def create_alias(self, requester: "Requester", alias: str, room_id: Any) -> None:
        """C{PUT /directory/room/{alias}}."""
        self._parse_alias(alias, local=True)
        if not isinstance(room_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "room_id must be a string")
        await self._local_room_or_404(room_id)
        for check in self.alias_checks:
            check(alias, requester)
        is_admin = await self._is_admin(requester)
        if not is_admin:
            if alias_forbidden(alias, self.forbidden_alias_names):
                raise MatrixError(400, Codes.INVALID_PARAM, "This room alias is forbidden")
            if await self.store.membership(requester.user_id, room_id) != "join":
                raise forbidden("You must be in the room to create an alias for it")
        if not await self.aliases.create_alias(alias, room_id, requester.user_id):
            raise MatrixError(409, Codes.UNKNOWN, "Room alias %s already exists." % (alias,))

    async def resolve_alias(self, alias: str) -> dict[str, Any]:
        """C{GET /directory/room/{alias}}: C{{"room_id", "servers"}}."""
        self._parse_alias(alias, local=False)
        if alias.partition(":")[2] != self.server_name:
            if self.remote_resolve is None:
                raise not_found(
                    "Room alias %s is on another server; resolving it needs %s" % (alias, _FEDERATION)
                )
            return await self.remote_resolve(alias)
        return await self.resolve_local_alias(alias)

    async def resolve_local_alias(self, alias: str) -> dict[str, Any]:
        """
        C{{"room_id", "servers"}} of one of our aliases (what other
        servers' C{query/directory} gets): 404 M_NOT_FOUND for aliases we
        do not have, those of other servers included.
        """
        if not is_valid_alias(alias):
            raise _invalid_alias(alias)
        room_id = None
        if alias.partition(":")[2] == self.server_name:
            room_id = await self.aliases.get_room_for_alias(alias)
            if room_id is None and self.unknown_alias is not None and await self.unknown_alias(alias):
                room_id = await self.aliases.get_room_for_alias(alias)
        if room_id is None:
            raise not_found("Room alias %s not found." % (alias,))
        return {"room_id": room_id, "servers": await self.servers_in_room(room_id)}

    async def servers_in_room(self, room_id: str) -> list[str]:
        """Our server, then the servers of the other joined members (most members first)."""
        counts: dict[str, int] = {}
        for user_id in await self.store.members(room_id, "join"):
            server = user_id.partition(":")[2]
            if server != self.server_name:
                counts[server] = counts.get(server, 0) + 1
        others = sorted(counts, key=lambda s: (-counts[s], s))
        return [self.server_name] + others

    async def delete_alias(self, requester: "Requester", alias: str) -> None:
        """C{DELETE /directory/room/{alias}}."""
        self._parse_alias(alias, local=True)
        info = await self.aliases.get_alias(alias)
        if info is None:
            raise not_found("Room alias %s not found." % (alias,))
        room_id = info["room_id"]
        user_id = requester.user_id
        if not (
            info.get("creator") == user_id
            or await self._is_admin(requester)
            or await self._is_room_moderator(user_id, room_id)
        ):
            raise forbidden("You don't have permission to delete the alias.")
        if not await self.aliases.delete_alias(alias):
            raise not_found("Room alias %s not found." % (alias,))
        await self._remove_from_canonical_alias(user_id, room_id, alias)

    async def _remove_from_canonical_alias(self, user_id: str, room_id: str, alias: str) -> None:
        event = await self.store.current_state_event(room_id, CANONICAL_ALIAS, "")
        if event is None:
            return
        content = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            alt = [a for a in alt if a != alias]
            if alt:
                content["alt_aliases"] = alt
            else:
                del content["alt_aliases"]
            changed = True
        if not changed:
            return
        try:
            await self.events.send(room_id, user_id, CANONICAL_ALIAS, content, "")
        except MatrixError as e:
            # The alias is gone either way (client-server-api DELETE
            # /directory/room: delete even without the power to update
            # the event).
            log.info(
                "Alias {alias} deleted; {user} could not update {room}'s canonical alias: {e}",
                alias=alias, user=user_id, room=room_id, e=e.msg,
            )

    async def local_aliases(self, requester: "Requester", room_id: str) -> list[str]:
        """C{GET /rooms/{roomId}/aliases}: members, world_readable rooms, admins."""
        if not room_id.startswith("!"):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a room ID: %r" % (room_id,))
        statehash = await self.store.current_statehash(room_id)
        allowed = False
        if statehash:
            allowed = (
                await self.store.membership(requester.user_id, room_id) == "join"
                or await self.visibility.history_visibility(statehash) == "world_readable"
                or await self._is_admin(requester)
            )
        if not allowed:
            raise forbidden("You are not a member of the room.")
        return await self.aliases.aliases_for_room(room_id)

    async def check_canonical_alias(self, room: "RoomInfo", event: "Event") -> None:
        """
        The C{EventHandler.validators} hook: the aliases an
        m.room.canonical_alias event adds must be valid and ours and point
        to the room.
        """
        if event.type != CANONICAL_ALIAS or event.state_key != "":
            return
        content = event.content
        current = await self.store.current_state_event(room.room_id, CANONICAL_ALIAS, "")
        old = current.content if current is not None else {}
        added: list[str] = []
        alias = content.get("alias")
        if alias is not None and alias != "":
            if not isinstance(alias, str):
                raise MatrixError(400, Codes.INVALID_PARAM, "alias must be a string")
            if alias != old.get("alias"):
                added.append(alias)
        if "alt_aliases" in content:
            alt = content["alt_aliases"]
            if not isinstance(alt, list) or not all(isinstance(a, str) for a in alt):
                raise MatrixError(
                    400, Codes.INVALID_PARAM, "alt_aliases must be a list of room aliases"
                )
            old_alt = old.get("alt_aliases")
            known = set(a for a in old_alt if isinstance(a, str)) if isinstance(old_alt, list) else set()
            added.extend(a for a in alt if a not in known)
        for a in dict.fromkeys(added):
            if not is_valid_alias(a):
                raise _invalid_alias(a)
            if a.partition(":")[2] != self.server_name:
                raise MatrixError(
                    400, "M_BAD_ALIAS",
                    "The alias %s is on another server; checking that it points to this room "
                    "needs %s" % (a, _FEDERATION),
                )
            if await self.aliases.get_room_for_alias(a) != room.room_id:
                raise MatrixError(400, "M_BAD_ALIAS", "The alias %s does not point to this room." % (a,))

    # ------------------------------------------------------------------
    # Published room directory: visibility

    async def get_visibility(self, room_id: str) -> str:
        """C{GET /directory/list/room/{roomId}}."""
        await self._local_room_or_404(room_id)
        return "public" if await self.published.is_public(room_id) else "private"

    async def set_visibility(self, requester: "Requester", room_id: str, visibility: Any) -> None:
        """C{PUT /directory/list/room/{roomId}}."""
        if visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be 'public' or 'private'")
        if requester.is_guest:
            raise forbidden("Guests cannot edit the published room directory")
        await self._local_room_or_404(room_id)
        is_admin = await self._is_admin(requester)
        if not is_admin and not await self._is_room_moderator(requester.user_id, room_id):
            raise forbidden(
                "You need to be in the room with the power to change its canonical alias "
                "to edit its directory entry"
            )
        if visibility == "public" and not is_admin and self.lockdown_public_room_directory:
            raise forbidden(self._lockdown_message())
        if visibility == "public":
            for check in list(self.publish_checks):
                check(room_id)
        await self.published.set_public(room_id, visibility == "public")

    def _lockdown_message(self) -> str:
        return "Only server admins may publish rooms to the room directory of this server"

    async def check_create_publish(self, requester: "Requester", body: dict[str, Any]) -> None:
        """The C{before_room_created} hook: C{visibility: public} under lockdown needs an admin."""
        if (
            body.get("visibility") == "public"
            and self.lockdown_public_room_directory
            and not await self._is_admin(requester)
        ):
            raise forbidden(self._lockdown_message())

    async def room_created(self, room_id: str, creator: str, body: dict[str, Any]) -> None:
        """The C{on_room_created} hook: publish a C{visibility: public} room."""
        if body.get("visibility") == "public":
            await self.published.set_public(room_id, True)

    async def room_upgraded(self, old: str, new: str, user_id: str) -> None:
        """
        The C{on_room_upgraded} hook: a published room's replacement is
        published instead of it (modules/room_upgrades.md).
        """
        if await self.published.is_public(old):
            await self.published.set_public(new, True)
            await self.published.set_public(old, False)

    # ------------------------------------------------------------------
    # Published room directory: listing

    async def _entry(self, room_id: str, statehash: int) -> _Entry:
        entry = self._entries.get(statehash)
        if entry is not None and entry.chunk["room_id"] == room_id:
            return entry
        state = await self.store.state_events(statehash, SUMMARY_KEYS)
        chunk = public_chunk(room_id, state)
        entry = _Entry(chunk)
        self._entries.set(statehash, entry)
        return entry

    async def _listed(
        self, network: str | None = None, all_networks: bool = False
    ) -> list[tuple[tuple[int, str], int, int]]:
        """
        Published rooms with joined members: C{((-joined, room_id), joined,
        statehash)}, sorted. The server's own list, or that of the
        third-party C{network} (an instance ID), or both with C{all_networks}.
        """
        rows = []
        room_ids: set[str] = set()
        if network is None:
            room_ids |= await self.published.public_room_ids()
        if (network is not None or all_networks) and self.network_rooms is not None:
            room_ids |= set(await self.network_rooms(network))
        for room_id in sorted(room_ids):
            room = await self.store.get_room(room_id)
            if room is None:
                continue
            head = await self.store.head(room)
            if head.statehash and head.joined > 0:
                rows.append(((-head.joined, room_id), head.joined, head.statehash))
        rows.sort()
        return rows

    async def public_rooms(
        self,
        *,
        limit: int | None = None,
        since: str | None = None,
        server: str | None = None,
        search_term: str | None = None,
        room_types: list[str | None] | None = None,
        include_all_networks: bool = False,
        third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """C{GET/POST /publicRooms}; arguments already type-checked by the API layer."""
        if server is not None and server != self.server_name:
            if not is_valid_server_name(server):
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid server name: %r" % (server,))
            if self.remote_public_rooms is None:
                raise not_found(
                    "Listing the room directory of %s needs %s" % (server, _FEDERATION)
                )
            return await self.remote_public_rooms(
                server, limit=limit, since=since, search_term=search_term, room_types=room_types,
                include_all_networks=include_all_networks,
                third_party_instance_id=third_party_instance_id,
            )
        if include_all_networks and third_party_instance_id is not None:
            raise MatrixError(
                400, Codes.INVALID_PARAM,
                "Can't use include_all_networks with an explicit network",
            )
        limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        forward, after = True, None
        if since is not None:
            forward, after = _decode_token(since)
        rows = await self._listed(third_party_instance_id, include_all_networks)
        body: dict[str, Any] = {"chunk": [], "total_room_count_estimate": len(rows)}
        if limit <= 0:
            return body
        term = search_term.casefold() if search_term else None
        types = set(room_types) if room_types else None

        async def matches(i: int) -> dict[str, Any] | None:
            key, joined, statehash = rows[i]
            entry = await self._entry(key[1], statehash)
            if term is not None and term not in entry.search_text:
                return None
            if types is not None and entry.room_type not in types:
                return None
            return dict(entry.chunk, num_joined_members=joined)

        async def any_match(indices: range) -> bool:
            if term is None and types is None:
                return len(indices) > 0
            for i in indices:
                if await matches(i) is not None:
                    return True
            return False

        # The index of the first row after (or at) the token's key.
        start = 0
        if after is not None:
            lo, hi = 0, len(rows)
            while lo < hi:
                mid = (lo + hi) // 2
                if rows[mid][0] <= after if forward else rows[mid][0] < after:
                    lo = mid + 1
                else:
                    hi = mid
            start = lo
        found: list[tuple[int, dict[str, Any]]] = []
        indices = range(start, len(rows)) if forward else range(start - 1, -1, -1)
        last = None
        for i in indices:
            chunk = await matches(i)
            if chunk is None:
                continue
            if len(found) == limit:
                last = i
                break
            found.append((i, chunk))
        more = last is not None
        if not forward:
            found.reverse()
        if not found:
            return body
        first_i, last_i = found[0][0], found[-1][0]
        if forward:
            more_before = after is not None and await any_match(range(first_i - 1, -1, -1))
            more_after = more
        else:
            more_before = more
            more_after = await any_match(range(last_i + 1, len(rows)))
        body["chunk"] = [c for _, c in found]
        if more_after:
            key = rows[last_i][0]
            body["next_batch"] = _encode_token("f", -key[0], key[1])
        if more_before:
            key = rows[first_i][0]
            body["prev_batch"] = _encode_token("b", -key[0], key[1])
        return body
