"""
Pushing to application services (application-service-api "Pushing
events"; MSC2409 ephemeral events and to-device messages, under their
stable and unstable names).

- **Interest.** A room event goes to every appservice interested in its
  room (a joined member, or the target of a membership event, in one of
  its user namespaces, its sender; the room ID in its room namespaces; a
  local alias of the room in its alias namespaces) or whose user
  namespace holds the event's sender. It is queued in the event's own
  store transaction (L{AppserviceSender.event_persisted}, an
  C{EventStore.persist_hooks} entry), so a crash never loses it.
- **Ephemeral data** (typing, receipts, presence) and to-device messages
  go only to registrations with C{receive_ephemeral}: typing and receipts
  of interesting rooms, presence of namespace users, to-device messages
  for namespace users.
- **Transactions.** One per appservice in flight, at most 100 events and
  100 ephemeral items, from the head of its persisted queue; items leave
  the queue only after a 2xx. A failed transaction is retried unchanged
  (same C{txnId}: the appservice de-duplicates) with exponential backoff
  (2 s doubling, capped at C{backoff_limit_s}); a restart resends the
  queue (C{start}).
- **Delivery** is a call of C{deliver(registration, txn_id, body)}: an
  HTTP C{PUT} for ordinary appservices, a method call for in-process
  bridges (L{conduit_tw.appservice.bridge}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from twisted.internet.interfaces import IReactorTime

from conduit_tw.appservice.registration import Registration
from conduit_tw.logging import get_logger
from conduit_tw.util.transaction_queue import QueueState, Transaction, TransactionQueues

if TYPE_CHECKING:
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.aliases import AliasStore
    from conduit_tw.storage.stores.appservices import AppserviceStore
    from conduit_tw.storage.stores.receipts import Receipt
    from conduit_tw.storage.stores.timeline import StoredEvent
    from conduit_tw.storage.txn import StoreTxn

log = get_logger("conduit_tw.appservice.sender")

#: Most items (events, ephemeral events, to-device messages) in one transaction.
MAX_ITEMS = 100
INITIAL_BACKOFF_S = 2.0

Deliver = Callable[[Registration, str, dict[str, Any]], Awaitable[None]]
Serialize = Callable[[list[str]], Awaitable[list[dict[str, Any]]]]


class AppserviceSender(TransactionQueues[QueueState]):
    """See the module docstring."""

    initial_backoff_s = INITIAL_BACKOFF_S
    what = "appservice"

    def __init__(
        self,
        store: "AppserviceStore",
        events: "EventStore",
        aliases: "AliasStore",
        registrations: Callable[[], list[Registration]],
        deliver: Deliver,
        serialize: Serialize,
        reactor: IReactorTime,
        *,
        backoff_limit_s: float = 3600,
    ) -> None:
        super().__init__(reactor, backoff_limit_s, log)
        self.store = store
        self.events = events
        self.aliases = aliases
        #: The active registrations (the registry's C{list}).
        self.registrations = registrations
        self.deliver = deliver
        self.serialize = serialize
        #: IDs of in-process bridges (they need no URL), set by the bridge loader.
        self.local_ids: set[str] = set()

    # -- lifecycle

    async def start(self) -> None:
        """Resend what is queued."""
        for appservice_id in await self.store.load_queues():
            self._kick(appservice_id)

    def _new_state(self) -> QueueState:
        return QueueState()

    def forget(self, reg: Registration) -> None:
        """The registry's C{on_unregistered}: drop the appservice's state."""
        state = self._states.pop(reg.id, None)
        if state is not None and state.retry is not None and state.retry.active():
            state.retry.cancel()

    # -- interest

    def _pushed(self) -> list[Registration]:
        """The registrations that receive anything (a URL, or an in-process bridge)."""
        return [r for r in self.registrations() if r.url is not None or r.id in self.local_ids]

    async def interested(self, event: "StoredEvent") -> list[str]:
        """The appservices an event goes to (see the module docstring)."""
        regs = self._pushed()
        if not regs:
            return []
        room_id = event.room_id_or_create()
        users = {event.sender}
        if event.type == "m.room.member" and event.state_key:
            users.add(event.state_key)
        members: list[str] | None = None
        aliases: list[str] | None = None
        out = []
        for reg in regs:
            if any(reg.is_user_in_namespace(u) for u in users) or reg.is_room_in_namespace(room_id):
                out.append(reg.id)
                continue
            if reg.users:
                if members is None:
                    members = await self.events.members(room_id, "join")
                if any(reg.is_user_in_namespace(u) for u in members):
                    out.append(reg.id)
                    continue
            if reg.aliases:
                if aliases is None:
                    aliases = await self.aliases.aliases_for_room(room_id)
                if any(reg.is_alias_in_namespace(a) for a in aliases):
                    out.append(reg.id)
        return out

    async def _room_interested(self, room_id: str) -> list[Registration]:
        """The C{receive_ephemeral} appservices interested in a room."""
        regs = [r for r in self._pushed() if r.receive_ephemeral]
        if not regs:
            return []
        members = await self.events.members(room_id, "join")
        aliases = await self.aliases.aliases_for_room(room_id)
        return [
            r for r in regs
            if r.is_room_in_namespace(room_id)
            or any(r.is_user_in_namespace(u) for u in members)
            or any(r.is_alias_in_namespace(a) for a in aliases)
        ]

    # -- queueing

    async def event_persisted(self, txn: "StoreTxn", event: "StoredEvent") -> None:
        """C{EventStore.persist_hooks}: queue the event atomically with it."""
        targets = await self.interested(event)
        if targets:
            self.store.queue_event(txn, targets, event.event_id)
            txn.after_commit(lambda: self.kick(targets))

    async def _queue(self, items: list[tuple[str, str, Any]]) -> None:
        if not items or self._stopped:
            return
        await self.store.enqueue(items)
        self.kick(sorted({i[0] for i in items}))

    async def typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """C{TypingHandler.on_local_typing}: the room's C{m.typing} for interested appservices."""
        regs = await self._room_interested(room_id)
        if not regs:
            return
        edu = {"type": "m.typing", "room_id": room_id, "content": {"user_ids": [user_id] if typing else []}}
        await self._queue([(r.id, "ephemeral", edu) for r in regs])

    async def receipt(self, room_id: str, receipt: "Receipt") -> None:
        """C{ReceiptsHandler.on_receipt}: public receipts of interesting rooms."""
        if receipt.receipt_type == "m.read.private":
            return
        regs = await self._room_interested(room_id)
        if not regs:
            return
        data: dict[str, Any] = {"ts": receipt.ts}
        if receipt.thread_id is not None:
            data["thread_id"] = receipt.thread_id
        edu = {
            "type": "m.receipt",
            "room_id": room_id,
            "content": {receipt.event_id: {receipt.receipt_type: {receipt.user_id: data}}},
        }
        await self._queue([(r.id, "ephemeral", edu) for r in regs])

    async def presence(self, user_id: str, content: dict[str, Any]) -> None:
        """C{PresenceHandler.on_local_change}: presence of namespace users."""
        regs = [r for r in self._pushed() if r.receive_ephemeral and r.is_user_in_namespace(user_id)]
        edu = {"type": "m.presence", "sender": user_id, "content": {**content}}
        await self._queue([(r.id, "ephemeral", edu) for r in regs])

    async def to_device(self, sender: str, event_type: str, delivered: list[tuple[str, str, Any]]) -> None:
        """C{ToDeviceHandler.on_local_delivered}: messages for namespace users' devices."""
        regs = [r for r in self._pushed() if r.receive_ephemeral]
        items = []
        for user_id, device_id, content in delivered:
            for reg in regs:
                if reg.is_user_in_namespace(user_id):
                    message = {
                        "type": event_type, "sender": sender, "content": content,
                        "to_user_id": user_id, "to_device_id": device_id,
                    }
                    items.append((reg.id, "to_device", message))
        await self._queue(items)

    # -- sending

    def kick(self, appservice_ids: Iterable[str]) -> None:
        """Send what is queued for these appservices (unless backing off)."""
        for appservice_id in appservice_ids:
            self._kick(appservice_id)

    def _registration(self, appservice_id: str) -> Registration | None:
        for reg in self.registrations():
            if reg.id == appservice_id:
                return reg
        return None

    async def _run(self, appservice_id: str, state: QueueState) -> None:
        while not self._stopped:
            reg = self._registration(appservice_id)
            if reg is None:
                return  # unregistered (its queue went with it)
            state.dirty = False
            txn = state.pending or await self._next_transaction(appservice_id, state)
            if txn is None:
                if state.dirty:
                    continue
                return
            state.pending = txn
            try:
                await self.deliver(reg, txn.txn_id, txn.body)
            except Exception as e:
                if not self._stopped:
                    self._failed(appservice_id, state, e)
                return
            if self._stopped:
                return
            state.pending = None
            state.backoff_s = 0.0
            await self.store.remove(appservice_id, txn.keys)

    async def _next_transaction(self, appservice_id: str, state: QueueState) -> Transaction | None:
        pending = await self.store.pending(appservice_id)
        if pending is not None:
            # Handed out before a restart: the same ID for the same items.
            items = await self.store.head(appservice_id, MAX_ITEMS, up_to=pending[1])
        else:
            items = await self.store.head(appservice_id, MAX_ITEMS)
        event_ids = [i.event_id for i in items if i.event_id is not None]
        events = await self.serialize(event_ids) if event_ids else []
        ephemeral = [i.ephemeral for i in items if i.ephemeral is not None]
        to_device = [i.to_device for i in items if i.to_device is not None]
        keys = [i.key for i in items]
        if not (events or ephemeral or to_device):
            if keys or pending is not None:  # only vanished events
                await self.store.remove(appservice_id, keys)
                state.dirty = True
            return None
        body: dict[str, Any] = {"events": events}
        if ephemeral:
            body["ephemeral"] = ephemeral
            body["de.sorunome.msc2409.ephemeral"] = ephemeral
        if to_device:
            body["to_device"] = to_device
            body["de.sorunome.msc2409.to_device"] = to_device
        if pending is not None:
            txn_id = pending[0]
        else:
            txn_id = await self.store.start_transaction(appservice_id, keys[-1])
        return Transaction(str(txn_id), body, keys)
