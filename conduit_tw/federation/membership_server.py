"""
Serving the membership handshakes to other servers (server-server-api
"Joining Rooms", "Knocking upon a room", "Inviting to a room", "Leaving
Rooms (Rejecting Invites)"):

- C{make_join} / C{make_leave} / C{make_knock}: an event template built on
  the room's current state by L{EventHandler.build} (so join rules, bans
  and power levels are checked by the auth rules: 403 with their reason),
  with our hashes, signatures and (v1-2) event ID taken off;
- C{send_join} / C{send_leave} / C{send_knock}: the signed event is
  checked (format for the room version, event ID, a membership of a user
  of the origin for itself, signatures via the keyring, content hash, auth
  against the current state), signed by us too, persisted as a live event
  under the room's lock, and sent to the other servers of the room;
  send_join answers the state before the event and its auth chain;
- C{invite} (v2): the invite of one of our users is checked, signed and
  stored: through the normal path when we are in the room, otherwise as
  an outlier with the stripped state the inviting server sent, which
  /sync shows in C{rooms.invite}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from conduit_tw.errors import Codes, MatrixError, bad_json, forbidden, invalid_param, not_found
from conduit_tw.events.auth_rules import CREATE_KEY, AuthError, auth_types_for, check_auth
from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from conduit_tw.events.signing import SignatureError, compute_event_signature, server_name_of
from conduit_tw.federation.acl import check_server_acl
from conduit_tw.federation.disabled_rooms import DISABLED, RoomDisabled, never_disabled
from conduit_tw.federation.event_checks import BadEvent, VerifyEvent, check_signed_event, parse_pdu, room_of
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.rooms import RoomInfo
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.users import UserStore

log = get_logger("conduit_tw.federation.membership_server")

_MEMBER = "m.room.member"

#: State types sent as stripped state with invites and knocks
#: (client-server-api "Stripped state": the recommended set).
STRIPPED_TYPES = (
    "m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules",
    "m.room.canonical_alias", "m.room.encryption",
)

#: C{send_pdu(room_id, event, destinations)}: hand an event to the sender.
SendPdu = Callable[[str, Event, Iterable[str]], Any]


def stripped(event: Event) -> dict[str, Any]:
    """A stripped state event (type, state_key, sender, content)."""
    return {
        "type": event.type,
        "state_key": event.state_key or "",
        "sender": event.sender,
        "content": event.content,
    }


def template_of(pdu: dict[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The make_* template: the built event without our hashes, signatures and ID."""
    template = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures", "unsigned")}
    if version.event_id_in_event:
        template.pop("event_id", None)
    return template


def incompatible(version: RoomVersion) -> MatrixError:
    """400 M_INCOMPATIBLE_ROOM_VERSION naming the room's version."""
    return MatrixError(
        400, Codes.INCOMPATIBLE_ROOM_VERSION,
        "Your server does not support room version %s" % version.identifier,
        room_version=version.identifier,
    )


