"""
Room creation (client-server-api "Creation", create_room.yaml).

The events are built in the order the spec lists, each on top of the state
the previous ones made, and written in ONE atomic batch: the room exists
completely or not at all.

1. m.room.create (C{creation_content} + C{creator} before v11 +
   C{room_version}; v12: the room ID is derived from it, and
   C{trusted_private_chat} invitees join C{additional_creators});
2. the creator's join (with their display name and avatar);
3. m.room.power_levels (creator at 100 before v12; v12 creators have
   infinite power and are not listed; tombstone needs 150 in v12;
   C{trusted_private_chat} invitees at 100 before v12), then
   C{power_level_content_override} on top;
4. m.room.canonical_alias for C{room_alias_name};
5. the preset's join_rules, history_visibility, guest_access (those not
   given in C{initial_state});
6. C{initial_state} in order;
7. m.room.name, m.room.topic;
8. invites (C{is_direct} carried on them).

Not supported: C{invite_3pid} (third-party invites need an identity
server): a non-empty list is refused with 400 M_UNRECOGNIZED before
anything is created; invites of users on other servers need federation
(400 M_UNKNOWN, likewise).

Hooks: L{RoomCreationHandler.before_room_created} (checks that may refuse
the request before anything is written) and
L{RoomCreationHandler.on_room_created} (the directory publishes
C{visibility: public} rooms there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.events.auth_rules import is_valid_user_id
from conduit_tw.events.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from conduit_tw.handlers.events import random_string
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.users import UserStore

#: C{(room_id, creator, request body)}, run after the room was created.
RoomCreatedHook = Callable[[str, str, dict[str, Any]], "Awaitable[None] | None"]
#: C{(requester, request body)}, run once the request is validated and
#: before anything is written; raise L{MatrixError} to refuse the request.
RoomCreateCheck = Callable[["Requester", dict[str, Any]], "Awaitable[None] | None"]

PRESETS = {
    "private_chat": ("invite", "shared", "can_join"),
    "trusted_private_chat": ("invite", "shared", "can_join"),
    "public_chat": ("public", "shared", "forbidden"),
}

_ALIAS_LOCALPART = re.compile(r"[^\s:#]+")


class _RoomExists(Exception):
    """The room ID of a new create event is taken (see L{RoomCreationHandler.create_room})."""


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


#: Call events only moderators may send in rooms created published
#: (conduwuit's call protection; handlers/voip.py).
CALL_EVENTS = ("m.call.invite", "org.matrix.msc3401.call", "org.matrix.msc3401.call.member")


def alias_forbidden(alias: str, patterns: Sequence[str]) -> bool:
    """
    Whether C{forbidden_alias_names} refuses C{alias}: each entry is a
    regular expression searched in the alias (a plain word matches as a
    substring, as in Conduit/conduwuit).
    """
    for p in patterns:
        try:
            if re.search(p, alias):
                return True
        except re.error:
            if p in alias:
                return True
    return False


@dataclass(frozen=True)
class RoomSettings:
    """The configuration values room creation reads (C{HomeServer} copies them from the config)."""

    #: C{allow_room_creation}: whether non-admins may create rooms.
    allow_room_creation: bool = True
    #: C{default_room_version}: used when the request names none.
    default_room_version: str = "12"
    #: C{allow_unstable_room_versions}.
    allow_unstable_room_versions: bool = True
    #: C{forbidden_alias_names}: patterns refused as alias localparts.
    forbidden_alias_names: tuple[str, ...] = ()


class RoomCreationHandler:
    """C{POST /createRoom}."""

    def __init__(
        self,
        server_name: str,
        settings: RoomSettings,
        store: "EventStore",
        events: "EventHandler",
        aliases: "AliasStore",
        users: "UserStore",
        clock_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.config = settings
        self.store = store
        self.events = events
        self.aliases = aliases
        self.users = users
        self.clock_ms = clock_ms
        #: Async or sync callables run after a room was created.
        self.on_room_created: list[RoomCreatedHook] = []
        #: Async or sync checks run before a room is created (the directory
        #: refuses C{visibility: public} under C{lockdown_public_room_directory}).
        self.before_room_created: list[RoomCreateCheck] = []

    async def create_room(
        self, requester: "Requester", body: dict[str, Any], *, room_id: str | None = None
    ) -> str:
        """
        Create a room as the spec says; returns its room ID.

        @param room_id: use this ID (room versions before 12 only, whose
            IDs are not derived from the create event; room upgrades
            need the ID before the room exists). 400 M_ROOM_IN_USE if taken.
        """
        fixed_room_id = room_id
        creator = requester.user_id
        if (
            not self.config.allow_room_creation
            and requester.appservice_id is None
            and not await self.users.is_admin(creator)
        ):
            raise forbidden("Room creation has been disabled on this server")
        if requester.is_guest:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests cannot create rooms")
        req = CreateRoomRequest.parse(body, creator, self.config, self.server_name)
        if req.alias is not None and await self.aliases.is_taken(req.alias):
            raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")

        for check in list(self.before_room_created):
            result = check(requester, body)
            if hasattr(result, "__await__"):
                await result

        content = create_content(req)
        version = req.version
        ts = self.clock_ms()
        while True:
            room_id = None
            if not version.room_id_from_create_event:
                room_id = fixed_room_id or "!%s:%s" % (random_string(18), self.server_name)
            create = self.events.build_create(version, creator, content, room_id, ts)
            room_id = create.room_id or "!" + create.event_id[1:]
            if await self.store.get_room(room_id) is None:
                try:
                    await self._create(room_id, create, req)
                    break
                except _RoomExists:
                    pass
            if fixed_room_id and not version.room_id_from_create_event:
                raise MatrixError(400, Codes.ROOM_IN_USE, "Room ID already in use")
            ts += 1  # an identical v12 create event: move its timestamp on

        await run_hooks(self.on_room_created, room_id, creator, body, what="on_room_created")
        return room_id

    async def _create(self, room_id: str, create: Any, req: CreateRoomRequest) -> None:
        """
        Persist C{create} then steps 2-8 (client-server-api "Creation") in
        one atomic batch; L{_RoomExists} if C{room_id} was taken meanwhile.
        """
        txn = self.store.txn()
        creator = req.creator
        try:
            async with self.events.linearizer.queue(room_id):
                if await self.store.get_room(room_id) is not None:
                    raise _RoomExists()
                await self.store.persist(create, txn=txn, new_event=True)
                room = await self.store.get_room(room_id)
                assert room is not None

                async def send(events: list[InitialEvent]) -> None:
                    for etype, econtent, state_key in events:
                        ev = await self.events.build(
                            room, creator, etype, econtent, state_key, txn=txn
                        )
                        await self.store.persist(ev, txn=txn, new_event=True)

                await send(await self._creator_join(req))
                await send(power_levels_events(req))
                if req.alias is not None:
                    self.aliases.reserve(req.alias, txn)
                    self.aliases.put_alias(txn, req.alias, room_id, creator)
                await send(canonical_alias_events(req))
                await send(preset_events(req))
                await send(initial_state_events(req))
                await send(name_topic_events(req))
                await send(await self._invite_events(req))

                durable = await txn.apply()
            # Applied (the room can be used by the next request); answer
            # once durable, outside the room's slot.
            await durable
        except MatrixError as e:
            txn.abort()
            if e.errcode == Codes.FORBIDDEN:
                # An event implied by the request is not allowed by the
                # room's own rules (e.g. a power level override).
                raise MatrixError(
                    400, Codes.INVALID_ROOM_STATE, "Invalid initial state: " + e.msg
                ) from None
            raise
        except BaseException:
            txn.abort()
            raise

    async def _creator_join(self, req: CreateRoomRequest) -> list[InitialEvent]:
        """Step 2: the creator's join, with their display name and avatar."""
        member: dict[str, Any] = {"membership": "join"}
        member.update(await self._invitee_profile(req.creator))
        return [("m.room.member", member, req.creator)]

    async def _invite_events(self, req: CreateRoomRequest) -> list[InitialEvent]:
        """Step 8: the invites, carrying C{is_direct}."""
        out: list[InitialEvent] = []
        for user in req.invites:
            invite: dict[str, Any] = {"membership": "invite"}
            if req.is_direct:
                invite["is_direct"] = True
            invite.update(await self._invitee_profile(user))
            out.append(("m.room.member", invite, user))
        return out

    async def _invitee_profile(self, user_id: str) -> dict[str, Any]:
        profile = await self.users.get_profile(user_id)
        return {k: profile[k] for k in ("displayname", "avatar_url") if isinstance(profile.get(k), str)}


