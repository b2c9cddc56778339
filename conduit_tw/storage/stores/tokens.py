"""
Access, refresh and login tokens, each looked up with one key read.

Tokens are random strings (C{secrets}) shown to the client once; we store
only their SHA-256, so a copy of the database does not hand out sessions.
A device has at most one access token and one refresh token
(client-server-api "Relationship between access tokens and devices").

Layout::

    accesstoken_info    sha256(token)             -> JSON TokenInfo
    userdevice_token    user_id 0xFF device_id    -> sha256(access token)
    refreshtoken_info   sha256(refresh token)     -> JSON RefreshInfo
    userdevice_refresh  user_id 0xFF device_id    -> sha256(current refresh token)
    logintoken_info     sha256(login token)       -> JSON {"user_id", "expires_at"}

Refresh rotation (client-server-api "Refreshing access tokens"): using
refresh token R issues access token A' and refresh token R' with
C{R'.prev = R} and C{A'.revoke_refresh = R}. R stays valid (so a client
that lost the answer can retry) until A' or R' is used, which deletes R.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import join
from conduit_tw.util.caches import LruCache

ACCESS = "accesstoken_info"
BY_DEVICE = "userdevice_token"
REFRESH = "refreshtoken_info"
REFRESH_BY_DEVICE = "userdevice_refresh"
LOGIN = "logintoken_info"


@dataclass(frozen=True)
class TokenInfo:
    """What an access token stands for."""

    user_id: str
    device_id: str
    is_guest: bool = False
    #: Milliseconds since the epoch after which the token is expired (and
    #: answers M_UNKNOWN_TOKEN with soft_logout), or None.
    expires_at: int | None = None
    #: The appservice ID when the token belongs to an appservice.
    appservice_id: str | None = None
    #: Hex hash of the refresh token to revoke the first time this access
    #: token is used (see the module docstring).
    revoke_refresh: str | None = None


@dataclass(frozen=True)
class RefreshInfo:
    """What a refresh token stands for."""

    user_id: str
    device_id: str
    is_guest: bool = False
    #: Hex hash of the refresh token this one replaced, still valid until
    #: this one (or its access token) is used.
    prev: str | None = None


def hash_token(token: str) -> bytes:
    """The key a token is stored under."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(prefix: str = "syt") -> str:
    """A fresh opaque token (about 256 bits of randomness)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load(cls: type, raw: bytes) -> Any:
    data = json.loads(raw)
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class TokenStore:
    """Access, refresh and login tokens of user devices."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.info = db.open_tree(ACCESS)
        self.by_device = db.open_tree(BY_DEVICE)
        self.refresh = db.open_tree(REFRESH)
        self.refresh_by_device = db.open_tree(REFRESH_BY_DEVICE)
        self.login = db.open_tree(LOGIN)
        #: sha256(token) -> TokenInfo of live access tokens, so that a
        #: request does not read the key (a send's dearest read). Every
        #: change of C{accesstoken_info} goes through this store: the
        #: changed keys are dropped when the batch is built (L{_changing})
        #: and again once it is written (L{write}), and a lookup that read
        #: the tree while a change was made keeps its answer to itself
        #: (L{_epoch}), so a removed token is refused from the moment the
        #: removal is applied and acknowledged.
        self._live: LruCache[bytes, TokenInfo] = LruCache(10_000)
        #: Moves on at every change of C{accesstoken_info}.
        self._epoch = 0

    # -- access tokens

    async def lookup(self, token: str) -> TokenInfo | None:
        """The token's owner, or None if unknown."""
        key = hash_token(token)
        info = self._live.get(key)
        if info is not None:
            return info
        epoch = self._epoch
        raw = await self.info.get(key)
        if raw is None:
            return None
        info = _load(TokenInfo, raw)
        if self._epoch == epoch:
            self._live.set(key, info)
        return info

    def _changing(self, key: bytes) -> None:
        """C{accesstoken_info} C{key} is about to change: forget what is cached."""
        self._live.pop(key)
        self._epoch += 1

    async def write(self, batch: Any) -> None:
        """
        Write a batch that may change access tokens (built with this
        store's C{*_in_batch} methods), then forget the cached tokens it
        changed: callers must write such batches through here.
        """
        try:
            await self.db.write(batch)
        finally:
            for tree, key, _ in batch:
                if tree == ACCESS:
                    self._changing(key)

    def add_to_batch(self, batch: Any, token: str, info: TokenInfo, old_hash: bytes | None) -> None:
        """
        Record C{token} for its device in C{batch}, replacing the device's
        previous token (whose hash is C{old_hash}). Write it with L{write}.
        """
        key = hash_token(token)
        if old_hash is not None and old_hash != key:
            self._changing(old_hash)
            batch.delete(ACCESS, old_hash)
        self._changing(key)
        batch.put(ACCESS, key, _dumps(asdict(info)))
        batch.put(BY_DEVICE, join(info.user_id, info.device_id), key)

    async def device_token_hash(self, user_id: str, device_id: str) -> bytes | None:
        """The hash of the device's current token, if any."""
        return await self.by_device.get(join(user_id, device_id))

    async def set_token(self, token: str, info: TokenInfo) -> None:
        """Make C{token} the device's only access token."""
        old = await self.device_token_hash(info.user_id, info.device_id)
        batch = self.db.batch()
        self.add_to_batch(batch, token, info, old)
        await self.write(batch)

    def remove_device_in_batch(self, batch: Any, user_id: str, device_id: str, old_hash: bytes | None) -> None:
        """Invalidate the device's access token in C{batch} (write it with L{write})."""
        if old_hash is not None:
            self._changing(old_hash)
            batch.delete(ACCESS, old_hash)
        batch.delete(BY_DEVICE, join(user_id, device_id))

    async def clear_revoke_refresh(self, token: str, info: TokenInfo) -> None:
        """
        First use of an access token issued by a refresh: revoke the
        refresh token it replaced and forget the note.
        """
        batch = self.db.batch()
        if info.revoke_refresh is not None:
            old = bytes.fromhex(info.revoke_refresh)
            current = await self.refresh_by_device.get(join(info.user_id, info.device_id))
            if current != old:
                batch.delete(REFRESH, old)
        key = hash_token(token)
        self._changing(key)
        batch.put(ACCESS, key, _dumps(asdict(replace(info, revoke_refresh=None))))
        await self.write(batch)

    # -- whole devices

    async def remove_all_for_device_in_batch(self, batch: Any, user_id: str, device_id: str) -> None:
        """Invalidate every access and refresh token of a device in C{batch}."""
        device_key = join(user_id, device_id)
        access = await self.by_device.get(device_key)
        self.remove_device_in_batch(batch, user_id, device_id, access)
        refresh = await self.refresh_by_device.get(device_key)
        if refresh is not None:
            raw = await self.refresh.get(refresh)
            if raw is not None:
                prev = _load(RefreshInfo, raw).prev
                if prev is not None:
                    batch.delete(REFRESH, bytes.fromhex(prev))
            batch.delete(REFRESH, refresh)
        batch.delete(REFRESH_BY_DEVICE, device_key)

    # -- refresh tokens

    async def lookup_refresh(self, token: str) -> RefreshInfo | None:
        """The refresh token's owner, or None if unknown or revoked."""
        raw = await self.refresh.get(hash_token(token))
        return _load(RefreshInfo, raw) if raw is not None else None

    async def device_refresh_hash(self, user_id: str, device_id: str) -> bytes | None:
        """The hash of the device's current refresh token, if any."""
        return await self.refresh_by_device.get(join(user_id, device_id))

    async def issue_in_batch(
        self,
        batch: Any,
        user_id: str,
        device_id: str,
        *,
        is_guest: bool = False,
        expires_at: int | None = None,
        with_refresh: bool = False,
        appservice_id: str | None = None,
    ) -> tuple[str, str | None]:
        """
        Give the device a new access token (and a new refresh token when
        C{with_refresh}), replacing all its previous tokens, in C{batch}.

        @return: C{(access_token, refresh_token or None)}.
        """
        await self.remove_all_for_device_in_batch(batch, user_id, device_id)
        access = new_token("syt")
        info = TokenInfo(
            user_id=user_id,
            device_id=device_id,
            is_guest=is_guest,
            expires_at=expires_at,
            appservice_id=appservice_id,
        )
        self.add_to_batch(batch, access, info, None)
        refresh = None
        if with_refresh:
            refresh = new_token("syr")
            key = hash_token(refresh)
            batch.put(REFRESH, key, _dumps(asdict(RefreshInfo(user_id, device_id, is_guest))))
            batch.put(REFRESH_BY_DEVICE, join(user_id, device_id), key)
        return access, refresh

    async def rotate_refresh(
        self, token: str, expires_at: int | None
    ) -> tuple[RefreshInfo, str, str] | None:
        """
        Use refresh token C{token}: issue a new access and refresh token for
        its device. None when the token is unknown or already superseded.

        @return: C{(info, new_access_token, new_refresh_token)}.
        """
        old_key = hash_token(token)
        raw = await self.refresh.get(old_key)
        if raw is None:
            return None
        info = _load(RefreshInfo, raw)
        device_key = join(info.user_id, info.device_id)
        current = await self.refresh_by_device.get(device_key)
        batch = self.db.batch()
        if current == old_key:
            # The current token is used: the one it replaced is now dead.
            if info.prev is not None:
                batch.delete(REFRESH, bytes.fromhex(info.prev))
        elif current is not None:
            # A retry with the previous token: only allowed while the
            # current token has never been used.
            raw_current = await self.refresh.get(current)
            cur = _load(RefreshInfo, raw_current) if raw_current is not None else None
            if cur is None or cur.prev != old_key.hex():
                return None
            batch.delete(REFRESH, current)
        else:
            return None
        access_hash = await self.by_device.get(device_key)
        self.remove_device_in_batch(batch, info.user_id, info.device_id, access_hash)
        access = new_token("syt")
        self.add_to_batch(
            batch,
            access,
            TokenInfo(
                user_id=info.user_id,
                device_id=info.device_id,
                is_guest=info.is_guest,
                expires_at=expires_at,
                revoke_refresh=old_key.hex(),
            ),
            None,
        )
        refresh = new_token("syr")
        new_key = hash_token(refresh)
        batch.put(
            REFRESH,
            new_key,
            _dumps(asdict(RefreshInfo(info.user_id, info.device_id, info.is_guest, old_key.hex()))),
        )
        batch.put(REFRESH_BY_DEVICE, device_key, new_key)
        await self.write(batch)
        return info, access, refresh

    # -- login tokens (m.login.token)

    async def create_login_token(self, user_id: str, expires_at: int, now: int) -> str:
        """A single-use login token for C{user_id}; expired ones are purged."""
        token = new_token("syl")
        batch = self.db.batch()
        for key in await self._expired_login_keys(now, limit=1000):
            batch.delete(LOGIN, key)
        batch.put(LOGIN, hash_token(token), _dumps({"user_id": user_id, "expires_at": expires_at}))
        await self.db.write(batch)
        return token

    async def purge_expired_login_tokens(self, now: int) -> int:
        """Delete every expired login token (one batch); returns how many."""
        keys = await self._expired_login_keys(now)
        if keys:
            batch = self.db.batch()
            for key in keys:
                batch.delete(LOGIN, key)
            await self.db.write(batch)
        return len(keys)

    async def _expired_login_keys(self, now: int, limit: int | None = None) -> list[bytes]:
        rows = await self.login.iter_from(b"", limit=limit)
        return [key for key, raw in rows if json.loads(raw)["expires_at"] <= now]

    async def consume_login_token(self, token: str, now: int) -> str | None:
        """The user a login token stands for (deleting it), or None if unknown or expired."""
        key = hash_token(token)
        raw = await self.login.get(key)
        if raw is None:
            return None
        await self.login.remove(key)
        data = json.loads(raw)
        if data["expires_at"] <= now:
            return None
        return data["user_id"]
