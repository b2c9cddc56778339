"""
Events: stored once by short id, with their place in the room timeline and
the global stream.

Layout (u64 is 8 big-endian bytes)::

    shorteventid_pdu   u64 shorteventid
        -> record: compact JSON [event_id, pdu] or [event_id, pdu, extras],
           packed (L{pack_record})
    shorteventid_meta  u64 shorteventid
        -> u64 shortroomid + u64 order + u64 state_before + u64 state_after + u8 flags
    timeline           u64 shortroomid + u64 order
        -> u64 shorteventid + u64 state_before + u64 state_after
    position_event     u64 stream position
        -> u64 shortroomid + u64 shorteventid
    roomid_ts          u64 shortroomid + u64 origin_server_ts + u64 order
        -> u64 shorteventid

C{order} sorts a room's timeline: C{2**63 + stream position} for events
that arrive live (local or federation) and C{2**63 - n} for the n-th
backfilled event, so history fetched later sorts before everything that
was live, and byte order is timeline order in both directions. Events
outside the timeline (outliers, rejected and soft-failed events) have
order 0 and no C{timeline} row. C{state_before}/C{state_after} are
shortstatehashes (state.py); they are equal for message events.

C{pdu} is the event exactly as it travels over federation (v1-2 events
carry their own C{event_id}); C{extras} holds what is ours, not the
event's: C{"rs"} the event ID this state event replaced
(C{unsigned.replaces_state}/C{prev_content}), C{"tx"} C{[device_id,
txn_id]} of a local send (C{unsigned.transaction_id}), C{"rb"} the ID of
the redaction that pruned this event, C{"irs"} the stripped state sent with
an invite (or knock answer) for a room this server is not in.

Redactions: the stored PDU is replaced by its redacted form in the batch
that persists the redaction (the original is not kept; see
docs/architecture.md "Rooms: persistence").

C{roomid_ts} indexes every timeline event (order != 0) by its
C{origin_server_ts} (clamped to 0 .. 2**64-1), so C{/timestamp_to_event}
is one range seek in either direction (L{TimelineStore.by_timestamp}).

Flags: L{OUTLIER}, L{REJECTED}, L{SOFT_FAILED}, L{BACKFILLED}.

Records are packed (L{pack_record}): byte 0x01 and the JSON deflated with
a fixed preset dictionary of the strings every PDU repeats (field names,
event types, the C{$}/C{!}/C{@} sigils), about 40% smaller for a message;
a record that would not shrink is stored as its JSON, which starts with
C{[}, as every record written before packing did. Both read back alike.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Iterable

from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import RoomVersion
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import from_u64, u64
from conduit_tw.storage.stores.rooms import RoomStore
from conduit_tw.storage.txn import StoreTxn
from conduit_tw.util.caches import LruCache

PDUS = "shorteventid_pdu"
META = "shorteventid_meta"
TIMELINE = "timeline"
POSITIONS = "position_event"
TIMESTAMPS = "roomid_ts"

OUTLIER = 1
REJECTED = 2
SOFT_FAILED = 4
BACKFILLED = 8

#: Orders of live events are C{LIVE_BASE + position}.
LIVE_BASE = 1 << 63

_META = struct.Struct(">QQQQB")
_ROW = struct.Struct(">QQQ")
_TWO = struct.Struct(">QQ")
_TS_KEY = struct.Struct(">QQQ")
_U64_MAX = (1 << 64) - 1


def order_for_position(position: int) -> int:
    """The timeline order of a live event at stream C{position}."""
    return LIVE_BASE + position


def position_of_order(order: int) -> int | None:
    """The stream position of a live event's order (None for backfilled ones)."""
    return order - LIVE_BASE if order > LIVE_BASE else None


