"""
EDUs both ways (server-server-api "EDUs", "Typing Notifications",
"Presence", "Receipts", "Send-to-device messaging", "Device Management")
and the PDUs of our own users, handed to the sender.

Inbound (L{FederationEdus.register} fills C{TransactionHandler.edu_handlers}):

- C{m.typing}: accepted when the user belongs to the origin server and is
  joined to the room ("Receiving servers should verify that the user is in
  the room, and is a user belonging to the sending server"); the typing
  lasts C{typing_federation_timeout_s} unless the origin stops it.
- C{m.receipt}: C{m.read} receipts of the origin's users who are joined,
  for events we have in that room; other receipt types are ignored.
- C{m.presence} (C{allow_incoming_presence}): updates of the origin's
  users who are in at least one room with us.
- C{m.direct_to_device}, C{m.device_list_update},
  C{m.signing_key_update}: entries of the table that the end-to-end
  encryption code replaces (federation/e2ee.py); without it they are
  logged and dropped.

An EDU about a user of another server than the origin is ignored: only a
server speaks for its users. Typing and receipts from a server the room's
C{m.room.server_acl} denies are ignored ("ACLs MUST be applied to all EDUs
that are local to a specific room").

Outgoing: a local user's typing (ephemeral), public read receipts and, with
C{allow_outgoing_presence}, presence changes go to every other server with
joined members in the rooms concerned (L{FederationEdus.room_servers});
L{FederationEdus.event_persisted} queues our users' new events for those
servers in the event's own store transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from conduit_tw.federation.acl import is_server_allowed
from conduit_tw.federation.disabled_rooms import RoomDisabled, never_disabled
from conduit_tw.logging import get_logger

if TYPE_CHECKING:
    from conduit_tw.federation.sender import FederationSender
    from conduit_tw.handlers.presence import PresenceHandler
    from conduit_tw.handlers.receipts import ReceiptsHandler
    from conduit_tw.handlers.typing import TypingHandler
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.receipts import Receipt
    from conduit_tw.storage.stores.timeline import StoredEvent
    from conduit_tw.storage.txn import StoreTxn

log = get_logger("conduit_tw.federation.edu")

TYPING = "m.typing"
RECEIPT = "m.receipt"
PRESENCE = "m.presence"
DIRECT_TO_DEVICE = "m.direct_to_device"
DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"
#: The EDUs the end-to-end encryption code handles (hooks until then).
E2EE_EDUS = (DIRECT_TO_DEVICE, DEVICE_LIST_UPDATE, SIGNING_KEY_UPDATE)

_PRESENCE_STATES = ("online", "unavailable", "offline")


def server_of(user_id: str) -> str:
    """The server name part of a user ID (everything after the first colon)."""
    return user_id.partition(":")[2]


async def _unhandled(origin: str, content: dict[str, Any]) -> None:
    log.debug("Dropped an EDU from {origin}: no handler yet", origin=origin)


class FederationEdus:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        sender: "FederationSender",
        events: "EventStore",
        typing: "TypingHandler",
        receipts: "ReceiptsHandler",
        presence: "PresenceHandler",
        rooms_of: Callable[[str], Awaitable[Iterable[str]]],
        *,
        typing_timeout_s: float = 30,
        incoming_presence: bool = True,
        outgoing_presence: bool = True,
        incoming_typing: bool = True,
        outgoing_typing: bool = True,
        incoming_receipts: bool = True,
        outgoing_receipts: bool = True,
    ) -> None:
        self.server_name = server_name
        self.sender = sender
        self.events = events
        self.typing = typing
        self.receipts = receipts
        self.presence = presence
        #: C{user_id -> Awaitable[room IDs]}: the user's joined rooms.
        self.rooms_of = rooms_of
        self.typing_timeout_ms = int(typing_timeout_s * 1000)
        self.incoming_presence = incoming_presence
        self.outgoing_presence = outgoing_presence
        #: C{allow_incoming_/outgoing_typing} and C{_read_receipts}.
        self.incoming_typing = incoming_typing
        self.outgoing_typing = outgoing_typing
        self.incoming_receipts = incoming_receipts
        self.outgoing_receipts = outgoing_receipts
        #: Rooms whose incoming federation is disabled: their EDUs are ignored.
        self.room_disabled: RoomDisabled = never_disabled

    def register(self, edu_handlers: dict[str, Callable[[str, dict[str, Any]], Awaitable[None]]]) -> None:
        """Fill an EDU dispatch table (C{TransactionHandler.edu_handlers})."""
        edu_handlers[TYPING] = self.on_typing
        edu_handlers[RECEIPT] = self.on_receipt
        edu_handlers[PRESENCE] = self.on_presence
        for name in E2EE_EDUS:
            edu_handlers.setdefault(name, _unhandled)

    # -- helpers

    async def room_servers(self, room_id: str) -> set[str]:
        """The other servers with joined members in the room."""
        servers = {server_of(u) for u in await self.events.members(room_id, "join")}
        servers.discard(self.server_name)
        return servers

    async def _is_joined(self, user_id: str, room_id: str) -> bool:
        return await self.events.membership(user_id, room_id) == "join"

    async def acl_allows(self, origin: str, room_id: str) -> bool:
        """Whether the room's server ACL lets C{origin} in (server-server-api "Server ACLs")."""
        acl = await self.events.current_state_event(room_id, "m.room.server_acl", "")
        content = acl.content if acl is not None and isinstance(acl.content, dict) else None
        return is_server_allowed(origin, content)

    async def _accepts(self, origin: str, room_id: str) -> bool:
        """Whether an EDU of C{origin} about the room is handled (not disabled, ACL)."""
        return not await self.room_disabled(room_id) and await self.acl_allows(origin, room_id)

    def _speaks_for(self, origin: str, user_id: Any) -> bool:
        if isinstance(user_id, str) and server_of(user_id) == origin:
            return True
        log.info("Ignored an EDU from {origin} about {user!r}", origin=origin, user=user_id)
        return False

    # -- inbound

    async def on_typing(self, origin: str, content: dict[str, Any]) -> None:
        """An C{m.typing} EDU (C{allow_incoming_typing})."""
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not self.incoming_typing or not isinstance(room_id, str) or not isinstance(typing, bool):
            return
        if not self._speaks_for(origin, user_id) or not await self._is_joined(user_id, room_id):
            return
        if not await self._accepts(origin, room_id):
            return
        self.typing.set_typing(room_id, user_id, typing, self.typing_timeout_ms)

    async def on_receipt(self, origin: str, content: dict[str, Any]) -> None:
        """
        An C{m.receipt} EDU (only C{m.read} receipts are known;
        C{allow_incoming_read_receipts}).
        """
        if not self.incoming_receipts:
            return
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict) or not isinstance(by_type.get("m.read"), dict):
                continue
            room = await self.events.get_room(room_id)
            if room is None or not await self._accepts(origin, room_id):
                continue
            for user_id, receipt in by_type["m.read"].items():
                if not isinstance(receipt, dict) or not self._speaks_for(origin, user_id):
                    continue
                event_ids, data = receipt.get("event_ids"), receipt.get("data")
                if not isinstance(event_ids, list) or not event_ids or not isinstance(event_ids[0], str):
                    continue
                if not isinstance(data, dict):
                    continue
                thread_id, ts = data.get("thread_id"), data.get("ts")
                if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
                    continue
                if isinstance(ts, bool) or not isinstance(ts, int):
                    ts = None
                if not await self._is_joined(user_id, room_id):
                    continue
                event = await self.events.get_event(event_ids[0])
                if event is None or event.shortroomid != room.short or not event.in_timeline:
                    continue
                await self.receipts.put_receipt(user_id, room, "m.read", event, thread_id, ts)

    async def on_presence(self, origin: str, content: dict[str, Any]) -> None:
        """An C{m.presence} EDU (C{allow_incoming_presence})."""
        push = content.get("push")
        if not self.incoming_presence or not isinstance(push, list):
            return
        for update in push:
            if not isinstance(update, dict) or not self._speaks_for(origin, update.get("user_id")):
                continue
            user_id, state = update["user_id"], update.get("presence")
            ago = update.get("last_active_ago", 0)
            status_msg = update.get("status_msg")
            if state not in _PRESENCE_STATES or isinstance(ago, bool) or not isinstance(ago, int):
                continue
            if status_msg is not None and not isinstance(status_msg, str):
                status_msg = None
            if not await self.rooms_of(user_id):
                continue  # no room with us: nobody here may see it
            await self.presence.set_remote(user_id, state, status_msg, max(0, ago))

    # -- outgoing

    async def local_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """C{TypingHandler.on_local_typing}: tell the room's other servers."""
        if not self.outgoing_typing:
            return
        servers = await self.room_servers(room_id)
        if servers:
            content = {"room_id": room_id, "user_id": user_id, "typing": typing}
            await self.sender.send_edu(servers, TYPING, content, persist=False)

    async def local_receipt(self, room_id: str, receipt: "Receipt") -> None:
        """C{ReceiptsHandler.on_receipt}: send our users' public read receipts."""
        if not self.outgoing_receipts:
            return
        if receipt.receipt_type != "m.read" or server_of(receipt.user_id) != self.server_name:
            return
        servers = await self.room_servers(room_id)
        if not servers:
            return
        data: dict[str, Any] = {"ts": receipt.ts}
        if receipt.thread_id is not None:
            data["thread_id"] = receipt.thread_id
        content = {room_id: {"m.read": {receipt.user_id: {"event_ids": [receipt.event_id], "data": data}}}}
        await self.sender.send_edu(servers, RECEIPT, content)

    async def local_presence(self, user_id: str, content: dict[str, Any]) -> None:
        """C{PresenceHandler.on_local_change} (C{allow_outgoing_presence})."""
        if not self.outgoing_presence or server_of(user_id) != self.server_name:
            return
        servers: set[str] = set()
        for room_id in await self.rooms_of(user_id):
            servers |= await self.room_servers(room_id)
        if not servers:
            return
        update = {"user_id": user_id, "last_active_ago": 0, **content}
        update.setdefault("currently_active", False)
        await self.sender.send_edu(servers, PRESENCE, {"push": [update]})

    async def event_persisted(self, txn: "StoreTxn", event: "StoredEvent") -> None:
        """
        C{EventStore.persist_hooks}: queue a new event of one of our users
        for the room's other servers (and, for a membership event, the
        target's server), atomically with the event.
        """
        if server_of(event.sender) != self.server_name:
            return
        servers = await self.room_servers(event.room_id_or_create())
        if event.type == "m.room.member" and event.state_key:
            servers.add(server_of(event.state_key))
        targets = self.sender.queue_pdu(txn, servers, event.event_id)
        if targets:
            txn.after_commit(lambda: self.sender.kick(targets))
