"""
Push rule evaluation for every new event and local member, unread
notification counts, C{GET /notifications} and delivery to pushers
(modules/push.md "Receiving notifications", "Server behaviour";
threading.md "Unread thread notifications"; notifications.yaml).

When a live event is persisted (C{EventStore.persist_hooks}, run just
before its batch is written), L{NotificationsHandler} evaluates it for
each local joined member but the sender (and for a local invitee), with
the room's context computed once per event (member count, sender power
level, notification levels) and the prepared event shared (push_rules.py
memoises identical conditions). The notifications and the sender's
implicit read marker go into the event's own batch: one commit per event
(a second commit would double the fsyncs of the send path), counts never
lost or half-written on a crash, and "the updated notification count
from a new event MUST appear in the same /sync response as the event
itself" holds by construction. Pushers are called L{PUSH_DELAY_S} after
the commit, so they never delay the send or the /sync responses it woke.

Counts (L{room_counts}): the notifications after the user's unthreaded
read-up-to order (one range scan of C{usernotif}), each checked against
its thread's threaded receipts; cached per (user, room), counted on when
a notification is added (a new event is never read yet: no scan for each
member woken by it) and dropped when the user's receipts move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.push_rules import PushContext, evaluate, prepare_event
from conduit_tw.handlers.receipts import thread_of
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.notifications import NotificationStore
from conduit_tw.storage.stores.timeline import StoredEvent
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache, scaled

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from conduit_tw.handlers.account_data import AccountDataHandler, PushRulesHandler
    from conduit_tw.handlers.pusher import PusherHandler
    from conduit_tw.handlers.receipts import ReceiptsHandler
    from conduit_tw.handlers.serialize import EventSerializer
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.notifications")

_PL = ("m.room.power_levels", "")
#: Pushers run this long after the commit: after the reactor has flushed the
#: /sync responses the event woke (a gateway round trip dwarfs it anyway).
PUSH_DELAY_S = 0.02


@dataclass
class Counts:
    """Unread notification counts of one user in one room."""

    notifications: int = 0
    highlights: int = 0
    main_notifications: int = 0
    main_highlights: int = 0
    #: thread root -> [notifications, highlights]
    threads: dict[str, list[int]] = field(default_factory=dict)
    #: The highest notification order counted (0: none).
    upto: int = 0

    def add(self, order: int, highlight: bool, thread: str | None) -> None:
        """Count one more unread notification."""
        self.upto = max(self.upto, order)
        self.notifications += 1
        self.highlights += highlight
        if thread is None:
            self.main_notifications += 1
            self.main_highlights += highlight
        else:
            per = self.threads.setdefault(thread, [0, 0])
            per[0] += 1
            per[1] += highlight

    def unread_notifications(self, threaded: bool) -> dict[str, int]:
        if threaded:
            return {"notification_count": self.main_notifications,
                    "highlight_count": self.main_highlights}
        return {"notification_count": self.notifications, "highlight_count": self.highlights}

    def unread_thread_notifications(self) -> dict[str, dict[str, int]]:
        return {
            root: {"notification_count": n, "highlight_count": h}
            for root, (n, h) in self.threads.items()
        }


class NotificationsHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: NotificationStore,
        events: "EventStore",
        is_local: Callable[[str], bool],
        push_rules: "PushRulesHandler",
        account_data: "AccountDataHandler",
        receipts: "ReceiptsHandler",
        pushers: "PusherHandler",
        serializer: "EventSerializer",
        reactor: "IReactorTime",
        cache_modifier: float = 1.0,
    ) -> None:
        """
        HomeServer registers L{event_persisted} on C{EventStore.persist_hooks}
        and L{invalidate} on C{ReceiptsHandler.on_read_changed}.
        """
        self.store = store
        self.events = events
        #: Whether a user ID is of this server.
        self.is_local = is_local
        self.push_rules = push_rules
        self.account_data = account_data
        self.receipts = receipts
        self.pushers = pushers
        self.serializer = serializer
        self.reactor = reactor
        self._counts: LruCache[tuple[str, int], Counts] = LruCache(
            scaled(100_000, cache_modifier)
        )
        #: user -> (ruleset object, whether it needs the display name)
        self._needs_name: dict[str, tuple[Any, bool]] = {}
        self._push_calls: set[Any] = set()
        #: Push dispatches started and not finished (awaited by L{stop}).
        self._pushing: set[Deferred[None]] = set()

    # -- the persist hook

    async def event_persisted(self, txn: StoreTxn, event: StoredEvent) -> None:
        """
        C{EventStore.persist_hooks}: evaluate a new live event for the
        room's local members and add the notifications (and the sender's
        read marker) to the event's own batch.
        """
        room_id = event.room_id_or_create()
        sender = event.sender
        local_sender = self.is_local(sender)
        room = await self.events.get_room(room_id)
        if room is None:
            return
        members = await self.events.members(room_id, "join")
        recipients = [u for u in members if u != sender and self.is_local(u)]
        if event.type == "m.room.member" and event.state_key and event.membership() == "invite":
            target = event.state_key
            if target != sender and self.is_local(target) and target not in recipients:
                recipients.append(target)
        if not recipients and not local_sender:
            return
        thread = await thread_of(self.events, event)
        notified: list[tuple[str, Any]] = []
        if recipients:
            head = await self.events.head(room, txn)
            pl = await self.events.state_event(event.state_before, *_PL, txn=txn)
            pl_content = pl.content if pl is not None else {}
            sender_level = _user_level(pl_content, sender, event)
            notif_levels = pl_content.get("notifications")
            if not isinstance(notif_levels, dict):
                notif_levels = {}
            pe = prepare_event(event.pdu)
            for user in recipients:
                rules = await self.push_rules.compiled(user)
                name = None
                if self._rules_need_name(user, rules):
                    name = await self._display_name(event, user)
                result = evaluate(
                    rules, pe,
                    PushContext(user, name, head.joined, sender_level, notif_levels),
                )
                if result is None or not result.notify:
                    continue
                if sender in await self.account_data.ignored_users(user):
                    continue
                self.store.add(
                    txn, user, room.short, event.short, event.order, event.position or 0,
                    result.highlight, thread, result.actions,
                )
                notified.append((user, result))
        if local_sender and event.position:
            await self.receipts.sent_event(txn, sender, event, thread)
        short = room.short

        order = event.order

        def committed() -> None:
            # The newest event of the room cannot be read yet: cached
            # counts take it, unless they were computed after its batch
            # was applied and so counted it already.
            for user, result in notified:
                counts = self._counts.get((user, short))
                if counts is not None and counts.upto < order:
                    counts.add(order, result.highlight, thread)
            if local_sender:
                self._counts.pop((sender, short))
            if notified:
                call = self.reactor.callLater(PUSH_DELAY_S, self._push, event, room_id, notified)
                self._push_calls.add(call)

        txn.after_commit(committed)

    def _rules_need_name(self, user: str, rules: Any) -> bool:
        cached = self._needs_name.get(user)
        if cached is not None and cached[0] is rules:
            return cached[1]
        needs = any(not shared for rule in rules.rules for _, shared in rule.conditions)
        if len(self._needs_name) > 100_000:
            self._needs_name.clear()
        self._needs_name[user] = (rules, needs)
        return needs

    async def _display_name(self, event: StoredEvent, user: str) -> str | None:
        member = await self.events.state_event(event.state_before, "m.room.member", user)
        if member is None:
            return None
        name = member.content.get("displayname")
        return name if isinstance(name, str) else None

    async def stop(self) -> None:
        """
        Shutdown: cancel pushes not started yet and wait for the started
        ones to have handed their notifications to the pushers (which
        L{PusherHandler.stop} then stops).
        """
        for call in self._push_calls:
            if call.active():
                call.cancel()
        self._push_calls.clear()
        while self._pushing:
            await DeferredList(list(self._pushing))

    def _push(self, event: StoredEvent, room_id: str, notified: list[tuple[str, Any]]) -> None:
        self._push_calls = {c for c in self._push_calls if c.active()}
        d = Deferred.fromCoroutine(self._push_all(event, room_id, notified))
        d.addErrback(lambda f: log.failure("Dispatching pushes failed", f))
        self._pushing.add(d)
        d.addBoth(lambda r: (self._pushing.discard(d), r)[1])

    async def _push_all(self, event: StoredEvent, room_id: str, notified: list[tuple[str, Any]]) -> None:
        client_event = None
        for user, result in notified:
            if not await self.pushers.has_pushers(user):
                continue
            if client_event is None:
                client_event = await self.serializer.serialize_event(event)
            unread = await self.total_unread(user)
            self.pushers.dispatch(user, client_event, result, {"unread": unread})

    # -- counts

    def invalidate(self, user_id: str, shortroomid: int) -> None:
        """Forget cached counts (receipts moved)."""
        self._counts.pop((user_id, shortroomid))

    async def room_counts(self, user_id: str, shortroomid: int) -> Counts:
        """The user's unread notification counts in a room."""
        key = (user_id, shortroomid)
        cached = self._counts.get(key)
        if cached is not None:
            return cached
        read = await self.receipts.read_up_to(user_id, shortroomid)
        counts = Counts()
        for order, highlight, thread in await self.store.room_after(
            user_id, shortroomid, read.unthreaded
        ):
            if read.is_read(order, thread):
                counts.upto = max(counts.upto, order)
                continue
            counts.add(order, highlight, thread)
        self._counts.set(key, counts)
        return counts

    async def total_unread(self, user_id: str) -> int:
        """Unread notifications across the user's joined rooms (push badge)."""
        total = 0
        for rec in await self.events.rooms_for_user(user_id, ("join",)):
            room = await self.events.get_room(rec.room_id)
            if room is not None:
                total += (await self.room_counts(user_id, room.short)).notifications
        return total

    # -- GET /notifications

    async def list_notifications(
        self, user_id: str, from_token: str | None, limit: int | None, only: str | None
    ) -> dict[str, Any]:
        """The body of C{GET /notifications}."""
        before = None
        if from_token:
            if not from_token.isdigit():
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid 'from' token")
            before = int(from_token)
        if limit is None:
            limit = 50
        limit = max(1, min(limit, 1000))
        highlight_only = only == "highlight"
        out: list[dict[str, Any]] = []
        last: int | None = None
        reads: dict[int, Any] = {}
        while len(out) < limit:
            page_size = 100 if highlight_only else limit - len(out)
            page = await self.store.list(user_id, before, page_size)
            timeline = self.events.timeline
            at = await timeline.shorts_at(
                (n.shortroomid, n.order) for n in page if n.shorteventid is None
            )
            found = iter(at)
            shorts = [n.shorteventid if n.shorteventid is not None else next(found) for n in page]
            events = await timeline.get_many(s for s in shorts if s is not None)
            events_by_short = {e.short: e for e in events if e is not None}
            events = [events_by_short.get(s) if s is not None else None for s in shorts]
            for n, ev in zip(page, events):
                before = n.position
                if ev is None or (highlight_only and not n.highlight):
                    continue
                read = reads.get(n.shortroomid)
                if read is None:
                    read = reads[n.shortroomid] = await self.receipts.read_up_to(
                        user_id, n.shortroomid
                    )
                thread = await thread_of(self.events, ev)
                out.append({
                    "actions": n.actions,
                    "event": await self.serializer.serialize_event(ev, user_id),
                    "profile_tag": None,
                    "read": read.is_read(ev.order, thread),
                    "room_id": ev.room_id_or_create(),
                    "ts": ev.pdu.get("origin_server_ts", 0),
                })
                last = n.position
                if len(out) >= limit:
                    break
            if len(page) < page_size:
                break
        body: dict[str, Any] = {"notifications": out}
        if last is not None and len(out) >= limit:
            body["next_token"] = str(last)
        return body


def _user_level(pl: dict[str, Any], user: str, event: StoredEvent) -> int:
    users = pl.get("users")
    if isinstance(users, dict) and user in users:
        value = users[user]
    elif pl:
        value = pl.get("users_default", 0)
    else:
        # No power levels: the creator has 100 (auth rules), others 0.
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