#: C{(type, content, state_key)} of an event sent by C{createRoom}.
InitialEvent = tuple[str, dict[str, Any], str]


@dataclass
class CreateRoomRequest:
    """
    A validated C{POST /createRoom} body (client-server-api "Creation").

    @ivar name: C{None} if not given (likewise C{topic}).
    @ivar invites: local user IDs, deduplicated, without the creator.
    @ivar alias: the full canonical alias for C{room_alias_name}.
    """

    body: dict[str, Any]
    creator: str
    version: Any
    preset: str
    creation_content: dict[str, Any]
    initial_state: list[dict[str, Any]]
    invites: list[str]
    is_direct: bool
    pl_override: dict[str, Any] | None
    alias: str | None
    name: str | None
    topic: str | None

    @classmethod
    def parse(
        cls, body: dict[str, Any], creator: str, config: RoomSettings, server_name: str
    ) -> "CreateRoomRequest":
        """Validate C{body}; 400 with the spec's error code if it is bad."""
        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise _bad("visibility must be 'public' or 'private'")
        preset = body.get("preset")
        if preset is None:
            preset = "public_chat" if visibility == "public" else "private_chat"
        if preset not in PRESETS:
            raise _bad("Unknown preset %r" % (preset,))
        version = _parse_version(body, config)
        creation_content = body.get("creation_content", {})
        if not isinstance(creation_content, dict):
            raise _bad("creation_content must be an object")
        initial_state = body.get("initial_state", [])
        if not isinstance(initial_state, list) or not all(
            isinstance(s, dict)
            and isinstance(s.get("type"), str)
            and isinstance(s.get("content"), dict)
            and isinstance(s.get("state_key", ""), str)
            for s in initial_state
        ):
            raise _bad("initial_state must be a list of {type, state_key, content}")
        invites = _parse_invites(body, creator, server_name)
        for key in ("name", "topic", "room_alias_name"):
            if key in body and not isinstance(body[key], str):
                raise _bad("%s must be a string" % key)
        is_direct = body.get("is_direct", False)
        if not isinstance(is_direct, bool):
            raise _bad("is_direct must be a boolean")
        pl_override = body.get("power_level_content_override")
        if pl_override is not None and not isinstance(pl_override, dict):
            raise _bad("power_level_content_override must be an object")
        alias = None
        if body.get("room_alias_name"):
            alias = _parse_alias(body["room_alias_name"], config, server_name)
        return cls(
            body=body, creator=creator, version=version, preset=preset,
            creation_content=creation_content, initial_state=initial_state, invites=invites,
            is_direct=is_direct, pl_override=pl_override, alias=alias,
            name=body.get("name"), topic=body.get("topic"),
        )

    def given(self) -> set[tuple[str, str]]:
        """The C{(type, state_key)} pairs of C{initial_state}."""
        return {(s["type"], s.get("state_key", "")) for s in self.initial_state}


