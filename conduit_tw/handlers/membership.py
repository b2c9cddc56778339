"""
Membership changes of local users (client-server-api "Room membership"):
join (by room ID or alias), invite, leave, forget, kick, ban, unban,
knock (room v7+), restricted joins (room v8+), plus the accounts hooks:
profile changes send new C{m.room.member} events into the user's joined
rooms, deactivation leaves every room.

Every change is an m.room.member event built and authorised by
L{conduit_tw.handlers.events.EventHandler}, so join rules, bans and power
levels are enforced by the auth rules and their message reaches the client
as 403 M_FORBIDDEN. Reasons travel in C{content.reason}.

Rooms on other servers go through L{remote} (federation/membership_client,
assigned by the HomeServer): joining or knocking on a room this server has
no state for (with the C{via} servers), aliases of other servers, inviting
users of other servers, and rejecting invites to rooms we are not in.
Without it (C{allow_federation = false}) those answer 404 M_NOT_FOUND /
400 M_UNKNOWN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.events.auth_rules import get_named_level, get_user_power_level, is_valid_user_id
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.federation.membership_client import RemoteMembership
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.users import UserStore

#: Member-event content keys a client's join body cannot set.
RESERVED_MEMBER_KEYS = frozenset(
    {"membership", "reason", "join_authorised_via_users_server", "third_party_invite",
     "third_party_signed", "displayname", "avatar_url", "is_direct"}
)

log = get_logger("conduit_tw.handlers.membership")

_FEDERATION = "federation with other servers is disabled here (allow_federation = false)"


class MembershipHandler:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        store: "EventStore",
        events: "EventHandler",
        aliases: "AliasStore",
        users: "UserStore",
        *,
        block_non_admin_invites: bool = False,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.events = events
        self.aliases = aliases
        self.users = users
        #: C{block_non_admin_invites}: only server admins may invite.
        self.block_non_admin_invites = block_non_admin_invites
        #: Membership in rooms on other servers (None: not supported).
        self.remote: "RemoteMembership | None" = None

    def is_local(self, user_id: str) -> bool:
        """Whether a user ID belongs to this server."""
        return user_id.partition(":")[2] == self.server_name

    # ------------------------------------------------------------------

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """A room ID for a room ID or a local alias (404 otherwise)."""
        return (await self.resolve_room_servers(room_id_or_alias))[0]

    async def resolve_room_servers(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """
        A room ID and the servers an alias named (none for a room ID or a
        local alias): aliases of other servers are resolved by L{remote}.
        """
        if room_id_or_alias.startswith("#"):
            if room_id_or_alias.partition(":")[2] != self.server_name:
                if self.remote is None:
                    raise not_found(
                        "Room alias %s is on another server; %s" % (room_id_or_alias, _FEDERATION)
                    )
                return await self.remote.resolve(room_id_or_alias)
            room_id = await self.aliases.get_room_for_alias(room_id_or_alias)
            if room_id is None:
                raise not_found("Room alias %s not found" % (room_id_or_alias,))
            return room_id, []
        if not room_id_or_alias.startswith("!"):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a room ID or alias")
        return room_id_or_alias, []

    async def _local_room(self, room_id: str) -> None:
        if not await self.store.room_exists(room_id):
            raise not_found(
                "Room %s is not known to this server (%s)" % (room_id, _FEDERATION)
            )

    async def _profile_content(self, user_id: str) -> dict[str, Any]:
        if not self.is_local(user_id):
            return {}
        profile = await self.users.get_profile(user_id)
        return {k: profile[k] for k in ("displayname", "avatar_url") if isinstance(profile.get(k), str)}

    async def _send_member(
        self, room_id: str, sender: str, target: str, content: dict[str, Any]
    ) -> StoredEvent:
        return await self.events.send(room_id, sender, "m.room.member", content, target)

    @staticmethod
    def _with_reason(content: dict[str, Any], reason: Any) -> dict[str, Any]:
        if reason is not None:
            if not isinstance(reason, str):
                raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
            content["reason"] = reason
        return content

    # ------------------------------------------------------------------

    async def join(
        self,
        requester: "Requester",
        room_id_or_alias: str,
        reason: Any = None,
        extra: Mapping[str, Any] | None = None,
        via: list[str] | None = None,
    ) -> str:
        """
        Join a room (ID or local alias); returns the room ID.

        @param extra: other keys of the request body, kept in the member
            event's content as clients expect (namespaced keys such as
            C{com.example.tag}); the keys the server sets itself
            (L{RESERVED_MEMBER_KEYS}, display name and avatar) win.
        @param via: servers to join a room of other servers through
            (C{via}/C{server_name}).
        """
        room_id, alias_servers = await self.resolve_room_servers(room_id_or_alias)
        if self.remote is not None and not await self.store.room_exists(room_id):
            if requester.is_guest:
                raise MatrixError(
                    403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests cannot join rooms on other servers"
                )
            content = {k: v for k, v in (extra or {}).items() if k not in RESERVED_MEMBER_KEYS}
            content.update(self._with_reason({"membership": "join"}, reason))
            content.update(await self._profile_content(requester.user_id))
            return await self.remote.join(
                requester.user_id, room_id, [*(via or ()), *alias_servers], content
            )
        await self._local_room(room_id)
        user = requester.user_id
        current = await self.store.membership(user, room_id)
        if current == "join":
            return room_id
        if requester.is_guest:
            ga = await self.store.current_state_event(room_id, "m.room.guest_access", "")
            if ga is None or ga.content.get("guest_access") != "can_join":
                raise MatrixError(
                    403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests are not allowed in this room"
                )
        content = {k: v for k, v in (extra or {}).items() if k not in RESERVED_MEMBER_KEYS}
        content.update(self._with_reason({"membership": "join"}, reason))
        content.update(await self._profile_content(user))
        if current != "invite":
            authoriser = await self._restricted_authoriser(room_id, user)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        await self._send_member(room_id, user, user, content)
        return room_id

    async def restricted_authoriser(self, room_id: str, user_id: str) -> str | None:
        """
        The local user who authorises C{user_id}'s join of a restricted
        room (None: the room is not restricted); also for users of other
        servers (make_join). See L{_restricted_authoriser}.
        """
        return await self._restricted_authoriser(room_id, user_id)

    async def _restricted_authoriser(self, room_id: str, user_id: str) -> str | None:
        """
        For a restricted room (v8+, or knock_restricted v10+): a local
        joined user who may invite, if C{user_id} is joined to one of the
        rooms the join rules allow; None when the rule is not restricted.

        @raise MatrixError: 403 when the user is in none of the allowed rooms.
        """
        room = await self.store.get_room(room_id)
        assert room is not None
        version = room.version
        jr = await self.store.current_state_event(room_id, "m.room.join_rules", "")
        rule = jr.content.get("join_rule") if jr is not None else None
        if not (
            (rule == "restricted" and version.restricted_joins)
            or (rule == "knock_restricted" and version.knock_restricted)
        ):
            return None
        allow = jr.content.get("allow") if jr is not None else None
        allowed_rooms = [
            a.get("room_id")
            for a in (allow if isinstance(allow, list) else [])
            if isinstance(a, dict) and a.get("type") == "m.room_membership"
        ]
        ok = False
        for other in allowed_rooms:
            if isinstance(other, str) and await self.store.membership(user_id, other) == "join":
                ok = True
                break
        if not ok:
            if rule == "knock_restricted":
                return None  # let the auth rules explain (knock instead)
            raise forbidden(
                "You need to be in one of the rooms this room allows to join it"
            )
        auth = await self.store.current_state_events(
            room_id, [("m.room.create", ""), ("m.room.power_levels", "")]
        )
        invite_level = get_named_level(auth, "invite")
        for member in await self.store.members(room_id, "join"):
            if not self.is_local(member):
                continue
            member_ev = await self.store.current_state_event(room_id, "m.room.member", member)
            scoped = dict(auth)
            if member_ev is not None:
                scoped[("m.room.member", member)] = member_ev
            if get_user_power_level(member, scoped) >= invite_level:
                return member
        raise forbidden("No user of this server in the room may authorise your join")

    async def invite(
        self, requester: "Requester", room_id: str, target: Any, reason: Any = None,
        is_direct: bool = False,
    ) -> None:
        """Invite C{target} to a room."""
        if not isinstance(target, str) or not is_valid_user_id(target) or not target.startswith("@"):
            raise MatrixError(400, Codes.INVALID_PARAM, "user_id must be a user ID")
        if self.block_non_admin_invites and not await self.users.is_admin(requester.user_id):
            raise forbidden("Invites are restricted to server admins on this server")
        await self._local_room(room_id)
        if not self.is_local(target) and self.remote is None:
            raise MatrixError(
                400, Codes.UNKNOWN, "Cannot invite %s: %s" % (target, _FEDERATION)
            )
        if await self.store.membership(target, room_id) == "invite":
            return
        content = self._with_reason({"membership": "invite"}, reason)
        if is_direct:
            content["is_direct"] = True
        content.update(await self._profile_content(target))
        if not self.is_local(target) and self.remote is not None:
            await self.remote.invite(requester.user_id, room_id, target, content)
            return
        await self._send_member(room_id, requester.user_id, target, content)

    async def leave(self, requester: "Requester", room_id: str, reason: Any = None) -> None:
        """Leave a room (or reject an invite, or withdraw a knock)."""
        user = requester.user_id
        current = await self.store.membership(user, room_id)
        if current is None and not await self.store.room_exists(room_id):
            raise not_found("Unknown room " + room_id)
        if current == "leave":
            return
        content = self._with_reason({"membership": "leave"}, reason)
        if (
            current in ("invite", "knock") and self.remote is not None
            and not await self.store.room_exists(room_id)
        ):
            # An invite or knock for a room this server is not in.
            await self.remote.leave(user, room_id, content)
            return
        await self._send_member(room_id, user, user, content)

    async def joined_room_ids(self, user_id: str) -> list[str]:
        """C{GET /joined_rooms}: the rooms the user is joined to."""
        return await self.store.joined_room_ids(user_id)

    async def forget(self, requester: "Requester", room_id: str) -> None:
        """Forget a room the user has left."""
        current = await self.store.membership(requester.user_id, room_id)
        if current in ("join", "invite", "knock"):
            raise MatrixError(400, Codes.UNKNOWN, "You must leave the room before forgetting it")
        if current is None:
            if not await self.store.room_exists(room_id):
                raise not_found("Unknown room " + room_id)
            return
        await self.store.forget(requester.user_id, room_id)

    async def _moderate(
        self, requester: "Requester", room_id: str, target: Any, membership: str, reason: Any
    ) -> None:
        if not isinstance(target, str) or not is_valid_user_id(target):
            raise MatrixError(400, Codes.INVALID_PARAM, "user_id must be a user ID")
        await self._local_room(room_id)
        content = self._with_reason({"membership": membership}, reason)
        await self._send_member(room_id, requester.user_id, target, content)

    async def kick(self, requester: "Requester", room_id: str, target: Any, reason: Any = None) -> None:
        """Kick C{target} (membership leave sent by someone else)."""
        if isinstance(target, str) and await self.store.membership(target, room_id) not in (
            "join", "invite", "knock",
        ):
            await self._local_room(room_id)
            raise forbidden("%s is not in the room" % (target,))
        await self._moderate(requester, room_id, target, "leave", reason)

    async def ban(self, requester: "Requester", room_id: str, target: Any, reason: Any = None) -> None:
        """Ban C{target}."""
        await self._moderate(requester, room_id, target, "ban", reason)

    async def unban(self, requester: "Requester", room_id: str, target: Any, reason: Any = None) -> None:
        """Lift a ban (membership leave)."""
        if isinstance(target, str) and await self.store.membership(target, room_id) != "ban":
            await self._local_room(room_id)
            raise forbidden("%s is not banned" % (target,))
        await self._moderate(requester, room_id, target, "leave", reason)

    async def knock(
        self, requester: "Requester", room_id_or_alias: str, reason: Any = None,
        via: list[str] | None = None,
    ) -> str:
        """Knock on a room (v7+); returns the room ID."""
        room_id, alias_servers = await self.resolve_room_servers(room_id_or_alias)
        if self.remote is not None and not await self.store.room_exists(room_id):
            content = self._with_reason({"membership": "knock"}, reason)
            content.update(await self._profile_content(requester.user_id))
            return await self.remote.knock(
                requester.user_id, room_id, [*(via or ()), *alias_servers], content
            )
        await self._local_room(room_id)
        room = await self.store.get_room(room_id)
        assert room is not None
        if not room.version.knocking:
            raise forbidden("Room version %s does not support knocking" % room.version.identifier)
        user = requester.user_id
        content = self._with_reason({"membership": "knock"}, reason)
        content.update(await self._profile_content(user))
        await self._send_member(room_id, user, user, content)
        return room_id

    # ------------------------------------------------------------------
    # Accounts hooks

    async def profile_changed(self, user_id: str, field: str, value: Any) -> None:
        """
        C{ProfileHandler.on_profile_changed}: a new join event with the
        new display name / avatar in every room the user is joined to.
        """
        if field not in ("displayname", "avatar_url"):
            return
        for rec in await self.store.rooms_for_user(user_id, ("join",)):
            try:
                current = await self.store.current_state_event(rec.room_id, "m.room.member", user_id)
                content = dict(current.content) if current is not None else {"membership": "join"}
                if content.get("membership") != "join":
                    continue
                content.pop("reason", None)
                content.pop("join_authorised_via_users_server", None)
                if value is None:
                    content.pop(field, None)
                else:
                    content[field] = value
                if current is not None and content == current.content:
                    continue
                await self._send_member(rec.room_id, user_id, user_id, content)
            except MatrixError as e:
                log.warn(
                    "Could not update the profile of {user} in {room}: {err}",
                    user=user_id, room=rec.room_id, err=e.msg,
                )

    async def deactivated(self, user_id: str, erase: bool) -> None:
        """C{AccountHandler.on_deactivated}: leave (or reject) every room."""
        for rec in await self.store.rooms_for_user(user_id, ("join", "invite", "knock")):
            try:
                await self._send_member(rec.room_id, user_id, user_id, {"membership": "leave"})
            except MatrixError as e:
                log.warn(
                    "Could not make deactivated {user} leave {room}: {err}",
                    user=user_id, room=rec.room_id, err=e.msg,
                )
