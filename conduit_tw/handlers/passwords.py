"""
Password hashing with argon2id (argon2-cffi).

Hashing and verifying are slow by design (tens of milliseconds and 64 MiB
of memory with the default RFC 9106 "low memory" profile), so both run in
the reactor's thread pool and never block other requests. Verification is
constant-time in argon2; for an unknown user we still verify against a
dummy hash, so response time does not tell whether an account exists.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet import threads

T = TypeVar("T")


class Passwords:
    """Hash and check passwords off the reactor thread."""

    def __init__(self, reactor: Any, hasher: PasswordHasher | None = None) -> None:
        self._reactor = reactor
        #: argon2id, t=3, m=64 MiB, p=4 (argon2-cffi's RFC 9106 low-memory
        #: profile). Tests may swap in a cheaper hasher.
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        pool = getattr(self._reactor, "getThreadPool", None)
        if pool is None:
            return fn(*args)
        return await threads.deferToThreadPool(self._reactor, pool(), fn, *args)

    async def hash(self, password: str) -> str:
        """The PHC-format argon2id hash of C{password}."""
        return await self._in_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """
        Whether C{password} matches C{password_hash}. A None hash (unknown
        user, or an account without password) is checked against a dummy
        hash and is never a match.
        """
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a password of anyone")
            await self._in_thread(self._check, self._dummy_hash, password)
            return False
        return await self._in_thread(self._check, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than today's."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