def usable_room_version(version_id: str, allow_unstable: bool) -> RoomVersion:
    """
    The room version a client asked for (createRoom, upgrade), or 400
    C{M_UNSUPPORTED_ROOM_VERSION} when it is unknown, or unstable while
    C{allow_unstable_room_versions} is off.
    """
    try:
        version = get_room_version(version_id)
    except UnsupportedRoomVersion:
        raise MatrixError(
            400, Codes.UNSUPPORTED_ROOM_VERSION,
            "This server does not support room version %r" % (version_id,),
        ) from None
    if not version.stable and not allow_unstable:
        raise MatrixError(
            400, Codes.UNSUPPORTED_ROOM_VERSION, "Unstable room versions are disabled"
        )
    return version


def _parse_version(body: dict[str, Any], config: RoomSettings) -> Any:
    version_id = body.get("room_version", config.default_room_version)
    if not isinstance(version_id, str):
        raise _bad("room_version must be a string")
    return usable_room_version(version_id, config.allow_unstable_room_versions)


def _parse_invites(body: dict[str, Any], creator: str, server_name: str) -> list[str]:
    """C{invite} (local users only) and C{invite_3pid} (must be empty)."""
    invites = body.get("invite", [])
    if not isinstance(invites, list) or not all(isinstance(u, str) for u in invites):
        raise _bad("invite must be a list of user IDs")
    for user in invites:
        if not is_valid_user_id(user) or not user.startswith("@"):
            raise _bad("%r is not a user ID" % (user,))
        if user.partition(":")[2] != server_name:
            raise MatrixError(
                400, Codes.UNKNOWN,
                "Cannot invite %s: inviting users of other servers needs federation, "
                "which is not supported yet" % (user,),
            )
    invite_3pid = body.get("invite_3pid", [])
    if not isinstance(invite_3pid, list):
        raise _bad("invite_3pid must be a list")
    if invite_3pid:
        raise MatrixError(
            400, Codes.UNRECOGNIZED,
            "Third-party invites (invite_3pid) are not supported by this server; "
            "invite by Matrix user ID instead",
        )
    return list(dict.fromkeys(u for u in invites if u != creator))


