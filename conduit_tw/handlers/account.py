"""
Account management (client-server-api "Password management", "Account
deactivation", "Current account information").

Deactivation removes every device and token, the password and the admin
flag, erases the profile when C{erase} is asked for, and keeps the account
record marked deactivated so the user ID can never be registered again and
logins answer M_USER_DEACTIVATED.

Hook: L{AccountHandler.on_deactivated} is where the rooms code makes the
user leave every room (and reject invites), and where other domains drop
the user's data (account data, pushers, keys ...) when C{erase} is true.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.registration import MAX_PASSWORD_LENGTH
from conduit_tw.handlers.uia import PASSWORD
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.devices import DeviceHandler
    from conduit_tw.handlers.passwords import Passwords
    from conduit_tw.handlers.uia import UIA
    from conduit_tw.storage.stores.users import UserStore

#: C{(user_id, erase)}.
DeactivatedHook = Callable[[str, bool], "Awaitable[None] | None"]


class AccountHandler:
    """Password change, deactivation, whoami."""

    def __init__(
        self,
        users: "UserStore",
        devices: "DeviceHandler",
        passwords: "Passwords",
        uia: "UIA",
    ) -> None:
        self.users = users
        self.devices = devices
        self.passwords = passwords
        self.uia = uia
        #: Async or sync callables C{(user_id, erase)} run after deactivation.
        self.on_deactivated: list[DeactivatedHook] = []

    @staticmethod
    def whoami(requester: "Requester") -> dict[str, Any]:
        """C{GET /account/whoami}."""
        out: dict[str, Any] = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id:
            out["device_id"] = requester.device_id
        return out

    async def change_password(self, requester: "Requester", body: dict[str, Any]) -> None:
        """C{POST /account/password} (UIA: C{m.login.password})."""
        new_password = body.get("new_password")
        if not isinstance(new_password, str) or not new_password:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'new_password'")
        if len(new_password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, Codes.INVALID_PARAM, "Password is too long")
        logout_devices = body.get("logout_devices", True)
        if not isinstance(logout_devices, bool):
            raise MatrixError(400, Codes.BAD_JSON, "'logout_devices' must be a boolean")
        await self.uia.authenticate(body, "account/password", [[PASSWORD]], user_id=requester.user_id)
        password_hash = await self.passwords.hash(new_password)
        await self.users.update_account(requester.user_id, password_hash=password_hash)
        if logout_devices:
            await self.devices.delete_all_devices(requester.user_id, except_device=requester.device_id)

    async def deactivate_request(self, requester: "Requester", body: dict[str, Any]) -> dict[str, Any]:
        """C{POST /account/deactivate} (UIA: C{m.login.password})."""
        erase = body.get("erase", False)
        if not isinstance(erase, bool):
            raise MatrixError(400, Codes.BAD_JSON, "'erase' must be a boolean")
        await self.uia.authenticate(body, "account/deactivate", [[PASSWORD]], user_id=requester.user_id)
        await self.deactivate(requester.user_id, erase)
        # No third-party identifiers are ever bound here.
        return {"id_server_unbind_result": "success"}

    async def deactivate(self, user_id: str, erase: bool = False) -> None:
        """Deactivate a local account (also used by admin commands)."""
        account = await self.users.get_account(user_id)
        if account is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown user")
        await self.users.update_account(user_id, deactivated=True, password_hash=None, is_admin=False)
        await self.devices.delete_all_devices(user_id)
        if erase:
            await self.users.erase_profile(user_id)
        await run_hooks(self.on_deactivated, user_id, erase, what="on_deactivated")
