"""
Account registration (client-server-api "Account registration", "Token-
authenticated registration", "Guest Access").

Flows come from the config: with C{allow_registration} and a registration
token (C{registration_token} or C{registration_token_file}) the flow is
C{[m.login.registration_token, m.login.dummy]} (the dummy stage makes the
flow end on an explicit step, as clients such as matrix-nio expect);
open registration offers C{[m.login.dummy]}. Username problems
(M_INVALID_USERNAME, M_USER_IN_USE, M_EXCLUSIVE) are answered before UIA.

The first non-guest user registered on the server becomes a server admin.

Hooks: L{RegistrationHandler.exclusive_checks} (the appservice code adds a
callable telling whether a user ID is in an exclusive namespace, so
registration answers M_EXCLUSIVE) and L{RegistrationHandler.on_registered}
(e.g. auto-joining rooms, announcing the user to the admin room).

A UIA session of C{/register} remembers the parameters of its requests
(L{BOUND_PARAMS}): the first value given for each is kept, a later request
that gives a different one answers 403 M_FORBIDDEN, and one that leaves a
parameter out gets the remembered value (so the password or
C{inhibit_login} of the first request cannot be changed or lost on the
way). The session is kept after it completes, with the answer: a retried
request of a completed session (the response got lost) gets the same
answer again, and never makes a second account (client-server-api
"User-Interactive Authentication API": "servers must return [...] the
result of the API call if all the stages were completed when a client
retries a stage"). Concurrent retries wait for the first one. The
remembered values live in memory only, for the session's lifetime.

With C{inhibit_login} the answer has neither C{access_token} nor
C{device_id} and no device is made.

A guest upgrades by registering with C{guest_access_token} and its own
localpart as C{username}; it keeps its user ID (and so its rooms), its
guest sessions end, and the answer logs in a new device.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from twisted.internet.defer import Deferred, DeferredLock
from twisted.python.failure import Failure

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.handlers.uia import DUMMY, REGISTRATION_TOKEN, Session, StageFailed
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.users import Account
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.handlers.devices import DeviceHandler
    from conduit_tw.handlers.login import LoginHandler
    from conduit_tw.handlers.passwords import Passwords
    from conduit_tw.handlers.uia import UIA
    from conduit_tw.storage.stores.tokens import TokenStore
    from conduit_tw.storage.stores.registration_tokens import RegistrationTokenStore
    from conduit_tw.storage.stores.users import UserStore

log = get_logger("conduit_tw.registration")

#: appendices "User Identifiers": the localpart grammar (historical
#: upper-case IDs are not created here).
LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
MAX_USER_ID_BYTES = 255
MAX_PASSWORD_LENGTH = 1024

#: Request parameters a registration UIA session is bound to.
BOUND_PARAMS = (
    "username",
    "password",
    "guest_access_token",
    "inhibit_login",
    "device_id",
    "initial_device_display_name",
    "refresh_token",
)
#: The endpoint name of registration UIA sessions.
UIA_ENDPOINT = "register"
#: The login type appservices register their users with.
APPSERVICE = "m.login.application_service"

RegisteredHook = Callable[[str, bool], "Awaitable[None] | None"]


def _pattern(text: str) -> "re.Pattern[str]":
    """A C{forbidden_usernames} entry: a regex, or the literal text if it is not one."""
    try:
        return re.compile(text)
    except re.error:
        log.warn("forbidden_usernames: {text!r} is not a regular expression; matching it literally", text=text)
        return re.compile(re.escape(text))


@dataclass(frozen=True)
class RegistrationSettings:
    """The configuration values registration reads (C{HomeServer} copies them from the config)."""

    server_name: str
    #: C{allow_registration}.
    allow_registration: bool = False
    #: C{registration_token}, else the content of C{registration_token_file}.
    registration_token: str | None = None
    registration_token_file: str | None = None
    #: C{allow_guest_registration}, C{log_guest_registrations}.
    allow_guest_registration: bool = False
    log_guest_registrations: bool = False
    #: C{forbidden_usernames}: patterns refused as localparts.
    forbidden_usernames: tuple[str, ...] = ()
    #: C{new_user_displayname_suffix}.
    new_user_displayname_suffix: str = ""


class RegistrationHandler:
    """C{/register} and its helpers, plus L{create_user} for other code."""

    def __init__(
        self,
        config: RegistrationSettings,
        users: "UserStore",
        tokens: "TokenStore",
        devices: "DeviceHandler",
        passwords: "Passwords",
        uia: "UIA",
        login: "LoginHandler",
        clock_ms: Callable[[], int],
    ) -> None:
        self.config = config
        self.server_name = config.server_name
        self.users = users
        self.tokens = tokens
        self.devices = devices
        self.passwords = passwords
        self.uia = uia
        self.login = login
        self._clock_ms = clock_ms
        self._forbidden = [_pattern(p) for p in config.forbidden_usernames]
        self._token = self._load_token(config)
        #: The admins' registration tokens (C{!admin tokens}), if wired.
        self.dynamic_tokens: "RegistrationTokenStore | None" = None
        self._lock = DeferredLock()
        #: Callables C{user_id -> bool}: is it in an appservice's exclusive
        #: namespace? (filled by the appservice code).
        self.exclusive_checks: list[Callable[[str], bool]] = []
        #: C{(request, user_id) -> appservice ID} for C{m.login.application_service}
        #: registrations (raises 401 for a bad token, M_EXCLUSIVE outside
        #: its namespaces); set by the appservice code.
        self.appservice_check: Callable[[Any, str], Awaitable[str]] | None = None
        #: Async or sync C{(user_id, is_guest)} run after an account is made.
        self.on_registered: list[RegisteredHook] = []

    @staticmethod
    def _load_token(config: RegistrationSettings) -> str | None:
        if config.registration_token:
            return config.registration_token
        if config.registration_token_file:
            with open(config.registration_token_file, encoding="utf-8") as f:
                token = f.read().strip()
            return token or None
        return None

    # -- configuration

    @property
    def enabled(self) -> bool:
        """Whether users may register (C{allow_registration})."""
        return self.config.allow_registration

    def set_allow_registration(self, allow: bool) -> None:
        """Open or close registration until restart (the admin command)."""
        self.config = replace(self.config, allow_registration=allow)

    def flows(self) -> list[list[str]]:
        """The UIA flows of C{/register}."""
        if self._token is not None or (self.dynamic_tokens is not None and self.dynamic_tokens.has_any()):
            return [[REGISTRATION_TOKEN, DUMMY]]
        return [[DUMMY]]

    def token_valid(self, token: Any) -> bool:
        """Whether C{token} is the registration token (constant-time) or a valid admin-made one."""
        if not isinstance(token, str):
            return False
        if self._token is not None and hmac.compare_digest(
            token.encode("utf-8"), self._token.encode("utf-8")
        ):
            return True
        return self._dynamic_valid(token)

    def _dynamic_valid(self, token: str) -> bool:
        return self.dynamic_tokens is not None and self.dynamic_tokens.valid(token, self._clock_ms())

    async def _token_stage(self, auth: dict[str, Any], session: Session) -> None:
        token = auth.get("token")
        if not self.token_valid(token):
            raise StageFailed(Codes.FORBIDDEN, "Invalid registration token")
        if self._dynamic_valid(token) and token != self._token:
            # Counted as used once the registration completes (spec).
            session.data["registration_token"] = token

    # -- usernames

    def check_username(self, username: Any, exclusive: bool = True) -> str:
        """
        Turn a requested username into a free local user ID (lower-cased);
        appservice namespaces are checked unless not C{exclusive}.

        @raise MatrixError: 400 M_INVALID_USERNAME, M_EXCLUSIVE.
        """
        if not isinstance(username, str) or not username:
            raise MatrixError(400, Codes.INVALID_USERNAME, "Username must be a non-empty string")
        localpart = username.lower()
        if localpart.startswith("@") and localpart.endswith(":" + self.server_name.lower()):
            localpart = localpart[1 : -len(self.server_name) - 1]
        if not LOCALPART_RE.fullmatch(localpart):
            raise MatrixError(
                400,
                Codes.INVALID_USERNAME,
                "User ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
            )
        if localpart.isdigit():
            raise MatrixError(400, Codes.INVALID_USERNAME, "Numeric user IDs are reserved for guests")
        user_id = f"@{localpart}:{self.server_name}"
        if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID is too long")
        if any(p.search(localpart) for p in self._forbidden):
            raise MatrixError(400, Codes.INVALID_USERNAME, "This username is not allowed")
        if exclusive and any(check(user_id) for check in self.exclusive_checks):
            raise MatrixError(400, Codes.EXCLUSIVE, "This user ID is reserved by an application service")
        return user_id

    async def check_available(self, username: Any) -> str:
        """L{check_username} plus 400 M_USER_IN_USE if taken."""
        user_id = self.check_username(username)
        if await self.users.exists(user_id):
            raise MatrixError(400, Codes.USER_IN_USE, "Desired user ID is already taken.")
        return user_id

    async def _generate_user_id(self) -> str:
        while True:
            localpart = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
            if localpart.isdigit():
                continue
            user_id = f"@{localpart}:{self.server_name}"
            if not await self.users.exists(user_id) and not any(c(user_id) for c in self.exclusive_checks):
                return user_id

    # -- creating accounts

    async def create_user(
        self,
        user_id: str,
        password: str | None,
        *,
        is_guest: bool = False,
        displayname: str | None = None,
        appservice_id: str | None = None,
        first_user_becomes_admin: bool = True,
    ) -> Account:
        """
        Create a local account (also for the admin command and appservices).

        The display name defaults to the localpart plus
        C{new_user_displayname_suffix} (for non-guests). The first non-guest,
        non-appservice account so created becomes a server admin; code that
        makes service accounts (the admin-room bot) passes
        C{first_user_becomes_admin=False} so it does not take that place.

        @raise MatrixError: 400 M_USER_IN_USE if the ID is taken.
        """
        password_hash = await self.passwords.hash(password) if password else None
        if displayname is None:
            displayname = user_id[1:].split(":", 1)[0]
            suffix = self.config.new_user_displayname_suffix
            if suffix and not is_guest:
                displayname = f"{displayname} {suffix}"
        async with self._lock:
            if await self.users.exists(user_id):
                raise MatrixError(400, Codes.USER_IN_USE, "Desired user ID is already taken.")
            make_admin = (
                first_user_becomes_admin
                and not is_guest
                and appservice_id is None
                and not await self.users.admin_assigned()
            )
            account = Account(
                user_id=user_id,
                password_hash=password_hash,
                created_ts=self._clock_ms(),
                is_guest=is_guest,
                is_admin=make_admin,
                appservice_id=appservice_id,
            )
            await self.users.create_account(
                account, mark_admin_assigned=make_admin, displayname=displayname
            )
        if make_admin:
            log.info("{user_id} is the first user and has been made a server admin", user_id=user_id)
        await run_hooks(self.on_registered, user_id, is_guest, what="on_registered")
        return account

    # -- the endpoint

    async def register(
        self, body: dict[str, Any], kind: str, ip: str, request: Any = None
    ) -> dict[str, Any]:
        """
        C{POST /register} for C{kind} C{user} or C{guest}.

        @raise MatrixError: 403 M_FORBIDDEN when that kind is not allowed,
            400 for username problems, 401 (L{InteractiveAuthRequired}).
        """
        if kind == "guest":
            return await self._register_guest(body, ip)
        if kind != "user":
            raise MatrixError(400, Codes.INVALID_PARAM, "kind must be 'user' or 'guest'")
        auth = body.get("auth")
        if body.get("type") == APPSERVICE or (isinstance(auth, dict) and auth.get("type") == APPSERVICE):
            return await self._register_appservice_user(body, ip, request)
        if not self.enabled:
            raise forbidden("Registration has been disabled")

        sid = auth.get("session") if isinstance(auth, dict) else None
        known = self.uia.get_session(sid) if isinstance(sid, str) else None
        if known is not None and known.endpoint == UIA_ENDPOINT and known.user_id is None:
            body = {**body, **self._bind(known, body, store=False)}
            outcome = self._outcome(known)
            if outcome is not None:
                # A retry of a completed registration: the same answer.
                return await outcome

        password = body.get("password")
        if password is not None and (not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid password")
        inhibit_login = body.get("inhibit_login") is True
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        if not inhibit_login:
            from conduit_tw.handlers.devices import check_device_id, check_display_name

            if device_id is not None:
                check_device_id(device_id)
            check_display_name(display_name)
        username = body.get("username")
        guest_token = body.get("guest_access_token")
        upgrade = guest_token is not None
        if upgrade:
            # Guest Access: a guest becomes a full user, keeping its ID.
            user_id = await self._guest_to_upgrade(guest_token, username)
        else:
            # Spec: username problems are answered before UIA.
            user_id = await self.check_available(username) if username is not None else None

        def remember(session: Session) -> None:
            self._bind(session, body)

        if known is not None and known.endpoint == UIA_ENDPOINT and known.user_id is None:
            remember(known)

        session = await self.uia.authenticate(
            body,
            UIA_ENDPOINT,
            self.flows(),
            checkers={REGISTRATION_TOKEN: self._token_stage},
            on_new_session=remember,
            keep=True,
        )
        outcome = self._outcome(session)
        if outcome is not None:
            return await outcome
        waiters: list[Deferred[dict[str, Any]]] = []
        session.data["outcome"] = waiters
        try:
            result = await self._finish(
                body, user_id, upgrade, password, inhibit_login, device_id, display_name, ip
            )
        except BaseException:
            failure = Failure()
            session.data.pop("outcome", None)
            for d in waiters:
                d.errback(failure)
            raise
        session.data["outcome"] = result
        used = session.data.pop("registration_token", None)
        if used is not None and self.dynamic_tokens is not None:
            await self.dynamic_tokens.use(used)
        for d in waiters:
            d.callback(dict(result))
        return dict(result)

    @staticmethod
    def _bind(session: Session, body: dict[str, Any], store: bool = True) -> dict[str, Any]:
        """
        Remember C{body}'s L{BOUND_PARAMS} in C{session} (unless not
        C{store}): the first value of each is kept; a different later value
        is refused.

        @return: every remembered parameter.
        @raise MatrixError: 403 M_FORBIDDEN when a parameter changed.
        """
        remembered: dict[str, Any] = session.data.setdefault("params", {})
        bound = remembered if store else dict(remembered)
        for key in BOUND_PARAMS:
            value = body.get(key)
            if value is None:
                continue
            if key not in bound:
                bound[key] = value
            elif not _same(bound[key], value):
                raise forbidden(
                    "Requested operation has changed during the UI authentication session"
                )
        return dict(bound)

    @staticmethod
    def _outcome(session: Session) -> "Deferred[dict[str, Any]] | None":
        """The answer of the session's registration, once it has started."""
        state = session.data.get("outcome")
        if state is None:
            return None
        d: Deferred[dict[str, Any]] = Deferred()
        if isinstance(state, list):
            state.append(d)  # still running: wait for it
        else:
            d.callback(dict(state))
        return d

    async def _finish(
        self,
        body: dict[str, Any],
        user_id: str | None,
        upgrade: bool,
        password: str | None,
        inhibit_login: bool,
        device_id: str | None,
        display_name: str | None,
        ip: str,
    ) -> dict[str, Any]:
        """Make (or upgrade) the account and log it in unless inhibited."""
        if upgrade:
            assert user_id is not None
            await self.users.update_account(
                user_id,
                is_guest=False,
                password_hash=await self.passwords.hash(password) if password else None,
            )
            # Guest tokens carry the guest restrictions: end those sessions.
            await self.devices.delete_all_devices(user_id)
        else:
            if user_id is None:
                user_id = await self._generate_user_id()
            await self.create_user(user_id, password or None)
        result: dict[str, Any] = {"user_id": user_id, "home_server": self.server_name}
        if inhibit_login:
            return result
        refresh = body.get("refresh_token") is True
        session = await self.devices.create_session(
            user_id,
            device_id,
            display_name,
            ip=ip,
            expires_in_ms=self.login.access_token_lifetime_ms if refresh else None,
            with_refresh=refresh,
        )
        result.update(session)
        return result

    async def _register_appservice_user(
        self, body: dict[str, Any], ip: str, request: Any
    ) -> dict[str, Any]:
        """
        Registration by an appservice (application-service-api "Server
        admin style permissions"): no UIA, not subject to
        C{allow_registration}, only users of its own namespaces.
        """
        if self.appservice_check is None:
            raise MatrixError(400, Codes.UNKNOWN, "Application service registration is not supported")
        username = body.get("username")
        if not isinstance(username, str) or not username:
            raise MatrixError(400, Codes.INVALID_USERNAME, "Appservice registration needs a 'username'")
        localpart = username.lower()
        if localpart.startswith("@"):
            localpart = localpart[1:].partition(":")[0]
        user_id = f"@{localpart}:{self.server_name}"
        appservice_id = await self.appservice_check(request, user_id)
        # The usual username rules, except exclusivity, which is this
        # appservice's own right here.
        user_id = self.check_username(localpart, exclusive=False)
        await self.create_user(user_id, None, appservice_id=appservice_id)
        result: dict[str, Any] = {"user_id": user_id, "home_server": self.server_name}
        if body.get("inhibit_login") is True:
            return result
        session = await self.devices.create_session(
            user_id,
            body.get("device_id"),
            body.get("initial_device_display_name"),
            ip=ip,
            appservice_id=appservice_id,
        )
        result.update(session)
        return result

    async def _guest_to_upgrade(self, guest_token: Any, username: Any) -> str:
        """The guest a C{guest_access_token} upgrade is for (403 if not a guest)."""
        info = await self.tokens.lookup(guest_token) if isinstance(guest_token, str) else None
        if info is None or not info.is_guest:
            raise forbidden("Invalid guest access token")
        account = await self.users.get_account(info.user_id)
        if account is None or not account.is_guest or account.deactivated:
            raise forbidden("Invalid guest access token")
        localpart = info.user_id[1:].split(":", 1)[0]
        if username != localpart:
            raise MatrixError(
                400, Codes.INVALID_USERNAME, "username must be the guest's localpart when upgrading"
            )
        return info.user_id

    async def _register_guest(self, body: dict[str, Any], ip: str) -> dict[str, Any]:
        """Guests: every parameter but the device name is ignored (spec)."""
        if not self.config.allow_guest_registration:
            raise forbidden("Guest access is disabled")
        display_name = body.get("initial_device_display_name")
        if not isinstance(display_name, str):
            display_name = None
        while True:
            number = await self.users.next_guest_number()
            user_id = f"@{number}:{self.server_name}"
            if not await self.users.exists(user_id):
                break
        await self.create_user(user_id, None, is_guest=True, displayname=str(number))
        if self.config.log_guest_registrations:
            log.info("Guest {user_id} registered from {ip}", user_id=user_id, ip=ip)
        session = await self.devices.create_session(
            user_id, None, display_name[:100] if display_name else None, is_guest=True, ip=ip
        )
        return {"user_id": user_id, "home_server": self.server_name, **session}

    async def token_validity(self, token: Any) -> dict[str, bool]:
        """C{GET /register/m.login.registration_token/validity}."""
        if not self.enabled:
            raise forbidden("Registration is not enabled on this homeserver.")
        if not isinstance(token, str):
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'token'")
        return {"valid": self.token_valid(token)}


def _same(a: Any, b: Any) -> bool:
    """Whether two request values are equal (strings compared in constant time)."""
    if isinstance(a, str) and isinstance(b, str):
        return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
    return type(a) is type(b) and a == b