class MembershipServlet:
    """
    The serving side of the membership handshakes; see the module
    docstring.

    @ivar send_pdu: hands an event we accepted to the outgoing sender
        (L{SendPdu}); None logs and drops (no sender wired).
    """

    def __init__(
        self,
        server_name: str,
        store: "EventStore",
        events: "EventHandler",
        users: "UserStore",
        verify_event: VerifyEvent,
        *,
        restricted_authoriser: Callable[[str, str], Awaitable[str | None]] | None = None,
        block_non_admin_invites: bool = False,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.events = events
        self.users = users
        self.verify_event = verify_event
        self.restricted_authoriser = restricted_authoriser
        #: C{block_non_admin_invites}: only admins receive remote invites.
        self.block_non_admin_invites = block_non_admin_invites
        self.send_pdu: SendPdu | None = None
        #: Rooms whose incoming federation is disabled: every handshake refused.
        self.room_disabled: RoomDisabled = never_disabled

    # ------------------------------------------------------------------
    # Shared

    async def room_for(self, room_id: str, origin: str) -> RoomInfo:
        """
        The room (404 if we have no state for it) once the origin passes its
        ACL (403 when the room's incoming federation is disabled).
        """
        room = await self.store.get_room(room_id)
        if room is None or not (await self.store.head(room)).statehash:
            raise not_found("Unknown room " + room_id)
        if await self.room_disabled(room_id):
            raise forbidden(DISABLED)
        acl = await self.store.current_state_event(room_id, "m.room.server_acl", "")
        check_server_acl(origin, acl.content if acl is not None else None)
        return room

    def sign(self, event: Event) -> Event:
        """The event with our signature added (its ID does not change)."""
        keys = self.events.server_keys
        sig = compute_event_signature(event.pdu, event.room_version, keys.signing_key, self.server_name)
        pdu = dict(event.pdu)
        sigs = {k: dict(v) for k, v in (pdu.get("signatures") or {}).items() if isinstance(v, dict)}
        sigs.setdefault(self.server_name, {}).update(sig[self.server_name])
        pdu["signatures"] = sigs
        return Event(pdu, event.event_id, event.room_version)

    async def stripped_state(self, room_id: str, sender: str | None = None) -> list[dict[str, Any]]:
        """
        The room's current state events of the stripped-state types (with
        C{sender}'s member event) as full PDUs, which C{invite_room_state}
        and C{knock_room_state} carry since v1.16 (the create event
        included); receivers strip them for their clients.
        """
        keys = [(t, "") for t in STRIPPED_TYPES]
        if sender is not None:
            keys.append((_MEMBER, sender))
        state = await self.store.current_state_events(room_id, keys)
        return [e.pdu for e in state.values()]

    async def checked_room_state(
        self, entries: Any, room_id: str, version: RoomVersion
    ) -> list[dict[str, Any]]:
        """
        C{invite_room_state} / C{knock_room_state} as stripped events for
        our clients. In rooms v12 every entry must be a valid PDU of the
        room with good signatures, the create event included
        (invites-v2.yaml: SHOULD, with M_INVALID_PARAM); older versions
        take well-formed entries as they come (MAY).

        @raise MatrixError: 400 M_INVALID_PARAM (v12 only).
        """
        if not isinstance(entries, list):
            entries = []
        entries = [e for e in entries if isinstance(e, dict)][:50]
        if version.room_id_from_create_event:
            events = []
            try:
                for entry in entries:
                    event = parse_pdu(entry, version)
                    if room_of(event) != room_id or not event.is_state():
                        raise BadEvent("an event of another room or not a state event")
                    await check_signed_event(event, self.verify_event)
                    events.append(event)
            except BadEvent as e:
                raise invalid_param("Invalid room state: %s" % e) from None
            if not any(e.type == "m.room.create" for e in events):
                raise invalid_param("The room state has no m.room.create event")
            return [stripped(e) for e in events]
        return [
            {k: e[k] for k in ("type", "state_key", "sender", "content")}
            for e in entries
            if isinstance(e.get("type"), str) and isinstance(e.get("state_key"), str)
            and isinstance(e.get("sender"), str) and isinstance(e.get("content"), dict)
        ]

    async def servers_in_room(self, room_id: str) -> set[str]:
        """The servers of the room's joined members, us excluded."""
        servers = {server_name_of(u) for u in await self.store.members(room_id, "join")}
        servers.discard(self.server_name)
        return servers

    async def send_out(self, room_id: str, event: Event, destinations: Iterable[str]) -> None:
        """
        The one place membership code hands an event to the outgoing
        sender (C{send_pdu}); failures are logged, never raised.
        """
        dests = sorted(set(destinations) - {self.server_name})
        if not dests:
            return
        if self.send_pdu is None:
            log.info(
                "No federation sender: {event_id} not sent to {dests}",
                event_id=event.event_id, dests=dests,
            )
            return
        try:
            result = self.send_pdu(room_id, event, dests)
            if hasattr(result, "__await__"):
                await result
        except Exception:
            log.failure("Handing {event_id} to the sender failed", event_id=event.event_id)

    async def auth_chain(self, event_ids: Iterable[str]) -> list[StoredEvent]:
        """Every stored event in the auth chains of C{event_ids} (not those events)."""
        seen: set[str] = set()
        frontier = list(dict.fromkeys(event_ids))
        start = set(frontier)
        out: list[StoredEvent] = []
        while frontier:
            found = await self.store.get_events(frontier)
            frontier = []
            for event_id, event in found.items():
                if event_id not in start:
                    out.append(event)
                for auth_id in event.auth_event_ids():
                    if auth_id not in seen:
                        seen.add(auth_id)
                        frontier.append(auth_id)
            start = set()
        return out

    # ------------------------------------------------------------------
    # make_*

    async def make_membership(
        self, origin: str, room_id: str, user_id: str, membership: str, versions: list[str]
    ) -> dict[str, Any]:
        """
        C{GET /make_join|make_leave|make_knock/{roomId}/{userId}}: an
        event template, or 403 (not a user of the origin, or the auth
        rules refuse), 404 (unknown room), 400 M_INCOMPATIBLE_ROOM_VERSION
        (C{ver} does not list the room's version; a join without C{ver}
        supports only v1, server-server-api "Joining Rooms").
        """
        if not user_id.startswith("@") or server_name_of(user_id) != origin:
            raise forbidden("User %s does not belong to %s" % (user_id, origin))
        room = await self.room_for(room_id, origin)
        version = room.version
        if membership in ("join", "knock") and version.identifier not in versions:
            raise incompatible(version)
        if membership == "knock" and not version.knocking:
            raise incompatible(version)
        content: dict[str, Any] = {"membership": membership}
        if membership == "join" and self.restricted_authoriser is not None:
            if await self.store.membership(user_id, room_id) not in ("invite", "join"):
                authoriser = await self.restricted_authoriser(room_id, user_id)
                if authoriser is not None:
                    content["join_authorised_via_users_server"] = authoriser
        event = await self.events.build(room, user_id, _MEMBER, content, user_id)
        return {"event": template_of(event.pdu, version), "room_version": version.identifier}

    # ------------------------------------------------------------------
    # send_*

    async def _receive_membership(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str
    ) -> tuple[RoomInfo, StoredEvent]:
        room = await self.room_for(room_id, origin)
        try:
            event = parse_pdu(pdu, room.version)
        except BadEvent as e:
            raise bad_json(str(e)) from None
        if event.event_id != event_id:
            raise bad_json("The event ID does not match the event")
        if room_of(event) != room_id:
            raise bad_json("The event is for another room")
        if event.type != _MEMBER or event.membership() != membership:
            raise bad_json("Not an m.room.member event with membership %s" % membership)
        if event.state_key != event.sender:
            raise bad_json("The event's state_key must be its sender")
        if server_name_of(event.sender) != origin:
            raise forbidden("The event's sender does not belong to %s" % origin)
        if membership == "join":
            via = event.content.get("join_authorised_via_users_server")
            if isinstance(via, str) and (
                not via.startswith("@") or server_name_of(via) != self.server_name
            ) and await self.store.membership(event.sender, room_id) not in ("invite", "join"):
                raise bad_json("The join is authorised by a user of another server")
        # Signed first: a restricted join authorised by one of our users
        # must carry our signature too (required signers, room v8+).
        signed = self.sign(event)
        try:
            await check_signed_event(signed, self.verify_event)
        except BadEvent as e:
            raise forbidden(str(e)) from None
        # The event must be built on our room as make_* gave it: known
        # prev_events of this room, and a depth no deeper than one past ours.
        prev_ids = event.prev_event_ids()
        prevs = await self.store.get_events(prev_ids)
        if not prev_ids or len(prevs) != len(set(prev_ids)) or any(
            p.shortroomid != room.short for p in prevs.values()
        ):
            raise bad_json("The event's prev_events are not events of this room known here")
        if event.depth > (await self.store.head(room)).depth + 1:
            raise bad_json("The event's depth is too large")
        stored, new = await self.persist_live(room, signed)
        if new:
            others = await self.servers_in_room(room_id)
            await self.send_out(room_id, stored, others - {origin})
        return room, stored

    async def persist_live(self, room: RoomInfo, event: Event) -> tuple[StoredEvent, bool]:
        """
        Under the room's lock: authorise a received event against the
        current state (403 with the auth rules' reason) and store it as
        the room's next live event. Returns once durable, with whether it
        is new (an event already in the timeline is answered as stored).
        """
        async with self.events.linearizer.queue(room.room_id):
            existing = await self.store.get_event(event.event_id)
            if existing is not None and not existing.rejected and existing.order:
                return existing, False
            head = await self.store.head(room)
            wanted = auth_types_for(event) | {CREATE_KEY}
            auth_state = await self.store.state_events(head.statehash, wanted)
            try:
                check_auth(event, auth_state)
            except AuthError as e:
                raise forbidden(e.message) from None
            stored, durable = await self.store.persist_apply(event)
        await durable
        return stored, True

    async def send_join(
        self, origin: str, room_id: str, event_id: str, pdu: Any
    ) -> dict[str, Any]:
        """C{PUT /v2/send_join}: the state before the join and its auth chain."""
        room, stored = await self._receive_membership(origin, room_id, event_id, pdu, "join")
        state_ids = await self.store.state_ids(stored.state_before)
        state = await self.store.get_events(state_ids.values())
        chain = await self.auth_chain([stored.event_id, *state.keys()])
        return {
            "origin": self.server_name,
            "state": [e.pdu for e in state.values()],
            "auth_chain": [e.pdu for e in chain],
            "event": stored.pdu,
            "members_omitted": False,
        }

    async def send_leave(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        """C{PUT /v2/send_leave}: empty object once stored."""
        await self._receive_membership(origin, room_id, event_id, pdu, "leave")
        return {}

    async def send_knock(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        """C{PUT /v1/send_knock}: the stripped state of the room."""
        room = await self.room_for(room_id, origin)
        if not room.version.knocking:
            raise incompatible(room.version)
        _, stored = await self._receive_membership(origin, room_id, event_id, pdu, "knock")
        return {"knock_room_state": await self.stripped_state(room_id)}

    # ------------------------------------------------------------------
    # invite

    async def receive_invite(
        self, origin: str, room_id: str, event_id: str, body: Any
    ) -> dict[str, Any]:
        """
        C{PUT /v2/invite/{roomId}/{eventId}}: check, sign and store the
        invite of one of our users; answer the event with our signature.
        """
        if not isinstance(body, dict):
            raise bad_json("Body must be an object")
        version_id = body.get("room_version")
        if not isinstance(version_id, str):
            raise bad_json("room_version must be a string")
        try:
            version = get_room_version(version_id)
        except UnsupportedRoomVersion:
            raise MatrixError(
                400, Codes.INCOMPATIBLE_ROOM_VERSION,
                "This server does not support room version %s" % version_id,
                room_version=version_id,
            ) from None
        try:
            event = parse_pdu(body.get("event"), version)
        except BadEvent as e:
            raise bad_json(str(e)) from None
        # invites-v2.yaml: these refusals SHOULD be M_INVALID_PARAM.
        if event.event_id != event_id or room_of(event) != room_id:
            raise invalid_param("The event ID or room ID does not match the event")
        if await self.room_disabled(room_id):
            raise forbidden(DISABLED)
        target = event.state_key
        if event.type != _MEMBER or event.membership() != "invite" or not target:
            raise invalid_param("Not an invite")
        try:
            if server_name_of(target) != self.server_name:
                raise invalid_param("%s is not a user of this server" % target)
            if server_name_of(event.sender) != origin:
                raise invalid_param("The inviter does not belong to %s" % origin)
        except SignatureError:
            raise invalid_param("Invalid user ID") from None
        if not await self.users.exists(target):
            raise not_found("Unknown user %s" % target)
        if self.block_non_admin_invites and not await self.users.is_admin(target):
            raise forbidden("This server only lets its admins receive invites")
        try:
            await check_signed_event(event, self.verify_event)
        except BadEvent as e:
            raise invalid_param(str(e)) from None
        invite_state = await self.checked_room_state(body.get("invite_room_state"), room_id, version)
        signed = self.sign(event)
        if await self.store.room_exists(room_id):
            # We are (or were) in the room: the invite joins its timeline
            # (the origin sends it again in a transaction, then found stored).
            await self.persist_live(await self.room_for(room_id, origin), signed)
        elif await self.store.membership(target, room_id) in (None, "leave", "invite", "knock"):
            await self.store.persist_out_of_room_membership(signed, invite_state)
        return {"event": signed.pdu}