def _parse_alias(localpart: str, config: RoomSettings, server_name: str) -> str:
    """The canonical alias for C{room_alias_name} (whether it is taken is checked later)."""
    if not _ALIAS_LOCALPART.fullmatch(localpart):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room_alias_name")
    alias = "#%s:%s" % (localpart, server_name)
    if len(alias.encode("utf-8")) > 255:
        raise MatrixError(400, Codes.INVALID_PARAM, "Room alias is too long")
    if alias_forbidden(alias, config.forbidden_alias_names):
        raise MatrixError(400, Codes.INVALID_PARAM, "This room alias is forbidden")
    return alias


def create_content(req: CreateRoomRequest) -> dict[str, Any]:
    """Step 1: the content of m.room.create."""
    version = req.version
    content = dict(req.creation_content)
    content.pop("room_version", None)
    if version.implicit_room_creator:
        content.pop("creator", None)
    else:
        content["creator"] = req.creator
    content["room_version"] = version.identifier
    if version.privileged_creators and req.preset == "trusted_private_chat":
        extra = content.get("additional_creators", [])
        if not isinstance(extra, list):
            raise _bad("additional_creators must be a list")
        content["additional_creators"] = list(
            dict.fromkeys([u for u in extra if u != req.creator] + req.invites)
        )
    return content


def power_levels_events(req: CreateRoomRequest) -> list[InitialEvent]:
    """Step 3: m.room.power_levels with the override on top (unless in C{initial_state})."""
    pl = default_power_levels(req.version, req.creator, req.preset, req.invites)
    if req.body.get("visibility") == "public":
        # conduwuit's call protection: in rooms created published, only
        # moderators start calls (handlers/voip.py, CALL_EVENTS).
        pl["events"].update(dict.fromkeys(CALL_EVENTS, 50))
    if req.pl_override:
        pl.update(req.pl_override)
    if ("m.room.power_levels", "") in req.given():
        return []
    return [("m.room.power_levels", pl, "")]


def canonical_alias_events(req: CreateRoomRequest) -> list[InitialEvent]:
    """Step 4: m.room.canonical_alias for C{room_alias_name}."""
    if req.alias is None:
        return []
    return [("m.room.canonical_alias", {"alias": req.alias}, "")]


def preset_events(req: CreateRoomRequest) -> list[InitialEvent]:
    """Step 5: the preset's state, except what C{initial_state} gives."""
    join_rule, history, guest = PRESETS[req.preset]
    given = req.given()
    return [
        (etype, econtent, "")
        for etype, econtent in (
            ("m.room.join_rules", {"join_rule": join_rule}),
            ("m.room.history_visibility", {"history_visibility": history}),
            ("m.room.guest_access", {"guest_access": guest}),
        )
        if (etype, "") not in given
    ]


def initial_state_events(req: CreateRoomRequest) -> list[InitialEvent]:
    """
    Step 6: C{initial_state} in order, without m.room.create, the creator's
    membership, and name/topic when C{name}/C{topic} are given.
    """
    out: list[InitialEvent] = []
    for s in req.initial_state:
        etype, skey = s["type"], s.get("state_key", "")
        if etype == "m.room.create" or (etype, skey) == ("m.room.member", req.creator):
            continue
        if (etype == "m.room.name" and req.name is not None) or (
            etype == "m.room.topic" and req.topic is not None
        ):
            continue
        out.append((etype, s["content"], skey))
    return out


def name_topic_events(req: CreateRoomRequest) -> list[InitialEvent]:
    """Step 7: m.room.name and m.room.topic (with its C{m.topic} text/plain form)."""
    out: list[InitialEvent] = []
    if req.name is not None:
        out.append(("m.room.name", {"name": req.name}, ""))
    if req.topic is not None:
        topic = req.topic
        out.append((
            "m.room.topic",
            {
                "topic": topic,
                "m.topic": {"m.text": [{"body": topic, "mimetype": "text/plain"}]},
            },
            "",
        ))
    return out


def default_power_levels(version: Any, creator: str, preset: str, invites: list[str]) -> dict[str, Any]:
    """The m.room.power_levels content before C{power_level_content_override}."""
    users: dict[str, int] = {}
    if not version.privileged_creators:
        users[creator] = 100
        if preset == "trusted_private_chat":
            for u in invites:
                users[u] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if version.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
        "notifications": {"room": 50},
    }
