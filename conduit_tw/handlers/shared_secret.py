"""
Shared-secret registration, as Synapse's admin API documents it
(C{GET}/C{POST /_synapse/admin/v1/register}), so that Synapse's
C{register_new_matrix_user} script and existing tooling create users (and
admins) here.

C{GET} hands out a nonce (single use, valid L{NONCE_TTL_MS}); C{POST} takes
C{nonce}, C{username}, C{password}, C{admin}, optional C{displayname} and
C{user_type}, and C{mac}: the hex HMAC-SHA1, keyed with the shared secret,
of C{nonce NUL username NUL password NUL ("admin" | "notadmin")} (plus
C{NUL user_type} when one is given). The new account is logged in (a new
device) and, with C{admin}, made a server admin (joined to the admin room).
The secret is C{registration_shared_secret}, or read from
C{registration_shared_secret_path} when the configuration loads
(L{conduit_tw.config.registration.load_shared_secret}).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden

if TYPE_CHECKING:
    from conduit_tw.handlers.devices import DeviceHandler
    from conduit_tw.handlers.registration import RegistrationHandler

#: How long a nonce may be used (Synapse: 60 seconds).
NONCE_TTL_MS = 60_000
#: Nonces kept at most (older ones are dropped first).
MAX_NONCES = 1000
#: Longest password accepted (Synapse's limit).
MAX_PASSWORD_LENGTH = 512


def compute_mac(
    secret: bytes, nonce: str, username: str, password: str, admin: bool, user_type: str | None = None
) -> str:
    """The hex HMAC-SHA1 a client sends (see the module docstring)."""
    mac = hmac.new(secret, digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8") + b"\x00" + username.encode("utf-8") + b"\x00")
    mac.update(password.encode("utf-8") + b"\x00" + (b"admin" if admin else b"notadmin"))
    if user_type:
        mac.update(b"\x00" + user_type.encode("utf-8"))
    return mac.hexdigest()


class SharedSecretRegistration:
    """See the module docstring."""

    def __init__(
        self,
        secret: bytes | None,
        registration: "RegistrationHandler",
        devices: "DeviceHandler",
        make_admin: Callable[[str], Awaitable[None]],
        clock_ms: Callable[[], int],
    ) -> None:
        self.secret = secret
        self.registration = registration
        self.devices = devices
        self.make_admin = make_admin
        self.clock_ms = clock_ms
        #: nonce -> time handed out (ms), oldest first.
        self._nonces: dict[str, int] = {}

    def _check_enabled(self) -> bytes:
        if self.secret is None:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        return self.secret

    def _expire(self, now: int) -> None:
        for nonce, issued in list(self._nonces.items()):
            if now - issued <= NONCE_TTL_MS and len(self._nonces) <= MAX_NONCES:
                break
            del self._nonces[nonce]

    def new_nonce(self) -> str:
        """A fresh nonce for one registration."""
        self._check_enabled()
        now = self.clock_ms()
        self._expire(now)
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    async def register(
        self,
        nonce: str,
        username: str,
        password: str,
        mac: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
        user_type: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Check the nonce and MAC, create the account and log it in."""
        secret = self._check_enabled()
        self._expire(self.clock_ms())
        if self._nonces.pop(nonce, None) is None:
            raise MatrixError(400, Codes.UNKNOWN, "Unrecognised nonce")
        if not password or len(password) > MAX_PASSWORD_LENGTH or "\x00" in password:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid password")
        if "\x00" in username:
            raise MatrixError(400, Codes.INVALID_USERNAME, "Invalid username")
        expected = compute_mac(secret, nonce, username, password, admin, user_type)
        if not hmac.compare_digest(expected.encode("ascii"), mac.lower().encode("utf-8")):
            raise forbidden("HMAC incorrect")
        user_id = self.registration.check_username(username)
        await self.registration.create_user(user_id, password, displayname=displayname)
        if admin:
            await self.make_admin(user_id)
        session = await self.devices.create_session(user_id, None, None, ip=ip)
        return {"user_id": user_id, "home_server": self.registration.server_name, **session}
