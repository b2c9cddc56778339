"""
The C{global} tree: the one global counter behind every stream position,
and the server's own signing key.

Layout::

    global  b"c"               -> u64: last stream position handed out
    global  b"signing_key"     -> "ed25519 <version> <unpadded base64 seed>"
    global  b"schema_version"  -> u64 (owned by storage.database)
    global  b"old_verify_key" 0xFF key_id
                               -> JSON {"key": unpadded base64, "expired_ts": int}
                                  (our keys replaced by L{GlobalsStore.rotate_signing_key})
"""

from __future__ import annotations

import json
import secrets
import string
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from nacl.signing import SigningKey

from conduit_tw.events.hashes import decode_base64, encode_base64

from conduit_tw.logging import get_logger
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.events.canonical_json import encode_canonical_json
from conduit_tw.storage.keys import SEP, from_u64, join, u64

log = get_logger("conduit_tw.storage.globals")

_COUNTER = b"c"
_SIGNING_KEY = b"signing_key"
_OLD_VERIFY_KEY = b"old_verify_key"


class GlobalsStore:
    """Counter and signing key."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.tree = db.open_tree("global")
        #: The newest position handed out, once loaded (see L{reserve_position}).
        self._last: int | None = None
        #: Positions handed out whose write has neither committed nor failed.
        self._pending: set[int] = set()
        self._upto = 0
        #: Called (no arguments) when L{committed_upto} moves forward; the
        #: notifier's C{advance} (HomeServer wires it).
        self.on_advance: Callable[[], None] | None = None

    # -- committed up to ------------------------------------------------------
    #
    # Writers reserve positions in order but, on a backend that answers
    # later, commit them in any order: event A reserves 5, reads state
    # (the read yields), event B reserves 6 and commits first. A /sync
    # answering "up to 6" then would never show A's event (the next sync
    # starts after 6). So every position is tracked from its reservation
    # until its write committed or failed, and the sync's "now" (the
    # notifier's position) only moves up to the highest position below
    # which nothing is pending (L{committed_upto}). On the embedded
    # backends nothing is ever pending across a reactor turn, so this
    # changes nothing there.

    def committed_upto(self) -> int:
        """
        The highest position P such that the writes of every position up
        to P have committed (or failed, so hold nothing).
        """
        return self._upto

    def release(self, position: int) -> None:
        """The write at C{position} committed or failed; it is no longer pending."""
        self._pending.discard(position)
        upto = (min(self._pending) - 1) if self._pending else (self._last or 0)
        if upto > self._upto:
            self._upto = upto
            if self.on_advance is not None:
                self.on_advance()

    async def _reserve(self) -> int:
        if self._last is None:
            stored = await self.current_position()
            # Another caller may have loaded (and advanced) it while this
            # read was answered (a backend that answers later): keep theirs.
            if self._last is None:
                self._last = stored
                self._upto = max(self._upto, stored)
        self._last += 1
        self._pending.add(self._last)
        return self._last

    def _write_counter(self) -> None:
        # Always store the newest reserved value, so the stored counter
        # never moves back whatever order writes commit in.
        self.tree.insert(_COUNTER, u64(self._last)).addErrback(  # type: ignore[arg-type]
            lambda f: log.failure("Writing the stream counter failed", f)
        )

    @asynccontextmanager
    async def stream_position(self, needed: bool = True) -> AsyncIterator[int]:
        """
        Reserve the next global stream position for the data the caller
        writes inside the C{async with} block, and write the counter::

            async with globals.stream_position() as position:
                await store.put(..., position)
            notifier.notify(position, ...)

        The position is pending until the block ends (its write committed
        or raised): syncs do not answer past it before (see
        L{committed_upto}). The counter write is not awaited: writes become
        durable in the order they are issued, so once the caller's write
        has fired the counter is durable too.

        @param needed: C{False}: nothing is reserved and the position is 0
            (callers that write at a position only sometimes).
        """
        if not needed:
            yield 0
            return
        position = await self._reserve()
        self._write_counter()
        try:
            yield position
        finally:
            self.release(position)

    async def next_position(self) -> int:
        """
        Reserve the next position with nothing written at it (a marker,
        as tests use), write the counter, and release it at once. Data
        written at a position goes through L{stream_position} or
        L{reserve_position}.
        """
        position = await self._reserve()
        self._write_counter()
        self.release(position)
        return position

    async def reserve_position(self, txn: Any) -> int:
        """
        Reserve the next position in memory only, for data written by the
        L{StoreTxn} C{txn}, which also records the counter (call
        L{put_position_in_batch} or L{put_position_on_commit}): one commit
        per event instead of two. The position is pending until C{txn}
        committed or failed. Positions reserved by a batch that then fails
        are skipped, never reused.
        """
        position = await self._reserve()
        release = self.release
        txn.after_commit(lambda: release(position))
        txn.after_failure(lambda: release(position))
        return position

    def put_position_in_batch(self, batch: Any) -> None:
        """Record the newest reserved position in C{batch} (call just before writing it)."""
        if self._last is not None:
            batch.put("global", _COUNTER, u64(self._last))

    def put_position_on_commit(self, txn: Any) -> None:
        """
        Have the L{StoreTxn} C{txn} record the newest reserved position in
        its batch just before it commits.
        """
        txn.before_commit(lambda: self.put_position_in_batch(txn.batch))

    async def current_position(self) -> int:
        """The last stream position handed out (0 on a new database)."""
        if self._last is not None:
            return self._last
        raw = await self.tree.get(_COUNTER)
        stored = from_u64(raw) if raw else 0
        # Every stored position is committed or failed (a restart ends
        # whatever was pending).
        self._upto = max(self._upto, stored)
        return stored

    async def get_or_create_signing_key(self) -> SigningKey:
        """
        The server's ed25519 signing key, generated and stored on first use
        (the key ID is C{ed25519:<version>}).
        """
        raw = await self.tree.get(_SIGNING_KEY)
        if raw is None:
            key = _new_signing_key()
            await self.tree.insert(_SIGNING_KEY, _encode_signing_key(key))
            return key
        alg, version, seed = raw.decode("ascii").split(" ")
        if alg != "ed25519":
            raise ValueError(f"unsupported signing key algorithm {alg!r}")
        seed_bytes = decode_base64(seed)
        if seed_bytes is None:
            raise ValueError("stored signing key is not valid base64")
        return _with_key_id(SigningKey(seed_bytes), version)

    async def rotate_signing_key(self, old: SigningKey, expired_ts: int) -> SigningKey:
        """
        Replace the signing key C{old} by a new one with a new key ID, and
        keep C{old}'s verify key as an old verify key that expired at
        C{expired_ts} (server-server-api "Publishing Keys":
        C{old_verify_keys}), in one atomic write.

        @return: the new signing key.
        """
        new = _new_signing_key()
        while new.version == old.version:  # type: ignore[attr-defined]
            new = _new_signing_key()
        old_key_id = f"{old.alg}:{old.version}"  # type: ignore[attr-defined]
        record = {"key": encode_base64(bytes(old.verify_key)), "expired_ts": expired_ts}
        batch = self.db.batch()
        batch.put("global", join(_OLD_VERIFY_KEY, old_key_id), encode_canonical_json(record))
        batch.put("global", _SIGNING_KEY, _encode_signing_key(new))
        await self.db.write(batch)
        return new

    async def old_verify_keys(self) -> dict[str, dict[str, Any]]:
        """Our replaced keys: key ID -> C{{"key": base64, "expired_ts": int}}."""
        rows = await self.tree.scan_prefix(_OLD_VERIFY_KEY + SEP)
        return {k.rpartition(SEP)[2].decode("utf-8"): json.loads(v) for k, v in rows}


def _with_key_id(key: SigningKey, version: str) -> SigningKey:
    # The attributes signedjson-style helpers read for the key ID.
    key.alg = "ed25519"  # type: ignore[attr-defined]
    key.version = version  # type: ignore[attr-defined]
    return key


def _new_signing_key() -> SigningKey:
    """A fresh ed25519 key with a random C{a_XXXX} version."""
    version = "a_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))
    return _with_key_id(SigningKey.generate(), version)


def _encode_signing_key(key: SigningKey) -> bytes:
    return f"ed25519 {key.version} {encode_base64(bytes(key))}".encode("ascii")  # type: ignore[attr-defined]