#: First byte of a deflated record (a JSON record starts with C{[}).
PACKED = 1
#: Raw deflate (no zlib header) with a 4 KiB window, which holds L{_ZDICT}.
_WBITS = -12
#: The preset dictionary of packed records (deflate looks back into it).
#: Never change it: records written with it must stay readable; a new
#: dictionary needs a new first byte. The commonest strings come last
#: (the nearest matches are the cheapest to encode).
_ZDICT = (
    b'"m.room.create","m.room.join_rules","m.room.history_visibility","m.room.guest_access",'
    b'"m.room.server_acl","m.room.canonical_alias","m.room.avatar","m.room.topic","m.room.name",'
    b'"m.room.pinned_events","m.room.tombstone","m.space.child","m.space.parent","m.reaction",'
    b'"m.room.redaction","m.room.encryption","m.room.encrypted",'
    b'"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"","device_id":"","sender_key":"",'
    b'"session_id":"","m.relates_to":{"rel_type":"m.annotation","m.thread","m.replace",'
    b'"m.in_reply_to":{"event_id":"$","key":"","m.new_content":{'
    b'"m.room.power_levels","users_default":0,"events_default":0,"state_default":50,"ban":50,'
    b'"kick":50,"redact":50,"invite":0,"notifications":{"room":50},"events":{"users":{"@":100,'
    b'"join_rule":"public","invite","knock","restricted","history_visibility":"shared",'
    b'"guest_access":"can_join","room_version":"10","creator":"@","predecessor":'
    b'"format":"org.matrix.custom.html","formatted_body":"<","m.notice","m.emote","m.image",'
    b'"m.file","m.video","m.audio","url":"mxc://","info":{"mimetype":"image/","size":,"w":,"h":'
    b'"m.room.member","membership":"join","leave","ban","displayname":"","avatar_url":"mxc://",'
    b'"is_direct":true,"reason":"","join_authorised_via_users_server":"@'
    b'{"tx":["","rs":"$","rb":"$","unsigned":{"age_ts":,"redacted_because":'
    b'["$",{"auth_events":["$","$","$"],"content":{"body":"","msgtype":"m.text"},"depth":,'
    b'"hashes":{"sha256":""},"origin":"","origin_server_ts":17,"prev_events":["$"],'
    b'"redacts":"$","room_id":"!","sender":"@","signatures":{"":{"ed25519:"}},'
    b'"state_key":"@","type":"m.room.message"},{"tx":["'
)


#: A compressor primed with L{_ZDICT}, never used itself: each record is
#: deflated by a copy of it (C{deflateCopy} of the primed state gives the
#: same bytes as a new compressor given the dictionary, for half the CPU:
#: the dictionary is not hashed again).
_PRIMED = zlib.compressobj(6, zlib.DEFLATED, _WBITS, 6, zlib.Z_DEFAULT_STRATEGY, _ZDICT)


def pack_record(raw: bytes) -> bytes:
    """A record's JSON as stored: deflated (first byte L{PACKED}) if that is smaller."""
    c = _PRIMED.copy()
    packed = c.compress(raw) + c.flush()
    if len(packed) + 1 < len(raw):
        return bytes((PACKED,)) + packed
    return raw


def unpack_record(stored: bytes) -> bytes:
    """The JSON of a stored record (L{pack_record}'s inverse; plain JSON as it is)."""
    if stored[0] == PACKED:
        d = zlib.decompressobj(_WBITS, _ZDICT)
        return d.decompress(memoryview(stored)[1:]) + d.flush()
    return stored


