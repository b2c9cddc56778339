"""
End-to-end encryption keys of local users (client-server-api "End-to-End
Encryption": "Device keys", "One-time and fallback keys", "Cross-signing").

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    userdeviceid_devicekeys  user·device -> JSON device keys as uploaded
    onetimekeys              user·device·algorithm·u64 upload position·key_id -> JSON key
    onetimekeyids            user·device·algorithm:key_id -> u64 upload position
    fallbackkeys             user·device·algorithm -> JSON {"id", "key", "used"}
    crosssigningkeys         user·usage -> JSON cross-signing key as uploaded
    keysignatures            target user·target key·signer user -> JSON {signer key ID: signature}

- C{onetimekeys} is ordered by the position of the upload that brought
  the key, so claiming one is taking the first entry of the
  user·device·algorithm prefix ("One-time keys are given out in the order
  that they were uploaded", keys.yaml C{/keys/claim}); C{onetimekeyids}
  finds a key by its ID (a re-upload of an ID must carry the same key).
- C{keysignatures} holds the signatures uploaded with
  C{/keys/signatures/upload} apart from the signed objects, so
  who may see which signature is decided when reading (a user-signing
  key's signature of another user's master key is only for its signer,
  "Cross-signing"). C{target key} is a device ID or a cross-signing
  public key.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, join, u64
from conduit_tw.util.caches import LruCache

DEVICE_KEYS = "userdeviceid_devicekeys"
ONE_TIME_KEYS = "onetimekeys"
ONE_TIME_KEY_IDS = "onetimekeyids"
FALLBACK_KEYS = "fallbackkeys"
CROSS_SIGNING_KEYS = "crosssigningkeys"
KEY_SIGNATURES = "keysignatures"

#: The cross-signing key usages, in the order they are stored.
USAGES = ("master", "self_signing", "user_signing")

JsonDict = dict[str, Any]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
        "utf-8"
    )


def _prefix(*parts: str) -> bytes:
    return join(*parts) + SEP


class E2EKeyStore:
    """Typed access to the key trees; see the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.device_keys = db.open_tree(DEVICE_KEYS)
        self.one_time = db.open_tree(ONE_TIME_KEYS)
        self.one_time_ids = db.open_tree(ONE_TIME_KEY_IDS)
        self.fallback = db.open_tree(FALLBACK_KEYS)
        self.cross_signing = db.open_tree(CROSS_SIGNING_KEYS)
        self.signatures = db.open_tree(KEY_SIGNATURES)
        #: (user, device) -> one-time key counts / fallback keys, as read:
        #: every /sync reports both, they change only through this store.
        #: Dropped before and after each write of the device's keys (a
        #: read racing the write on a deferred backend cannot keep a stale
        #: entry). Callers must not mutate the values.
        self._counts: LruCache[tuple[str, str], dict[str, int]] = LruCache(10_000)
        self._fallbacks: LruCache[tuple[str, str], dict[str, JsonDict]] = LruCache(10_000)

    def _forget(self, user_id: str, device_id: str) -> None:
        self._counts.pop((user_id, device_id))
        self._fallbacks.pop((user_id, device_id))

    async def _write_keys(self, user_id: str, device_id: str, batch: Any) -> None:
        """Write a batch changing the device's keys, keeping the caches right."""
        self._forget(user_id, device_id)
        try:
            await self.db.write(batch)
        finally:
            self._forget(user_id, device_id)

    # -- device keys

    async def get_device_keys(self, user_id: str, device_id: str) -> JsonDict | None:
        """The device keys as uploaded, or None."""
        raw = await self.device_keys.get(join(user_id, device_id))
        return json.loads(raw) if raw is not None else None

    async def all_device_keys(self, user_id: str) -> dict[str, JsonDict]:
        """Device ID -> device keys, for every device of the user that has keys."""
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.device_keys.scan_prefix(prefix)
        return {k[len(prefix):].decode("utf-8"): json.loads(v) for k, v in rows}

    # -- one-time and fallback keys

    async def one_time_key_position(
        self, user_id: str, device_id: str, algorithm: str, key_id: str
    ) -> int | None:
        """The upload position of a stored one-time key, or None."""
        raw = await self.one_time_ids.get(join(user_id, device_id, f"{algorithm}:{key_id}"))
        return from_u64(raw) if raw is not None else None

    async def get_one_time_key(
        self, user_id: str, device_id: str, algorithm: str, key_id: str
    ) -> Any:
        """A stored one-time key's value, or None."""
        pos = await self.one_time_key_position(user_id, device_id, algorithm, key_id)
        if pos is None:
            return None
        raw = await self.one_time.get(join(user_id, device_id, algorithm, u64(pos), key_id))
        return json.loads(raw) if raw is not None else None

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """Algorithm -> number of unclaimed one-time keys of the device (do not mutate)."""
        cached = self._counts.get((user_id, device_id))
        if cached is not None:
            return cached
        prefix = _prefix(user_id, device_id)
        counts: dict[str, int] = {}
        for k, _ in await self.one_time_ids.scan_prefix(prefix):
            algorithm = k[len(prefix):].decode("utf-8").partition(":")[0]
            counts[algorithm] = counts.get(algorithm, 0) + 1
        self._counts.set((user_id, device_id), counts)
        return counts

    async def fallback_keys(self, user_id: str, device_id: str) -> dict[str, JsonDict]:
        """Algorithm -> C{{"id", "key", "used"}} of the device's fallback keys (do not mutate)."""
        cached = self._fallbacks.get((user_id, device_id))
        if cached is not None:
            return cached
        prefix = _prefix(user_id, device_id)
        rows = await self.fallback.scan_prefix(prefix)
        keys = {k[len(prefix):].decode("utf-8"): json.loads(v) for k, v in rows}
        self._fallbacks.set((user_id, device_id), keys)
        return keys

    async def put_keys(
        self,
        user_id: str,
        device_id: str,
        device_keys: JsonDict | None,
        one_time: Iterable[tuple[str, str, Any]],
        fallback: dict[str, tuple[str, Any, bool]],
        position: int,
    ) -> None:
        """
        Store an upload in one batch: C{device_keys} (when given), the new
        one-time keys C{(algorithm, key_id, key)} at upload C{position},
        and fallback keys (algorithm -> (key_id, key, used)), each replacing
        the device's previous one of that algorithm.
        """
        batch = self.db.batch()
        if device_keys is not None:
            batch.put(DEVICE_KEYS, join(user_id, device_id), _dumps(device_keys))
        for algorithm, key_id, key in one_time:
            batch.put(
                ONE_TIME_KEYS, join(user_id, device_id, algorithm, u64(position), key_id), _dumps(key)
            )
            batch.put(ONE_TIME_KEY_IDS, join(user_id, device_id, f"{algorithm}:{key_id}"), u64(position))
        for algorithm, (key_id, key, used) in fallback.items():
            batch.put(
                FALLBACK_KEYS, join(user_id, device_id, algorithm),
                _dumps({"id": key_id, "key": key, "used": used}),
            )
        if len(batch):
            await self._write_keys(user_id, device_id, batch)

    async def claim(self, user_id: str, device_id: str, algorithm: str) -> tuple[str, Any] | None:
        """
        Take the device's oldest one-time key of C{algorithm} (removed in
        one batch), else its fallback key of that algorithm (marked used,
        kept). The caller serialises claims per user.

        @return: C{("<algorithm>:<key_id>", key)}, or None when there is neither.
        """
        prefix = _prefix(user_id, device_id, algorithm)
        rows = await self.one_time.scan_prefix(prefix, limit=1)
        if rows:
            k, v = rows[0]
            key_id = k[len(prefix) + 9:].decode("utf-8")
            batch = self.db.batch()
            batch.delete(ONE_TIME_KEYS, k)
            batch.delete(ONE_TIME_KEY_IDS, join(user_id, device_id, f"{algorithm}:{key_id}"))
            await self._write_keys(user_id, device_id, batch)
            return f"{algorithm}:{key_id}", json.loads(v)
        fkey = join(user_id, device_id, algorithm)
        raw = await self.fallback.get(fkey)
        if raw is None:
            return None
        entry = json.loads(raw)
        if not entry["used"]:
            entry["used"] = True
            batch = self.db.batch()
            batch.put(FALLBACK_KEYS, fkey, _dumps(entry))
            await self._write_keys(user_id, device_id, batch)
        return f"{algorithm}:{entry['id']}", entry["key"]

    # -- cross-signing keys

    async def cross_signing_keys(self, user_id: str) -> dict[str, JsonDict]:
        """Usage -> the user's cross-signing key of that usage."""
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.cross_signing.scan_prefix(prefix)
        return {k[len(prefix):].decode("utf-8"): json.loads(v) for k, v in rows}

    async def put_cross_signing_keys(self, user_id: str, keys: dict[str, JsonDict]) -> None:
        """Store (replace) cross-signing keys by usage, in one batch."""
        batch = self.db.batch()
        for usage, key in keys.items():
            batch.put(CROSS_SIGNING_KEYS, join(user_id, usage), _dumps(key))
        await self.db.write(batch)

    async def delete_cross_signing_keys(self, user_id: str) -> bool:
        """Remove the user's cross-signing keys and every signature of them, in one batch."""
        keys = await self.cross_signing_keys(user_id)
        if not keys:
            return False
        batch = self.db.batch()
        for usage, key in keys.items():
            batch.delete(CROSS_SIGNING_KEYS, join(user_id, usage))
            for public in key["keys"].values():
                for k, _ in await self.signatures.scan_prefix(join(user_id, public) + SEP):
                    batch.delete(KEY_SIGNATURES, k)
        await self.db.write(batch)
        return True

    # -- signatures

    async def signatures_of(self, target_user: str, target_key: str) -> dict[str, dict[str, str]]:
        """Signer user -> {signer key ID: signature} of one key."""
        prefix = _prefix(target_user, target_key)
        rows = await self.signatures.scan_prefix(prefix)
        return {k[len(prefix):].decode("utf-8"): json.loads(v) for k, v in rows}

    async def add_signatures(
        self, entries: Iterable[tuple[str, str, str, dict[str, str]]]
    ) -> None:
        """
        Add C{(target user, target key, signer, {key ID: signature})}
        entries to the stored ones, in one batch.
        """
        batch = self.db.batch()
        pending: dict[bytes, dict[str, str]] = {}
        for target_user, target_key, signer, sigs in entries:
            key = join(target_user, target_key, signer)
            if key not in pending:
                raw = await self.signatures.get(key)
                pending[key] = json.loads(raw) if raw is not None else {}
            pending[key].update(sigs)
        for key, sigs in pending.items():
            batch.put(KEY_SIGNATURES, key, _dumps(sigs))
        if len(batch):
            await self.db.write(batch)

    # -- removal

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        """
        Remove every key of a deleted device and the signatures of its
        device keys, in one batch.

        @return: whether the device had device keys.
        """
        batch = self.db.batch()
        dkey = join(user_id, device_id)
        had_keys = await self.device_keys.get(dkey) is not None
        batch.delete(DEVICE_KEYS, dkey)
        prefix = dkey + SEP
        for tree, name in (
            (self.one_time, ONE_TIME_KEYS), (self.one_time_ids, ONE_TIME_KEY_IDS),
            (self.fallback, FALLBACK_KEYS), (self.signatures, KEY_SIGNATURES),
        ):
            for k, _ in await tree.scan_prefix(prefix):
                batch.delete(name, k)
        await self._write_keys(user_id, device_id, batch)
        return had_keys
