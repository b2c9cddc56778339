"""
Local accounts and their profiles.

Layout::

    userid_account   user_id                  -> JSON L{Account}
    userprofile      user_id 0xFF field name  -> JSON value of that profile field
    users_meta       b"admin_assigned"        -> b"1" once the first admin was made
    users_meta       b"guest_counter"         -> u64: last numeric guest localpart

An account is never deleted: deactivation keeps the record (with no
password and C{deactivated} set) so the user ID can never be registered
again. Profile fields are one key each, so reading or writing a display
name is one key access and the whole profile is one prefix scan.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, join

ACCOUNTS = "userid_account"
PROFILES = "userprofile"
META = "users_meta"

_ADMIN_ASSIGNED = b"admin_assigned"
_GUEST_COUNTER = b"guest_counter"


@dataclass(frozen=True)
class Account:
    """One local account."""

    user_id: str
    #: The argon2 hash (PHC string), or None: no password login possible.
    password_hash: str | None = None
    created_ts: int = 0
    is_guest: bool = False
    is_admin: bool = False
    deactivated: bool = False
    #: The appservice that registered the user, if any.
    appservice_id: str | None = None

    def to_bytes(self) -> bytes:
        """The stored form."""
        return json.dumps(asdict(self), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Account":
        """Parse the stored form (unknown keys from newer versions ignored)."""
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class UserStore:
    """Accounts, admin flags and profile fields of local users."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.accounts = db.open_tree(ACCOUNTS)
        self.profiles = db.open_tree(PROFILES)
        self.meta = db.open_tree(META)
        # Admin flags are read on every rate-limited request; they change
        # rarely, so they are cached (and updated by every write here).
        self._admin_cache: dict[str, bool] = {}

    # -- accounts

    async def get_account(self, user_id: str) -> Account | None:
        """The account, or None if the user ID was never registered here."""
        raw = await self.accounts.get(user_id.encode("utf-8"))
        return Account.from_bytes(raw) if raw is not None else None

    async def exists(self, user_id: str) -> bool:
        """Whether the user ID is taken (deactivated accounts included)."""
        return await self.accounts.get(user_id.encode("utf-8")) is not None

    def put_account_in_batch(self, batch: Any, account: Account) -> None:
        """Write C{account} in C{batch}."""
        batch.put(ACCOUNTS, account.user_id.encode("utf-8"), account.to_bytes())

    async def put_account(self, account: Account) -> None:
        """Write C{account} now."""
        batch = self.db.batch()
        self.put_account_in_batch(batch, account)
        await self.db.write(batch)
        self._admin_cache[account.user_id] = account.is_admin

    def note_written(self, account: Account) -> None:
        """Tell the cache about an account written through a batch."""
        self._admin_cache[account.user_id] = account.is_admin

    async def update_account(self, user_id: str, **changes: Any) -> Account:
        """Change fields of an existing account and return the new record."""
        account = await self.get_account(user_id)
        if account is None:
            raise KeyError(user_id)
        account = replace(account, **changes)
        await self.put_account(account)
        return account

    async def is_admin(self, user_id: str) -> bool:
        """Whether the user is a server admin (cached)."""
        cached = self._admin_cache.get(user_id)
        if cached is not None:
            return cached
        account = await self.get_account(user_id)
        value = bool(account and account.is_admin and not account.deactivated)
        if len(self._admin_cache) > 100_000:
            self._admin_cache.clear()
        self._admin_cache[user_id] = value
        return value

    async def set_admin(self, user_id: str, admin: bool) -> None:
        """Grant or revoke server admin rights."""
        await self.update_account(user_id, is_admin=admin)

    async def list_user_ids(self) -> list[str]:
        """Every local user ID (deactivated ones included), sorted."""
        rows = await self.accounts.iter_from(b"\x00")
        return [k.decode("utf-8") for k, _ in rows]

    # -- bookkeeping

    async def admin_assigned(self) -> bool:
        """Whether the first registered user has already been made admin."""
        return await self.meta.get(_ADMIN_ASSIGNED) is not None

    def mark_admin_assigned_in_batch(self, batch: Any) -> None:
        """Record in C{batch} that the first admin exists."""
        batch.put(META, _ADMIN_ASSIGNED, b"1")

    async def next_guest_number(self) -> int:
        """A fresh number for a guest localpart."""
        return await self.meta.increment(_GUEST_COUNTER)

    # -- profiles

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """Every profile field of the user (empty if none)."""
        prefix = join(user_id, b"")
        rows = await self.profiles.scan_prefix(prefix)
        return {k[len(prefix):].decode("utf-8"): json.loads(v) for k, v in rows}

    async def get_profile_field(self, user_id: str, field: str) -> tuple[bool, Any]:
        """C{(present, value)} of one profile field."""
        raw = await self.profiles.get(join(user_id, field))
        if raw is None:
            return False, None
        return True, json.loads(raw)

    def set_profile_field_in_batch(self, batch: Any, user_id: str, field: str, value: Any) -> None:
        """Set one profile field in C{batch}."""
        batch.put(PROFILES, join(user_id, field), _dumps(value))

    def delete_profile_field_in_batch(self, batch: Any, user_id: str, field: str) -> None:
        """Remove one profile field in C{batch}."""
        batch.delete(PROFILES, join(user_id, field))

    async def set_profile_field(self, user_id: str, field: str, value: Any) -> None:
        """Set one profile field now."""
        batch = self.db.batch()
        self.set_profile_field_in_batch(batch, user_id, field, value)
        await self.db.write(batch)

    async def delete_profile_field(self, user_id: str, field: str) -> None:
        """Remove one profile field now."""
        batch = self.db.batch()
        self.delete_profile_field_in_batch(batch, user_id, field)
        await self.db.write(batch)

    async def create_account(
        self, account: Account, *, mark_admin_assigned: bool = False, displayname: str | None = None
    ) -> None:
        """
        Write a new account in one batch, with (when asked) the first-admin
        mark and an initial display name, and update the admin cache.
        """
        batch = self.db.batch()
        self.put_account_in_batch(batch, account)
        if mark_admin_assigned:
            self.mark_admin_assigned_in_batch(batch)
        if displayname:
            self.set_profile_field_in_batch(batch, account.user_id, "displayname", displayname)
        await self.db.write(batch)
        self.note_written(account)

    async def erase_profile(self, user_id: str) -> None:
        """Remove every profile field of the user, in one batch."""
        batch = self.db.batch()
        await self.erase_profile_in_batch(batch, user_id)
        if len(batch):
            await self.db.write(batch)

    async def erase_profile_in_batch(self, batch: Any, user_id: str) -> None:
        """Remove every profile field of the user in C{batch}."""
        prefix = user_id.encode("utf-8") + SEP
        for key, _ in await self.profiles.scan_prefix(prefix):
            batch.delete(PROFILES, key)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