def encode_json(value: Any) -> bytes:
    """Compact JSON, as every room tree stores it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class StoredEvent(Event):
    """
    An L{Event} as stored here, with where it sits.

    @ivar short: the shorteventid.
    @ivar shortroomid: the room's short id.
    @ivar order: the timeline order (0 outside the timeline).
    @ivar state_before: shortstatehash of the state before the event.
    @ivar state_after: shortstatehash of the state after it.
    @ivar flags: L{OUTLIER} | L{REJECTED} | L{SOFT_FAILED} | L{BACKFILLED}.
    @ivar extras: our own notes (see the module docstring); do not mutate.
    """

    __slots__ = ("short", "shortroomid", "order", "state_before", "state_after", "flags", "extras")

    def __init__(
        self,
        pdu: dict[str, Any],
        event_id: str,
        room_version: RoomVersion,
        short: int,
        shortroomid: int,
        order: int,
        state_before: int,
        state_after: int,
        flags: int,
        extras: dict[str, Any],
    ) -> None:
        super().__init__(pdu, event_id, room_version, bool(flags & REJECTED))
        self.short = short
        self.shortroomid = shortroomid
        self.order = order
        self.state_before = state_before
        self.state_after = state_after
        self.flags = flags
        self.extras = extras

    @property
    def position(self) -> int | None:
        """The stream position (None outside the live timeline)."""
        return position_of_order(self.order) if self.order else None

    @property
    def in_timeline(self) -> bool:
        """Whether the event has a place in the room timeline."""
        return self.order != 0

    @property
    def redacted_because(self) -> str | None:
        """The ID of the redaction that pruned this event, if any."""
        return self.extras.get("rb")

    def room_id_or_create(self) -> str:
        """The room ID, derived from the event ID for a v12 create event."""
        rid = self.pdu.get("room_id")
        if rid is None:
            return "!" + self.event_id[1:]
        return rid


class TimelineStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase, rooms: RoomStore, cache_size: int) -> None:
        self.db = db
        self.rooms = rooms
        self.pdus = db.open_tree(PDUS)
        self.meta = db.open_tree(META)
        self.timeline = db.open_tree(TIMELINE)
        self.positions = db.open_tree(POSITIONS)
        self.timestamps = db.open_tree(TIMESTAMPS)
        self._cache: LruCache[int, StoredEvent] = LruCache(cache_size)

    # -- decoding

    async def _decode(self, short: int, raw_meta: bytes, raw_pdu: bytes) -> StoredEvent:
        shortroomid, order, before, after, flags = _META.unpack(raw_meta)
        record = json.loads(unpack_record(raw_pdu))
        extras = record[2] if len(record) > 2 else {}
        info = self.rooms.cached_room_by_short(shortroomid) or await self.rooms.get_room_by_short(
            shortroomid
        )
        assert info is not None, f"event {short} in unknown room {shortroomid}"
        ev = StoredEvent(
            record[1], record[0], info.version, short, shortroomid, order, before, after, flags,
            extras,
        )
        self._cache.set(short, ev)
        return ev

    # -- reading

    def cached(self, short: int) -> StoredEvent | None:
        """The event if it is in memory."""
        return self._cache.get(short)

    async def get(self, short: int) -> StoredEvent | None:
        """One stored event by short id (None if we do not have it)."""
        ev = self._cache.get(short)
        if ev is not None:
            return ev
        key = u64(short)
        raw_meta = await self.meta.get(key)
        if raw_meta is None:
            return None
        raw_pdu = await self.pdus.get(key)
        if raw_pdu is None:
            return None
        return await self._decode(short, raw_meta, raw_pdu)

    async def get_many(self, shorts: Iterable[int]) -> list[StoredEvent | None]:
        """L{get} for many (two batched reads for the misses)."""
        ids = list(shorts)
        out: list[StoredEvent | None] = [self._cache.get(s) for s in ids]
        missing = [i for i, e in enumerate(out) if e is None]
        if missing:
            keys = [u64(ids[i]) for i in missing]
            metas = await self.meta.get_many(keys)
            pdus = await self.pdus.get_many(keys)
            for i, m, p in zip(missing, metas, pdus):
                if m is not None and p is not None:
                    out[i] = await self._decode(ids[i], m, p)
        return out

    async def shorts_at(self, places: Iterable[tuple[int, int]]) -> list[int | None]:
        """The short ids of the timeline events at C{(shortroomid, order)} places."""
        rows = await self.timeline.get_many([u64(room) + u64(order) for room, order in places])
        return [from_u64(v[:8]) if v is not None else None for v in rows]

    async def has(self, short: int) -> bool:
        """Whether the event is stored (as timeline event or outlier)."""
        if short in self._cache:
            return True
        return await self.meta.get(u64(short)) is not None

    async def range(
        self,
        shortroomid: int,
        start: int,
        forward: bool,
        limit: int,
        end: int | None = None,
    ) -> list[StoredEvent]:
        """
        Timeline events of a room by order: from C{start} (inclusive)
        towards newer (C{forward}) or older events, stopping before C{end}
        (exclusive) if given, at most C{limit} of them, in walking order.
        """
        prefix = u64(shortroomid)
        if forward:
            hi = prefix + u64(end) if end is not None else u64(shortroomid + 1)
            if end is not None and end <= start:
                return []
            rows = await self.timeline.iter_range(prefix + u64(start), hi, limit=limit)
        else:
            lo = prefix + u64(end + 1 if end is not None else 0)
            if end is not None and end >= start:
                return []
            if start >= (1 << 64) - 1:
                hi = u64(shortroomid + 1)
            else:
                hi = prefix + u64(start + 1)
            rows = await self.timeline.iter_range(lo, hi, reverse=True, limit=limit)
        shorts = [from_u64(v[:8]) for _, v in rows]
        events = await self.get_many(shorts)
        return [e for e in events if e is not None]

    async def latest(self, shortroomid: int, limit: int) -> list[StoredEvent]:
        """The newest C{limit} timeline events, newest first."""
        return await self.range(shortroomid, (1 << 64) - 1, False, limit)

    async def since_position(self, position: int, limit: int) -> list[tuple[int, int, int]]:
        """
        Every live event after stream C{position}, as C{(position,
        shortroomid, shorteventid)}, oldest first (for appservice and
        federation senders).
        """
        rows = await self.positions.iter_range(u64(position + 1), None, limit=limit)
        return [(from_u64(k),) + _TWO.unpack(v) for k, v in rows]  # type: ignore[misc]

    async def by_timestamp(
        self, shortroomid: int, ts: int, forward: bool, limit: int, after: tuple[int, int] | None = None
    ) -> list[tuple[int, int, int]]:
        """
        Timeline events of a room by C{origin_server_ts}: those with
        C{ts >= ts} oldest first (C{forward}), or C{ts <= ts} newest first,
        as C{(ts, order, shorteventid)}, at most C{limit}. C{after}
        (a previous row's C{(ts, order)}) continues a scan past that row.
        """
        ts = min(max(ts, 0), _U64_MAX)
        prefix = u64(shortroomid)
        if forward:
            start = _TS_KEY.pack(shortroomid, ts, 0)
            if after is not None:
                start = _TS_KEY.pack(shortroomid, after[0], after[1]) + b"\x00"
            rows = await self.timestamps.iter_range(start, u64(shortroomid + 1), limit=limit)
        else:
            end = _TS_KEY.pack(shortroomid, ts, _U64_MAX) + b"\x00"
            if after is not None:
                end = _TS_KEY.pack(shortroomid, after[0], after[1])
            rows = await self.timestamps.iter_range(prefix, end, reverse=True, limit=limit)
        out = []
        for k, v in rows:
            _, row_ts, order = _TS_KEY.unpack(k)
            out.append((row_ts, order, from_u64(v)))
        return out

    # -- writing

    def put(
        self,
        txn: StoreTxn,
        event: Event,
        short: int,
        shortroomid: int,
        order: int,
        state_before: int,
        state_after: int,
        flags: int,
        extras: dict[str, Any],
    ) -> StoredEvent:
        """Write a new event in C{txn}; it is cached once committed."""
        key = u64(short)
        canonical = getattr(event, "canonical", None)  # handlers.events.NewEvent
        if canonical is not None:
            # The PDU's canonical JSON, already encoded for the size check:
            # the same record as encode_json would make (keys sorted).
            parts = [b"[", encode_json(event.event_id), b",", canonical]
            if extras:
                parts += (b",", encode_json(extras))
            parts.append(b"]")
            txn.batch.put(PDUS, key, pack_record(b"".join(parts)))
        else:
            record: list[Any] = [event.event_id, event.pdu]
            if extras:
                record.append(extras)
            self.txn_put_record(txn, key, record)
        txn.batch.put(META, key, _META.pack(shortroomid, order, state_before, state_after, flags))
        if order:
            txn.batch.put(
                TIMELINE, u64(shortroomid) + u64(order), _ROW.pack(short, state_before, state_after)
            )
            position = position_of_order(order)
            if position is not None:
                txn.batch.put(POSITIONS, u64(position), _TWO.pack(shortroomid, short))
            ts = event.pdu.get("origin_server_ts", 0)
            ts = min(max(ts, 0), _U64_MAX) if isinstance(ts, int) else 0
            txn.batch.put(
                TIMESTAMPS, _TS_KEY.pack(shortroomid, ts, order), u64(short)
            )
        stored = StoredEvent(
            event.pdu, event.event_id, event.room_version, short, shortroomid, order,
            state_before, state_after, flags, extras,
        )
        txn.on_applied(lambda: self._cache.set(short, stored))
        return stored

    @staticmethod
    def txn_put_record(txn: StoreTxn, key: bytes, record: list[Any]) -> None:
        """Put the C{[event_id, pdu, extras?]} record."""
        txn.batch.put(PDUS, key, pack_record(encode_json(record)))

    def replace_pdu(self, txn: StoreTxn, event: StoredEvent, pdu: dict[str, Any], extras: dict[str, Any]) -> StoredEvent:
        """Rewrite a stored event's PDU (redaction) in C{txn}."""
        record: list[Any] = [event.event_id, pdu]
        if extras:
            record.append(extras)
        self.txn_put_record(txn, u64(event.short), record)
        new = StoredEvent(
            pdu, event.event_id, event.room_version, event.short, event.shortroomid, event.order,
            event.state_before, event.state_after, event.flags, extras,
        )
        txn.on_applied(lambda: self._cache.set(event.short, new))
        return new
