"""
Membership indexes, derived from the *current* state of each room and
written in the same batch as the event that changes it.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF; C{code} is one byte:
C{j}oin, C{i}nvite, C{k}nock, C{l}eave, C{b}an)::

    userroomid_membership  user_id·room_id
        -> code + u64 stream position + u64 shorteventid + u64 last join order
    roommember             u64 shortroomid + code + user_id -> b""
    usermembershipchange   user_id·u64 stream position -> u64 shortroomid + code

- C{userroomid_membership}: every room a user is (or was, until they
  forget it) in, with the position of the change and the membership
  event; C{last join order} is the timeline order of the user's latest
  join (0 if never joined), which history visibility uses ("shared": did
  the user join after this event?).
- C{roommember}: members of a room by membership, so "joined members" is
  one prefix scan.
- C{usermembershipchange}: what changed for a user since stream position
  X (sync: newly joined, invited, left rooms) is one range scan.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, prefix_end, u64
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache, scaled

USER_ROOMS = "userroomid_membership"
ROOM_MEMBERS = "roommember"
CHANGES = "usermembershipchange"

CODES = {"join": b"j", "invite": b"i", "knock": b"k", "leave": b"l", "ban": b"b"}
NAMES = {v: k for k, v in CODES.items()}

_REC = struct.Struct(">cQQQ")
_CHANGE = struct.Struct(">Qc")


@dataclass(frozen=True)
class MembershipRecord:
    """A user's membership in one room, as the current state says."""

    room_id: str
    membership: str
    position: int
    shorteventid: int
    last_join_order: int

    def encode(self) -> bytes:
        return _REC.pack(
            CODES[self.membership], self.position, self.shorteventid, self.last_join_order
        )


def _user_room_key(user_id: str, room_id: str) -> bytes:
    return user_id.encode("utf-8") + SEP + room_id.encode("utf-8")


class MembershipStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase, cache_modifier: float = 1.0) -> None:
        self.db = db
        self.user_rooms = db.open_tree(USER_ROOMS)
        self.room_members = db.open_tree(ROOM_MEMBERS)
        self.changes = db.open_tree(CHANGES)
        self._cache: LruCache[tuple[str, str], MembershipRecord | None] = LruCache(
            scaled(100_000, cache_modifier)
        )
        #: (shortroomid, membership code) -> user IDs: every event sent
        #: asks for the joined members (push rules, federation targets).
        #: Dropped when put() changes one and again once that is applied.
        self._members: LruCache[tuple[int, bytes], list[str]] = LruCache(
            scaled(10_000, cache_modifier)
        )

    async def get(self, user_id: str, room_id: str) -> MembershipRecord | None:
        """The user's current membership record in the room, if any."""
        key = (user_id, room_id)
        if key in self._cache:
            return self._cache.get(key)
        raw = await self.user_rooms.get(_user_room_key(user_id, room_id))
        rec = None
        if raw is not None:
            code, pos, short, last_join = _REC.unpack(raw)
            rec = MembershipRecord(room_id, NAMES[code], pos, short, last_join)
        self._cache.set(key, rec)
        return rec

    async def get_membership(self, user_id: str, room_id: str) -> str | None:
        """C{"join"}, C{"invite"} ... or None."""
        rec = await self.get(user_id, room_id)
        return rec.membership if rec else None

    async def rooms_for_user(
        self, user_id: str, memberships: tuple[str, ...] | None = ("join",)
    ) -> list[MembershipRecord]:
        """The user's rooms with one of C{memberships} (None: all), by room ID."""
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.user_rooms.scan_prefix(prefix)
        out = []
        for k, v in rows:
            code, pos, short, last_join = _REC.unpack(v)
            name = NAMES[code]
            if memberships is None or name in memberships:
                out.append(MembershipRecord(k[len(prefix):].decode("utf-8"), name, pos, short, last_join))
        return out

    async def members(self, shortroomid: int, membership: str = "join") -> list[str]:
        """User IDs with C{membership} in the room, sorted."""
        code = CODES[membership]
        cached = self._members.get((shortroomid, code))
        if cached is not None:
            return list(cached)
        prefix = u64(shortroomid) + code
        rows = await self.room_members.scan_prefix(prefix)
        users = [k[len(prefix):].decode("utf-8") for k, _ in rows]
        self._members.set((shortroomid, code), users)
        return list(users)

    async def changes_since(
        self, user_id: str, position: int, limit: int | None = None
    ) -> list[tuple[int, int, str]]:
        """
        Membership changes of the user after stream C{position}, oldest
        first, as C{(position, shortroomid, membership)}.
        """
        prefix = user_id.encode("utf-8") + SEP
        start = prefix + u64(position + 1)
        end = prefix_end(prefix)
        rows = await self.changes.iter_range(start, end, limit=limit)
        out = []
        for k, v in rows:
            short, code = _CHANGE.unpack(v)
            out.append((from_u64(k[len(prefix):]), short, NAMES[code]))
        return out

    def put(
        self,
        txn: StoreTxn,
        user_id: str,
        room_id: str,
        shortroomid: int,
        old: MembershipRecord | None,
        new: MembershipRecord,
    ) -> None:
        """Record a membership change of the current state in C{txn}."""
        prefix = u64(shortroomid)
        uid = user_id.encode("utf-8")
        stale = [(shortroomid, CODES[new.membership])]
        if old is not None:
            stale.append((shortroomid, CODES[old.membership]))

        def forget_members() -> None:
            for key in stale:
                self._members.pop(key)

        forget_members()
        txn.on_applied(forget_members)
        if old is not None and old.membership != new.membership:
            txn.batch.delete(ROOM_MEMBERS, prefix + CODES[old.membership] + uid)
        txn.batch.put(ROOM_MEMBERS, prefix + CODES[new.membership] + uid, b"")
        txn.batch.put(USER_ROOMS, _user_room_key(user_id, room_id), new.encode())
        if new.position:
            txn.batch.put(
                CHANGES, uid + SEP + u64(new.position), _CHANGE.pack(shortroomid, CODES[new.membership])
            )
        key = (user_id, room_id)
        txn.on_applied(lambda: self._cache.set(key, new))

    def forget(self, txn: StoreTxn, user_id: str, room_id: str) -> None:
        """Drop a left room from the user's list (C{/forget})."""
        txn.batch.delete(USER_ROOMS, _user_room_key(user_id, room_id))
        key = (user_id, room_id)
        txn.on_applied(lambda: self._cache.set(key, None))
