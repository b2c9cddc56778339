"""
Logging in and out (client-server-api "Login", "Refreshing access tokens",
"Soft logout", and C{POST /login/get_token} of v1.7).

Login types: C{m.login.password} (identifier C{m.id.user} with a full or
local user ID, or the deprecated top-level C{user}), C{m.login.token}
(single-use, short-lived tokens from C{/login/get_token}),
C{m.login.application_service}, which is answered 400 M_UNKNOWN until an
appservice checker is installed in L{LoginHandler.appservice_login}, and
C{org.matrix.login.jwt} when C{jwt_secret} is set
(L{conduit_tw.handlers.jwt_login}; a JWT sent as C{m.login.token}, as
Conduit expects it, is accepted too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.handlers.uia import Session, StageFailed

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.devices import DeviceHandler
    from conduit_tw.handlers.passwords import Passwords
    from conduit_tw.storage.stores.tokens import TokenStore
    from conduit_tw.storage.stores.users import UserStore

LOGIN_PASSWORD = "m.login.password"
LOGIN_TOKEN = "m.login.token"
LOGIN_APPSERVICE = "m.login.application_service"
LOGIN_JWT = "org.matrix.login.jwt"

#: Lifetime of tokens from /login/get_token (the spec recommends 2 minutes).
LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000
#: Lifetime of access tokens given to clients that support refresh tokens.
REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS = 60 * 60 * 1000

#: C{(request, user_id) -> appservice ID}: checks the request's as_token and
#: the namespace, raising M_FORBIDDEN or M_EXCLUSIVE. Installed by the
#: appservice code.
AppserviceLoginCheck = Callable[[Any, str], Awaitable[str]]

_BAD_LOGIN = "Invalid username or password"


def resolve_user(value: Any, server_name: str) -> str | None:
    """
    The local user ID meant by a C{m.id.user} value (a full user ID or a
    localpart), lower-cased; None when it names no possible local user.
    """
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("@"):
        localpart, sep, server = value[1:].partition(":")
        if not sep or server != server_name:
            return None
    else:
        localpart = value
    if not localpart:
        return None
    return f"@{localpart.lower()}:{server_name}"


def user_from_identifier(body: dict[str, Any], server_name: str) -> str | None:
    """
    The user a login/UIA dict identifies (C{identifier} or legacy C{user}).

    @raise MatrixError: 403 M_FORBIDDEN for third-party identifiers (this
        server knows none), 400 for malformed identifiers.
    """
    identifier = body.get("identifier")
    if identifier is None:
        if "medium" in body or "address" in body:
            raise forbidden("Unknown third-party identifier")
        return resolve_user(body.get("user"), server_name)
    if not isinstance(identifier, dict):
        raise MatrixError(400, Codes.BAD_JSON, "'identifier' must be an object")
    kind = identifier.get("type")
    if kind == "m.id.user":
        return resolve_user(identifier.get("user"), server_name)
    if kind in ("m.id.thirdparty", "m.id.phone"):
        raise forbidden("Unknown third-party identifier")
    raise MatrixError(400, Codes.UNKNOWN, "Unknown identifier type")


class LoginHandler:
    """Login, token refresh and logout."""

    def __init__(
        self,
        server_name: str,
        users: "UserStore",
        tokens: "TokenStore",
        devices: "DeviceHandler",
        passwords: "Passwords",
        clock_ms: Callable[[], int],
        well_known_client: dict[str, Any] | None = None,
    ) -> None:
        self.server_name = server_name
        self.users = users
        self.tokens = tokens
        self.devices = devices
        self.passwords = passwords
        self._clock_ms = clock_ms
        self.well_known = well_known_client
        self.access_token_lifetime_ms = REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS
        self.login_token_lifetime_ms = LOGIN_TOKEN_LIFETIME_MS
        #: Set by the appservice code: C{await check(request, user_id)}
        #: returns the appservice ID or raises M_FORBIDDEN / M_EXCLUSIVE.
        self.appservice_login: AppserviceLoginCheck | None = None
        #: Limiter of failed password logins per account (set by the
        #: HomeServer from C{rc_login_*}); guards against brute force from
        #: many addresses.
        self.failed_login_limiter: Any = None
        #: C{await jwt_login(token)} -> the user a JSON Web Token names
        #: (L{conduit_tw.handlers.jwt_login.JWTLogin.user_for}); None when
        #: C{jwt_secret} is not set.
        self.jwt_login: Callable[[str], Awaitable[str]] | None = None

    def flows(self) -> list[dict[str, Any]]:
        """
        The C{GET /login} flows. C{m.login.application_service} is offered
        only once an appservice checker is installed, so clients are not
        told about a login type that cannot succeed.
        """
        flows: list[dict[str, Any]] = [
            {"type": LOGIN_PASSWORD},
            {"type": LOGIN_TOKEN, "get_login_token": True},
        ]
        if self.appservice_login is not None:
            flows.append({"type": LOGIN_APPSERVICE})
        if self.jwt_login is not None:
            flows.append({"type": LOGIN_JWT})
        return flows

    async def check_password(self, user_id: str | None, password: Any) -> str:
        """
        Verify a password (constant time; unknown users cost the same).

        @return: the user ID.
        @raise MatrixError: 403 M_FORBIDDEN for a wrong user or password,
            403 M_USER_DEACTIVATED for a deactivated account, but only once
            the password is right: a caller without it must not learn that
            the account exists.
        """
        if not isinstance(password, str):
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing or invalid 'password'")
        account = await self.users.get_account(user_id) if user_id else None
        stored = account.password_hash if account is not None else None
        if not await self.passwords.verify(stored, password) or account is None:
            raise forbidden(_BAD_LOGIN)
        if account.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        if stored is not None and self.passwords.needs_rehash(stored):
            await self.users.update_account(account.user_id, password_hash=await self.passwords.hash(password))
        return account.user_id

    async def password_stage(self, auth: dict[str, Any], session: Session) -> None:
        """The UIA C{m.login.password} checker: the session's user's password."""
        try:
            user_id = user_from_identifier(auth, self.server_name)
        except MatrixError as e:
            raise StageFailed(e.errcode, e.msg) from None
        if session.user_id is None or user_id != session.user_id:
            # Always spend the hashing time, then refuse.
            await self.passwords.verify(None, auth.get("password") if isinstance(auth.get("password"), str) else "")
            raise StageFailed(Codes.FORBIDDEN, _BAD_LOGIN)
        try:
            await self.check_password(user_id, auth.get("password"))
        except MatrixError as e:
            if e.code in (400, 429):  # bad request, or too many hashes waiting
                raise
            raise StageFailed(Codes.FORBIDDEN, e.msg) from None

    async def login(self, body: dict[str, Any], request: Any, ip: str) -> dict[str, Any]:
        """C{POST /login}: check the credentials, then create a session."""
        kind = body.get("type")
        appservice_id = None
        if kind == LOGIN_PASSWORD:
            target = user_from_identifier(body, self.server_name)
            limiter = self.failed_login_limiter
            if limiter is not None and target is not None:
                limiter.check(target, update=False)
            try:
                user_id = await self.check_password(target, body.get("password"))
            except MatrixError as e:
                if limiter is not None and target is not None and e.errcode == Codes.FORBIDDEN:
                    limiter.take(target)
                raise
        elif kind == LOGIN_TOKEN:
            token = body.get("token")
            if not isinstance(token, str):
                raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'token'")
            found = await self.tokens.consume_login_token(token, self._clock_ms())
            if found is None and self.jwt_login is not None and token.count(".") == 2:
                found = await self.jwt_login(token)  # Conduit's way of sending a JWT
            if found is None:
                raise forbidden("Invalid login token")
            user_id = found
        elif kind == LOGIN_JWT and self.jwt_login is not None:
            token = body.get("token")
            if not isinstance(token, str):
                raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'token'")
            user_id = await self.jwt_login(token)
        elif kind == LOGIN_APPSERVICE:
            if self.appservice_login is None:
                raise MatrixError(400, Codes.UNKNOWN, "Application service login is not supported yet")
            user_id = user_from_identifier(body, self.server_name) or ""
            appservice_id = await self.appservice_login(request, user_id)
        else:
            raise MatrixError(400, Codes.UNKNOWN, "Bad login type.")

        account = await self.users.get_account(user_id)
        if account is None:
            raise forbidden(_BAD_LOGIN)
        if account.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        refresh = body.get("refresh_token") is True
        session = await self.devices.create_session(
            user_id,
            device_id,
            display_name,
            is_guest=account.is_guest,
            ip=ip,
            expires_in_ms=self.access_token_lifetime_ms if refresh else None,
            with_refresh=refresh,
            appservice_id=appservice_id,
        )
        result: dict[str, Any] = {"user_id": user_id, "home_server": self.server_name, **session}
        if self.well_known is not None:
            result["well_known"] = self.well_known
        return result

    async def create_login_token(self, requester: "Requester") -> dict[str, Any]:
        """C{POST /login/get_token} after UIA: a single-use token."""
        now = self._clock_ms()
        token = await self.tokens.create_login_token(
            requester.user_id, now + self.login_token_lifetime_ms, now
        )
        return {"login_token": token, "expires_in_ms": self.login_token_lifetime_ms}

    async def refresh(self, body: dict[str, Any]) -> dict[str, Any]:
        """C{POST /refresh}: rotate the access and refresh token."""
        token = body.get("refresh_token")
        if not isinstance(token, str):
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'refresh_token'")
        now = self._clock_ms()
        rotated = await self.tokens.rotate_refresh(token, now + self.access_token_lifetime_ms)
        if rotated is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown refresh token", soft_logout=False)
        _, access, refresh = rotated
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in_ms": self.access_token_lifetime_ms,
        }

    async def logout(self, requester: "Requester") -> None:
        """C{POST /logout}: delete the device, and so its tokens."""
        if requester.device_id:
            await self.devices.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, requester: "Requester") -> None:
        """C{POST /logout/all}: delete every device of the user."""
        await self.devices.delete_all_devices(requester.user_id)
