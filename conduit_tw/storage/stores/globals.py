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
from typing import Any

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

    async def next_position(self) -> int:
        """
        Reserve and return the next global stream position, and write the
        counter. Returns without waiting for that write to be durable:
        the caller's own write of data at this position follows in the
        same reactor turn, and writes become durable in the order they
        are applied (so when the caller's write has fired, the counter is
        durable too). Waiting here would let other writers reserve, commit
        and announce higher positions before this one's data is applied,
        and syncs would skip it.
        """
        position = await self.reserve_position()
        # Always store the newest reserved value, so the stored counter
        # never moves back whatever order writes commit in.
        self.tree.insert(_COUNTER, u64(self._last)).addErrback(  # type: ignore[arg-type]
            lambda f: log.failure("Writing the stream counter failed", f)
        )
        return position

    async def reserve_position(self) -> int:
        """
        Reserve the next position in memory only; the caller writes the
        counter in the batch that uses it with L{put_position_in_batch}
        (one commit per event instead of two). Positions reserved by a
        batch that then fails are skipped, never reused.
        """
        if self._last is None:
            stored = await self.current_position()
            # Another caller may have loaded (and advanced) it while this
            # read was answered (a backend that answers later): keep theirs.
            if self._last is None:
                self._last = stored
        self._last += 1
        return self._last

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
        return from_u64(raw) if raw else 0

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
