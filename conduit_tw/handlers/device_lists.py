"""
Device list tracking (client-server-api "Tracking the device list for a
user", "Extensions to /sync"): which users' device lists a viewer must
re-query, for C{device_lists.changed/left} in /sync and for
C{/keys/changes}.

Two sources (storage/stores/device_lists.py):

- key changes of a user (a device with keys added or removed, device or
  cross-signing keys uploaded, own signatures added): one entry per user,
  shown to every viewer who shares a room with them now (and to the user
  themselves, so their other devices learn about a new one);
- membership: when a user starts sharing a room with another (joins a
  room the other is in), each gets a "changed" entry for the other (the
  spec's note allows this even when they already shared a room); when a
  leave or ban leaves two users with no room in common, each gets a
  "left" entry. These are written by L{DeviceListTracker.event_persisted}
  in the batch of the membership event, at its stream position. The spec
  speaks of encrypted rooms; this server counts every room (simpler, and
  a superset: clients only act on users they track).

Only joined members count ("share a room": both users have membership
C{join}, keys.yaml C{/keys/changes}).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

from conduit_tw.notifier import Notifier
from conduit_tw.storage.stores.device_lists import CHANGED, LEFT, DeviceListStore
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.hooks import run_hooks

JoinedRooms = Callable[[str], Awaitable[Iterable[str]]]


class DeviceListTracker:
    """See the module docstring."""

    def __init__(
        self,
        store: DeviceListStore,
        globals_store: GlobalsStore,
        notifier: Notifier,
        joined_rooms: JoinedRooms,
        members: Callable[[str], Awaitable[list[str]]],
        membership: Callable[[str, str], Awaitable[str | None]],
        is_local: Callable[[str], bool],
        joined_at: Callable[[int, StoreTxn], Awaitable[list[str]]],
    ) -> None:
        self.store = store
        self.globals = globals_store
        self.notifier = notifier
        self.joined_rooms = joined_rooms
        self.members = members
        self.membership = membership
        self.is_local = is_local
        #: C{EventStore.joined_at}: the joined members of a state, inside a batch.
        self.joined_at = joined_at
        #: C{user_id -> None}, run after every L{key_changed} (federation:
        #: device list updates to other servers).
        self.on_key_changed: list[Callable[[str], Any]] = []

    async def shares_room(self, viewer: str, user_id: str) -> bool:
        """Whether both users are joined to a common room now."""
        if viewer == user_id:
            return True
        mine = set(await self.joined_rooms(viewer))
        return bool(mine) and not mine.isdisjoint(await self.joined_rooms(user_id))

    async def key_changed(self, user_id: str) -> None:
        """Announce that C{user_id}'s devices or keys changed (wakes their rooms' syncs)."""
        async with self.globals.stream_position() as position:
            await self.store.put_key_change(user_id, position)
        rooms = list(await self.joined_rooms(user_id))
        self.notifier.notify(position, users=[user_id], rooms=rooms)
        await run_hooks(self.on_key_changed, user_id, what="on_key_changed")

    async def signatures_changed(self, signer: str, targets: Iterable[str]) -> None:
        """
        C{signer} signed other users' keys: only the signer sees those
        signatures, so only the signer's device lists show the change.
        """
        async with self.globals.stream_position() as position:
            await self.store.add_viewer_changes(position, [(signer, CHANGED, t) for t in targets])
        self.notifier.notify(position, users=[signer])

    async def event_persisted(self, txn: StoreTxn, event: Any) -> None:
        """
        C{EventStore.persist_hooks}: a membership event that starts or
        stops a user's join adds the "changed"/"left" entries it causes
        (see the module docstring) to the event's own batch.
        """
        if event.type != "m.room.member" or not isinstance(event.state_key, str):
            return
        position = event.position
        if not position:
            return
        target = event.state_key
        room_id = event.room_id_or_create()
        joined = event.membership() == "join"
        # Read before the batch is applied: the membership before this event.
        if (await self.membership(target, room_id) == "join") == joined:
            return
        members = await self.members(room_id)
        if joined and not any(self.is_local(m) for m in members):
            # Our server's first member (a remote join): the other members
            # came with the room's state in this very batch.
            members = await self.joined_at(event.state_after, txn)
        others = [m for m in members if m != target]
        entries = []
        if joined:
            pairs = others
            kind = CHANGED
        else:
            remaining = set(await self.joined_rooms(target)) - {room_id}
            pairs = [m for m in others if remaining.isdisjoint(await self.joined_rooms(m))]
            kind = LEFT
        for other in pairs:
            if self.is_local(target):
                entries.append((target, kind, other))
            if self.is_local(other):
                entries.append((other, kind, target))
        if entries:
            self.store.put_viewer_changes(txn, position, entries)

    async def changes(self, viewer: str, since: int, to: int) -> tuple[set[str], set[str]]:
        """The C{(changed, left)} users for C{viewer} in C{(since, to]}."""
        changed: set[str] = set()
        left: set[str] = set()
        for user_id in await self.store.key_changes(since, to):
            if await self.shares_room(viewer, user_id):
                changed.add(user_id)
        for _, kind, other in await self.store.viewer_changes(viewer, since, to):
            if kind == CHANGED:
                changed.add(other)
                left.discard(other)
            else:
                left.add(other)
                changed.discard(other)
        # What holds now wins (they may have met again, or parted again).
        for other in list(left):
            if await self.shares_room(viewer, other):
                left.discard(other)
                changed.add(other)
        for other in list(changed):
            if not await self.shares_room(viewer, other):
                changed.discard(other)
        return changed, left
