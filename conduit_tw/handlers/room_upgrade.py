"""
Room upgrades (client-server-api "Room Upgrades", modules/room_upgrades.md,
room_upgrades.yaml): C{POST /rooms/{roomId}/upgrade}.

Steps, as the spec's "Server behaviour" lists them (and as Synapse does):

1. The new version must be known (400 M_UNSUPPORTED_ROOM_VERSION), the
   user must be joined and allowed to send m.room.tombstone: the
   tombstone is built and authorised against the old room's current state
   before anything is created (403 otherwise).
2. The replacement room is created (C{RoomCreationHandler.create_room})
   with C{predecessor} (C{room_id}, and C{event_id} = the tombstone's ID
   before room v12; a v12 room ID is derived from its create event, which
   cannot name a tombstone that names that room ID, so v12 omits it, as
   the spec allows), the old create event's C{type} and C{m.federate:
   false}, and, for v12, the request's C{additional_creators} (the old
   room's are not copied, as the spec says).
3. Transferable state is copied: server ACL, encryption, name, avatar,
   topic, guest access, history visibility, join rules, power levels, and
   a space's children. Absent join rules/history visibility/guest access
   are written with their default meaning (invite/shared/forbidden), so
   no preset leaks in. The power levels are first written with the
   upgrader raised to the level needed to send all of that (max of
   C{state_default}, C{ban} and the C{events} levels); once the state and
   the old room's bans (copied too, as Synapse does) are in, the old
   power levels are restored exactly. For v12 the creators are removed
   from C{users} (they have infinite power and may not be listed).
4. The tombstone is stored in the old room (the old room is held for the
   whole upgrade, so nothing gets between the tombstone's build and its
   storage).
5. Local aliases move to the new room (one atomic batch), the
   m.room.canonical_alias of the old room loses them and the new room
   gets them; a published room is unpublished and the new one published
   (the directory's L{on_room_upgraded} hook, handlers/directory.py).
6. The old room's C{events_default} and C{invite} are raised to
   C{max(50, users_default + 1)} (when the upgrader may).

Hook: L{RoomUpgradeHandler.on_room_upgraded} C{(old_room_id,
new_room_id, user_id)}, sync or async, after everything else.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.events.auth_rules import is_valid_user_id
from conduit_tw.events.room_versions import RoomVersion
from conduit_tw.handlers.events import ENCRYPTION_UNSUPPORTED, random_string
from conduit_tw.handlers.rooms import usable_room_version
from conduit_tw.logging import get_logger
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.handlers.rooms import RoomCreationHandler
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.timeline import StoredEvent

log = get_logger("conduit_tw.room_upgrade")

RoomUpgradedHook = Callable[[str, str, str], "Awaitable[None] | None"]

#: State copied to the replacement room (modules/room_upgrades.md).
COPIED_STATE = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
)
#: What an absent event means, written explicitly so no preset applies.
_DEFAULTS = {
    "m.room.join_rules": {"join_rule": "invite"},
    "m.room.history_visibility": {"history_visibility": "shared"},
    "m.room.guest_access": {"guest_access": "forbidden"},
}
_PL = "m.room.power_levels"
_CANONICAL = "m.room.canonical_alias"
_PL_DEFAULTS: dict[str, Any] = {
    "users": {},
    "users_default": 0,
    "events": {},
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
    "notifications": {"room": 50},
}


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class RoomUpgradeHandler:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        store: "EventStore",
        events: "EventHandler",
        room_creation: "RoomCreationHandler",
        aliases: "AliasStore",
        *,
        allow_unstable_room_versions: bool = True,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.events = events
        self.room_creation = room_creation
        self.aliases = aliases
        self.allow_unstable_room_versions = allow_unstable_room_versions
        #: Sync or async C{(old_room_id, new_room_id, user_id)} callables.
        self.on_room_upgraded: list[RoomUpgradedHook] = []

    def _version(self, body: dict[str, Any]) -> RoomVersion:
        new_version = body.get("new_version")
        if new_version is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing new_version")
        if not isinstance(new_version, str):
            raise MatrixError(400, Codes.BAD_JSON, "new_version must be a string")
        return usable_room_version(new_version, self.allow_unstable_room_versions)

    async def upgrade(self, requester: "Requester", room_id: str, body: dict[str, Any]) -> str:
        """Upgrade the room; returns the replacement room's ID."""
        version = self._version(body)
        user_id = requester.user_id
        extra_creators: list[str] = []
        if "additional_creators" in body:
            extra = body["additional_creators"]
            if not isinstance(extra, list) or not all(
                isinstance(u, str) and u.startswith("@") and is_valid_user_id(u) for u in extra
            ):
                raise MatrixError(400, Codes.BAD_JSON, "additional_creators must be a list of user IDs")
            if version.privileged_creators:
                extra_creators = list(dict.fromkeys(u for u in extra if u != user_id))
        if requester.is_guest:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests cannot upgrade rooms")
        room = await self.events.get_room_or_404(room_id)
        if await self.store.membership(user_id, room_id) != "join":
            raise forbidden("You are not in the room")

        async with self.events.linearizer.queue(room_id):
            head = await self.store.head(room)
            old_state = await self.store.state_events(head.statehash)
            if ("m.room.encryption", "") in old_state:
                # The replacement could not carry the encryption (handlers/events.py
                # refuses m.room.encryption until E2EE lands) and silently
                # dropping it would downgrade the room: refuse before any change.
                raise forbidden(ENCRYPTION_UNSUPPORTED + "; an encrypted room cannot be upgraded")
            new_room_id = None
            tombstone_content = {"body": "This room has been replaced", "replacement_room": ""}
            if version.room_id_from_create_event:
                # Authorise now; the real tombstone names the derived room ID.
                tombstone_content["replacement_room"] = "!placeholder:" + self.server_name
                tombstone = await self.events.build(
                    room, user_id, "m.room.tombstone", tombstone_content, ""
                )
                predecessor: dict[str, Any] = {"room_id": room_id}
            else:
                new_room_id = "!%s:%s" % (random_string(18), self.server_name)
                tombstone_content["replacement_room"] = new_room_id
                tombstone = await self.events.build(
                    room, user_id, "m.room.tombstone", tombstone_content, ""
                )
                predecessor = {"room_id": room_id, "event_id": tombstone.event_id}

            creators = {user_id, *extra_creators}
            create_body, final_pl = self._create_body(
                version, user_id, creators, extra_creators, predecessor, old_state
            )
            new_room_id = await self.room_creation.create_room(
                requester, create_body, room_id=new_room_id
            )
            await self._copy_bans(new_room_id, user_id, old_state)
            if final_pl is not None:
                current = await self.store.current_state_event(new_room_id, _PL, "")
                if current is None or current.content != final_pl:
                    try:
                        await self.events.send(new_room_id, user_id, _PL, final_pl, "")
                    except MatrixError as e:
                        log.warn("Could not restore the power levels in {room}: {e}",
                                 room=new_room_id, e=e)

            if version.room_id_from_create_event:
                tombstone_content["replacement_room"] = new_room_id
                tombstone = await self.events.build(
                    room, user_id, "m.room.tombstone", tombstone_content, ""
                )
            await self.store.persist(tombstone, new_event=True)

        await self._move_aliases(room_id, new_room_id, user_id, old_state)
        await self._restrict_old_room(room_id, user_id, old_state)
        await run_hooks(self.on_room_upgraded, room_id, new_room_id, user_id, what="on_room_upgraded")
        return new_room_id

    # ------------------------------------------------------------------

    def _create_body(
        self,
        version: RoomVersion,
        user_id: str,
        creators: set[str],
        extra_creators: list[str],
        predecessor: dict[str, Any],
        old_state: dict[tuple[str, str], "StoredEvent"],
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The createRoom body of the replacement, and the power levels to restore after."""
        old_create = old_state.get(("m.room.create", ""))
        creation_content: dict[str, Any] = {"predecessor": predecessor}
        if old_create is not None:
            room_type = old_create.content.get("type")
            if isinstance(room_type, str):
                creation_content["type"] = room_type
            if old_create.content.get("m.federate", True) is False:
                creation_content["m.federate"] = False
        if extra_creators:
            creation_content["additional_creators"] = extra_creators

        initial_state: list[dict[str, Any]] = []
        for etype in COPIED_STATE:
            ev = old_state.get((etype, ""))
            if ev is not None:
                initial_state.append({"type": etype, "state_key": "", "content": dict(ev.content)})
            elif etype in _DEFAULTS:
                initial_state.append({"type": etype, "state_key": "", "content": dict(_DEFAULTS[etype])})
        if old_create is not None and old_create.content.get("type") == "m.space":
            for (etype, skey), ev in sorted(old_state.items()):
                if etype == "m.space.child" and ev.content:
                    initial_state.append({"type": etype, "state_key": skey, "content": dict(ev.content)})

        body: dict[str, Any] = {
            "room_version": version.identifier,
            "preset": "private_chat",
            "creation_content": creation_content,
            "initial_state": initial_state,
        }
        old_pl = old_state.get((_PL, ""))
        if old_pl is None:
            return body, None
        final = copy.deepcopy(old_pl.content)
        users = final.get("users")
        if not isinstance(users, dict):
            users = final["users"] = {}
        old_room_version = old_pl.room_version
        if old_room_version.privileged_creators and not version.privileged_creators:
            # The upgrader had infinite power as a creator of the old room.
            if old_create is not None and user_id in _creators_of(old_create):
                users[user_id] = max(_int(users.get(user_id), 0), 100)
        if version.privileged_creators:
            for c in creators:
                users.pop(c, None)
        # The initial power levels: every key explicit (so the defaults of
        # createRoom add nothing), the upgrader raised if needed.
        initial = copy.deepcopy(final)
        for k, v in _PL_DEFAULTS.items():
            initial.setdefault(k, copy.deepcopy(v))
        if not version.privileged_creators:
            events = initial.get("events") if isinstance(initial.get("events"), dict) else {}
            needed = max(
                _int(initial.get("state_default"), 50),
                _int(initial.get("ban"), 50),
                max((_int(v, 0) for v in events.values()), default=0),
            )
            current = _int(initial["users"].get(user_id, initial.get("users_default", 0)), 0)
            if current < needed:
                initial["users"][user_id] = needed
        body["power_level_content_override"] = initial
        return body, final

    async def _copy_bans(
        self, new_room_id: str, user_id: str, old_state: dict[tuple[str, str], "StoredEvent"]
    ) -> None:
        for (etype, target), ev in sorted(old_state.items()):
            if etype != "m.room.member" or ev.membership() != "ban":
                continue
            content = {"membership": "ban"}
            if isinstance(ev.content.get("reason"), str):
                content["reason"] = ev.content["reason"]
            try:
                await self.events.send(new_room_id, user_id, "m.room.member", content, target)
            except MatrixError as e:
                log.warn("Could not copy the ban of {user} to {room}: {e}", user=target,
                         room=new_room_id, e=e)

    async def _move_aliases(
        self, old: str, new: str, user_id: str, old_state: dict[tuple[str, str], "StoredEvent"]
    ) -> None:
        moved = set(await self.aliases.move_to_room(old, new, user_id))
        canonical = old_state.get((_CANONICAL, ""))
        if canonical is not None and moved:
            content = canonical.content
            alias = content.get("alias")
            alt = content.get("alt_aliases")
            alt = [a for a in alt if isinstance(a, str)] if isinstance(alt, list) else []
            new_content: dict[str, Any] = {}
            if isinstance(alias, str) and alias in moved:
                new_content["alias"] = alias
            new_alt = [a for a in alt if a in moved]
            if new_alt:
                new_content["alt_aliases"] = new_alt
            old_content = {
                k: v for k, v in content.items() if k not in ("alias", "alt_aliases")
            }
            if isinstance(alias, str) and alias not in moved:
                old_content["alias"] = alias
            rest = [a for a in alt if a not in moved]
            if rest:
                old_content["alt_aliases"] = rest
            for room_id, c in ((old, old_content), (new, new_content)):
                if room_id == new and not c:
                    continue
                try:
                    await self.events.send(room_id, user_id, _CANONICAL, c, "")
                except MatrixError as e:
                    log.warn("Could not update the canonical alias of {room}: {e}", room=room_id, e=e)

    async def _restrict_old_room(
        self, room_id: str, user_id: str, old_state: dict[tuple[str, str], "StoredEvent"]
    ) -> None:
        pl = await self.store.current_state_event(room_id, _PL, "")
        if pl is None:
            return
        content = copy.deepcopy(pl.content)
        restricted = max(50, _int(content.get("users_default"), 0) + 1)
        changed = False
        for key in ("events_default", "invite"):
            if _int(content.get(key), 0) < restricted:
                content[key] = restricted
                changed = True
        if changed:
            try:
                await self.events.send(room_id, user_id, _PL, content, "")
            except MatrixError as e:
                log.warn("Could not restrict the old room {room}: {e}", room=room_id, e=e)


def _creators_of(create: "StoredEvent") -> set[str]:
    out = {create.sender}
    extra = create.content.get("additional_creators")
    if isinstance(extra, list):
        out.update(u for u in extra if isinstance(u, str))
    return out
