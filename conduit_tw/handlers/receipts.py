"""
Receipts and read markers (modules/receipts.md, read_markers.md;
receipts.yaml, read_markers.yaml).

- C{POST /rooms/{roomId}/receipt/{type}/{eventId}} with C{m.read},
  C{m.read.private} (shown to nobody but its owner) and C{m.fully_read}
  (the same as C{/read_markers}), optionally threaded (C{thread_id}:
  C{main} or a thread root's event ID).
- C{POST /rooms/{roomId}/read_markers}: C{m.fully_read} is room account
  data (C{AccountDataHandler.put}); C{m.read}/C{m.read.private} are
  receipts.

Each receipt takes a global stream position and is indexed per room
(storage/stores/receipts.py), so /sync reads "receipts of room R since X"
with one range scan and L{ReceiptsHandler.room_changed_since} is a cached
integer comparison. A receipt that would move a user's marker backwards
(an older event than the current one of the same type and thread) is
accepted and ignored, as Synapse does: receipts are "up to" markers.

L{ReceiptsHandler.on_receipt} hooks (C{(room_id, receipt)}, run once a
receipt other than C{m.read.private} is stored, for local and remote
users alike) tell other servers (federation/edu.py sends our users' ones).

Read-up-to for notification counts (push.md "Marking notifications as
read"): an event in thread C{T} (C{main} for the main timeline) is read
when its order is at most the furthest of the user's unthreaded
C{m.read}/C{m.read.private} receipts, their threaded ones for C{T}, and
their own latest event in C{T} (L{ReceiptsHandler.sent_event}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.storage.stores.receipts import SENT, Receipt, ReceiptStore, receipt_content
from conduit_tw.storage.stores.timeline import StoredEvent
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.hooks import run_hooks
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.handlers.account_data import AccountDataHandler
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.notifier import Notifier
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.rooms import RoomInfo

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN = "main"
#: Relation hops followed to find an event's thread (threading.md recommends 3).
MAX_THREAD_HOPS = 3


@dataclass
class ReadUpTo:
    """How far a user has read in a room: unthreaded, and per thread."""

    unthreaded: int = 0
    threads: dict[str, int] = field(default_factory=dict)

    def is_read(self, order: int, thread: str | None) -> bool:
        """Whether the event of C{order} in C{thread} (None: main) is read."""
        if order <= self.unthreaded:
            return True
        return order <= self.threads.get(thread or MAIN, 0)


def _relation(content: Any) -> tuple[str | None, str | None]:
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(rel, dict):
        return None, None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    return (
        rel_type if isinstance(rel_type, str) else None,
        parent if isinstance(parent, str) else None,
    )


async def thread_of(events: "EventStore", event: StoredEvent) -> str | None:
    """
    The thread root ID of an event, or None for the main timeline
    (threading.md: an C{m.thread} relation, directly or through at most
    L{MAX_THREAD_HOPS} relations).
    """
    content: Any = event.pdu.get("content")
    for _ in range(MAX_THREAD_HOPS):
        rel_type, parent = _relation(content)
        if parent is None:
            return None
        if rel_type == "m.thread":
            return parent
        parent_event = await events.get_event(parent)
        if parent_event is None:
            return None
        content = parent_event.pdu.get("content")
    return None


class ReceiptsHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: ReceiptStore,
        events: "EventStore",
        visibility: "Visibility",
        account_data: "AccountDataHandler",
        notifier: "Notifier",
        clock_ms: Callable[[], int],
    ) -> None:
        self.store = store
        self.events = events
        self.visibility = visibility
        self.account_data = account_data
        self.notifier = notifier
        self.clock_ms = clock_ms
        #: Called with C{(user_id, shortroomid)} when a user's read-up-to may move.
        self.on_read_changed: list[Any] = []
        #: Hooks C{(room_id, receipt)} once a public receipt is stored.
        self.on_receipt: list[Any] = []
        #: One read-then-write at a time per user and room: the check
        #: "only forwards" and the replaced receipt read before the write
        #: must still hold when it commits, also when storage answers later.
        self._locks = Linearizer("receipts")

    # -- the client API

    async def client_receipt(
        self, user_id: str, room_id: str, receipt_type: str, event_id: str, body: Any
    ) -> None:
        """C{POST /rooms/{roomId}/receipt/{receiptType}/{eventId}}."""
        if receipt_type not in (READ, READ_PRIVATE, FULLY_READ):
            raise MatrixError(
                400, Codes.INVALID_PARAM, f"Receipt type {receipt_type!r} is not supported"
            )
        thread_id = None
        if isinstance(body, dict) and "thread_id" in body:
            thread_id = body["thread_id"]
            if not isinstance(thread_id, str) or not thread_id:
                raise MatrixError(
                    400, Codes.INVALID_PARAM, "thread_id field must be a non-empty string"
                )
            if receipt_type == FULLY_READ:
                raise MatrixError(
                    400, Codes.INVALID_PARAM, f"thread_id is not compatible with {receipt_type}"
                )
            if thread_id != MAIN and not thread_id.startswith("$"):
                raise MatrixError(
                    400, Codes.INVALID_PARAM, "thread_id must be 'main' or an event ID"
                )
        room, event = await self._check(user_id, room_id, event_id)
        if receipt_type == FULLY_READ:
            await self.set_fully_read(user_id, room, event)
            return
        if thread_id is not None:
            actual = await thread_of(self.events, event)
            # The thread root itself is in the main timeline but a client
            # reading the thread may acknowledge it in the thread as well.
            if (actual or MAIN) != thread_id and not (
                thread_id == event.event_id
            ):
                raise MatrixError(
                    400, Codes.INVALID_PARAM, f"{event_id} is not in thread {thread_id}"
                )
        await self.put_receipt(user_id, room, receipt_type, event, thread_id)

    async def read_markers(self, user_id: str, room_id: str, body: Any) -> None:
        """C{POST /rooms/{roomId}/read_markers}."""
        if not isinstance(body, dict):
            raise MatrixError(400, Codes.BAD_JSON, "Body must be a JSON object")
        wanted = {}
        for key in (FULLY_READ, READ, READ_PRIVATE):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value.startswith("$"):
                raise MatrixError(400, Codes.INVALID_PARAM, f"{key} must be an event ID")
            wanted[key] = value
        for key, event_id in wanted.items():
            room, event = await self._check(user_id, room_id, event_id)
            if key == FULLY_READ:
                await self.set_fully_read(user_id, room, event)
            else:
                await self.put_receipt(user_id, room, key, event, None)

    async def _check(self, user_id: str, room_id: str, event_id: str) -> tuple["RoomInfo", StoredEvent]:
        record = await self.events.membership_record(user_id, room_id)
        if record is None or record.membership != "join":
            raise forbidden("You are not joined to this room.")
        room = await self.events.get_room(room_id)
        event = await self.events.get_event(event_id)
        if room is None or event is None or event.shortroomid != room.short or not event.in_timeline:
            raise not_found("Event not found.")
        if not await self.visibility.can_see_event(user_id, event):
            raise not_found("Event not found.")
        return room, event

    # -- writing

    async def set_fully_read(self, user_id: str, room: "RoomInfo", event: StoredEvent) -> None:
        """Move the C{m.fully_read} marker (room account data) forwards only."""
        async with self._locks.queue((user_id, room.short, FULLY_READ)):
            current = await self.account_data.get(user_id, room.room_id, FULLY_READ)
            if current is not None:
                old = await self.events.get_event(str(current.get("event_id")))
                if old is not None and old.shortroomid == room.short and old.order >= event.order:
                    return
            await self.account_data.put(
                user_id, room.room_id, FULLY_READ, {"event_id": event.event_id}
            )

    async def put_receipt(
        self,
        user_id: str,
        room: "RoomInfo",
        receipt_type: str,
        event: StoredEvent,
        thread_id: str | None,
        ts: int | None = None,
    ) -> bool:
        """
        Store a receipt (ignored when it would move backwards); True if
        stored. C{ts}: when it was read (a remote server's), default now.
        """
        async with self._locks.queue((user_id, room.short)):
            existing = await self.store.user_receipts(user_id, room.short)
            old = next(
                (r for r in existing if r.receipt_type == receipt_type and r.thread_id == thread_id),
                None,
            )
            if old is not None and old.order >= event.order:
                return False
            ts = self.clock_ms() if ts is None else ts
            position = await self.store.add(
                room.short, user_id, receipt_type, event.event_id, thread_id, ts, event.order, old,
            )
        self._read_changed(user_id, room.short)
        if receipt_type == READ_PRIVATE:
            self.notifier.notify(position, users=[user_id])
        else:
            self.notifier.notify(position, users=[user_id], rooms=[room.room_id])
            receipt = Receipt(user_id, receipt_type, event.event_id, thread_id, ts, position)
            await run_hooks(self.on_receipt, room.room_id, receipt, what="on_receipt")
        return True

    async def sent_event(
        self, txn: StoreTxn, user_id: str, event: StoredEvent, thread: str | None
    ) -> None:
        """
        Record in C{txn} that a local user sent C{event} (in C{thread}):
        everything before it in that thread counts as read.
        """
        existing = await self.store.user_receipts(user_id, event.shortroomid)
        thread_key = thread or MAIN
        old = next(
            (r for r in existing if r.receipt_type == SENT and r.thread_id == thread_key), None
        )
        if old is not None and old.order >= event.order:
            return
        receipt = Receipt(user_id, SENT, event.event_id, thread_key, 0, event.position or 0)
        self.store.put(txn, event.shortroomid, receipt, event.order, old, public=False)

    def _read_changed(self, user_id: str, shortroomid: int) -> None:
        for hook in self.on_read_changed:
            hook(user_id, shortroomid)

    # -- reading

    async def read_up_to(self, user_id: str, shortroomid: int) -> ReadUpTo:
        """How far C{user_id} has read in a room (see the module docstring)."""
        out = ReadUpTo()
        for r in await self.store.user_receipts(user_id, shortroomid):
            if r.thread_id is None:
                if r.receipt_type in RECEIPT_TYPES and r.order > out.unthreaded:
                    out.unthreaded = r.order
            elif r.order > out.threads.get(r.thread_id, 0):
                out.threads[r.thread_id] = r.order
        return out

    async def room_changed_since(self, shortroomid: int, position: int) -> bool:
        """Whether the room has a receipt newer than C{position} (cached)."""
        return await self.store.room_last_position(shortroomid) > position

    async def receipt_event(
        self,
        viewer: str,
        shortroomid: int,
        since: int,
        to: int,
        ignored: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        """
        The room's C{m.receipt} event for C{viewer} with the receipts in
        C{(since, to]} (everything with C{since=0}), or None: others'
        C{m.read.private} receipts and receipts of ignored users are left
        out.
        """
        if await self.store.room_last_position(shortroomid) <= since:
            return None
        receipts = [
            r for r in await self.store.room_receipts(shortroomid, since, to)
            if (r.receipt_type != READ_PRIVATE or r.user_id == viewer)
            and r.user_id not in ignored
        ]
        if not receipts:
            return None
        return {"type": "m.receipt", "content": receipt_content(receipts)}
