"""
Application services known to the server, and what their tokens may do
(application-service-api "Registration", "Client-Server API Extensions").

L{AppserviceHandler} is the registry: registrations from the admin room
(L{AppserviceHandler.register}, L{unregister}, L{list}, L{show}; stored,
effective at once) and from C{app_service_config_files} (read at each
start, never stored, so they cannot be unregistered from the admin room).
It answers:

- Identity assertion: an C{as_token} authenticates as the appservice's
  sender, or as C{?user_id=} when that user is in one of its user
  namespaces (403 M_FORBIDDEN otherwise, or when the user is not
  registered), on C{?device_id=} when that device is the user's (400
  M_UNKNOWN_DEVICE otherwise; v1.17, "Identity assertion").
- C{m.login.application_service} for C{/login} and C{/register}: the user
  must be in the appservice's user namespaces (400 M_EXCLUSIVE); a
  missing or unknown token is 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN.
- Exclusivity: users and aliases in another appservice's exclusive
  namespace are refused to everyone else with 400 M_EXCLUSIVE.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from conduit_tw.appservice.client import AppserviceUnavailable
from conduit_tw.appservice.registration import Registration, RegistrationError, parse_registration
from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.handlers.auth import Requester
from conduit_tw.logging import get_logger
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.appservice.client import AppserviceClient
    from conduit_tw.storage.stores.appservices import AppserviceStore
    from conduit_tw.storage.stores.devices import DeviceStore
    from conduit_tw.storage.stores.users import UserStore

log = get_logger("conduit_tw.appservices")

#: C{(user_id, password, appservice_id=...) -> account}: makes the sender account.
CreateUser = Callable[..., Awaitable[Any]]
RegistrationHook = Callable[[Registration], "Awaitable[None] | None"]


class AppserviceConfigError(Exception):
    """A registration file of C{app_service_config_files} is unusable (one line, naming it)."""


def _arg(request: Any, name: str) -> str | None:
    args = getattr(request, "args", None) or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    raw = values[0]
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class AppserviceHandler:
    """The registry of appservices; see the module docstring."""

    def __init__(
        self,
        server_name: str,
        store: "AppserviceStore",
        users: "UserStore",
        devices: "DeviceStore",
        create_user: CreateUser,
        token_of: Callable[[Any], str | None],
        client: "AppserviceClient",
        clock_ms: Callable[[], int],
        config_files: Iterable[str] = (),
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.users = users
        self.devices = devices
        self._create_user = create_user
        self._token_of = token_of
        #: Requests to appservices (queries, ping, third-party lookups).
        self.client = client
        self._clock_ms = clock_ms
        self.config_files = tuple(config_files)
        self._by_id: dict[str, Registration] = {}
        self._by_token: dict[str, Registration] = {}
        #: IDs of the registrations read from C{app_service_config_files}.
        self._from_files: set[str] = set()
        #: Run with the L{Registration} once it takes effect (pushing, bridges).
        self.on_registered: list[RegistrationHook] = []
        #: Run with the L{Registration} once it is gone.
        self.on_unregistered: list[RegistrationHook] = []

    # -- the registry

    async def load(self) -> None:
        """
        Read the stored registrations and C{app_service_config_files}.

        @raise AppserviceConfigError: a file cannot be read or is invalid.
        """
        for _, text in await self.store.all_registrations():
            try:
                reg = self._check(parse_registration(text, self.server_name))
            except RegistrationError as e:
                log.error("A stored appservice registration is invalid and ignored: {e}", e=e)
                continue
            await self._activate(reg)
        for path in self.config_files:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                reg = self._check(parse_registration(text, self.server_name))
            except (OSError, RegistrationError) as e:
                raise AppserviceConfigError(f"app_service_config_files: {path}: {e}") from None
            self._from_files.add(reg.id)
            await self._activate(reg)

    def _check(self, reg: Registration) -> Registration:
        """Refuse an ID or token another registration uses (the spec requires both unique)."""
        if reg.id in self._by_id:
            raise RegistrationError(f"an appservice with id '{reg.id}' is already registered")
        for other in self._by_id.values():
            if reg.as_token in (other.as_token, other.hs_token) or reg.hs_token in (
                other.as_token, other.hs_token,
            ):
                raise RegistrationError(f"a token of this registration is already used by '{other.id}'")
            if other.sender == reg.sender:
                raise RegistrationError(f"sender_localpart is already the sender of '{other.id}'")
        return reg

    async def _activate(self, reg: Registration) -> None:
        account = await self.users.get_account(reg.sender)
        if account is None:
            await self._create_user(reg.sender, None, appservice_id=reg.id, first_user_becomes_admin=False)
        self._by_id[reg.id] = reg
        self._by_token[reg.as_token] = reg
        await run_hooks(self.on_registered, reg, what="appservice on_registered")

    async def register(self, yaml_text: str) -> Registration:
        """
        Validate, store and activate a registration (the admin command
        C{appservices register}); takes effect at once.

        @raise RegistrationError: the document is invalid, or its ID or a
            token is already used.
        """
        reg = self._check(parse_registration(yaml_text, self.server_name))
        await self.store.put_registration(reg.id, yaml_text)
        await self._activate(reg)
        log.info("Appservice {id} registered", id=reg.id)
        return reg

    async def unregister(self, appservice_id: str) -> None:
        """
        Remove a registration, its queue and its state (the admin command
        C{appservices unregister}).

        @raise KeyError: no such appservice.
        @raise RegistrationError: it comes from C{app_service_config_files}.
        """
        reg = self._by_id.get(appservice_id)
        if reg is None:
            raise KeyError(appservice_id)
        if appservice_id in self._from_files:
            raise RegistrationError(
                f"'{appservice_id}' comes from app_service_config_files; remove it there"
            )
        del self._by_id[appservice_id]
        self._by_token.pop(reg.as_token, None)
        await self.store.delete_registration(appservice_id)
        await run_hooks(self.on_unregistered, reg, what="appservice on_unregistered")
        log.info("Appservice {id} unregistered", id=appservice_id)

    def list(self) -> list[Registration]:
        """Every active registration, by ID."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    def show(self, appservice_id: str) -> str:
        """
        The registration's YAML as it was given.

        @raise KeyError: no such appservice.
        """
        return self._by_id[appservice_id].yaml_text

    def get(self, appservice_id: str) -> Registration | None:
        """The registration with this ID, if any."""
        return self._by_id.get(appservice_id)

    def by_as_token(self, token: str) -> Registration | None:
        """The registration whose C{as_token} this is (constant-time compare of the match)."""
        reg = self._by_token.get(token)
        if reg is not None and hmac.compare_digest(reg.as_token.encode(), token.encode()):
            return reg
        return None

    # -- exclusivity

    def user_is_exclusive(self, user_id: str, appservice_id: str | None = None) -> bool:
        """Whether C{user_id} is in an exclusive namespace of an appservice other than C{appservice_id}."""
        return any(
            reg.is_user_in_namespace(user_id, exclusive_only=True)
            for reg in self._by_id.values() if reg.id != appservice_id
        )

    def alias_is_exclusive(self, alias: str, appservice_id: str | None = None) -> bool:
        """Whether C{alias} is in an exclusive namespace of an appservice other than C{appservice_id}."""
        return any(
            reg.is_alias_in_namespace(alias, exclusive_only=True)
            for reg in self._by_id.values() if reg.id != appservice_id
        )

    def check_alias(self, alias: str, requester: Requester) -> None:
        """400 M_EXCLUSIVE when C{requester} may not create C{alias} (directory hook)."""
        if self.alias_is_exclusive(alias, requester.appservice_id):
            raise MatrixError(400, Codes.EXCLUSIVE, "This alias is reserved by an application service")

    async def check_create_alias(self, requester: Requester, body: dict[str, Any]) -> None:
        """The C{before_room_created} hook: C{room_alias_name} is an alias too."""
        name = body.get("room_alias_name")
        if isinstance(name, str) and name:
            self.check_alias(f"#{name}:{self.server_name}", requester)

    # -- authentication

    async def requester(self, request: Any, token: str) -> Requester | None:
        """
        The L{Requester} of an C{as_token} (with C{user_id}/C{device_id}
        assertion), or None when C{token} is no appservice's.
        """
        reg = self.by_as_token(token)
        if reg is None:
            return None
        device_id = _arg(request, "device_id") or _arg(request, "org.matrix.msc3202.device_id")
        return await self.masquerade(reg, _arg(request, "user_id"), device_id)

    async def masquerade(
        self, reg: Registration, user_id: str | None, device_id: str | None = None
    ) -> Requester:
        """
        The L{Requester} of C{reg} acting as C{user_id} (default: its
        sender) on C{device_id}: the checks of "Identity assertion".
        """
        user_id = user_id or reg.sender
        if user_id != reg.sender:
            if not reg.is_user_in_namespace(user_id):
                raise forbidden("Application service cannot masquerade as this user (%s)" % user_id)
            if not await self.users.exists(user_id):
                raise forbidden("Application service has not registered this user (%s)" % user_id)
        if device_id is not None and not await self.devices.exists(user_id, device_id):
            raise MatrixError(400, "M_UNKNOWN_DEVICE", "Device %s is not a device of %s" % (device_id, user_id))
        return Requester(
            user_id=user_id, device_id=device_id, appservice_id=reg.id, access_token=reg.as_token
        )

    def _token_registration(self, request: Any) -> Registration:
        """The appservice of the request's token (401 as for any bad token)."""
        token = self._token_of(request)
        if token is None:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token.")
        reg = self.by_as_token(token)
        if reg is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token.", soft_logout=False)
        return reg

    async def login_check(self, request: Any, user_id: str) -> str:
        """The C{m.login.application_service} checker of L{LoginHandler}: the appservice ID."""
        reg = self._token_registration(request)
        if not user_id or not reg.is_user_in_namespace(user_id):
            raise MatrixError(400, Codes.EXCLUSIVE, "User is not in the application service's namespace")
        return reg.id

    async def registration_check(self, request: Any, user_id: str) -> str:
        """
        The C{m.login.application_service} check of C{/register}: the
        appservice ID, if C{user_id} is in its user namespaces.
        """
        reg = self._token_registration(request)
        if not reg.is_user_in_namespace(user_id):
            raise MatrixError(400, Codes.EXCLUSIVE, "User is not in the application service's namespace")
        return reg.id

    def unlimited_registration(self, request: Any, body: dict[str, Any]) -> bool:
        """Whether a C{/register} request is an appservice's with C{rate_limited: false}."""
        auth = body.get("auth")
        if body.get("type") != "m.login.application_service" and not (
            isinstance(auth, dict) and auth.get("type") == "m.login.application_service"
        ):
            return False
        token = self._token_of(request)
        reg = self.by_as_token(token) if token is not None else None
        return reg is not None and not reg.rate_limited

    def is_rate_limited(self, appservice_id: str | None) -> bool:
        """Whether requests of this appservice are rate-limited (C{rate_limited}, default true)."""
        reg = self._by_id.get(appservice_id) if appservice_id is not None else None
        return reg.rate_limited if reg is not None else True

    # -- asking appservices (application-service-api "Querying")

    async def query_user(self, user_id: str) -> bool:
        """
        Ask the appservices whose user namespaces hold an unknown
        C{user_id} whether they have it (they create it on the way); True
        once the user exists.
        """
        for reg in self.list():
            if reg.url is not None and reg.is_user_in_namespace(user_id):
                if await self.client.query_user(reg, user_id) and await self.users.exists(user_id):
                    return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """Like L{query_user} for an unknown alias (the appservice creates it)."""
        for reg in self.list():
            if reg.url is not None and reg.is_alias_in_namespace(alias):
                if await self.client.query_alias(reg, alias):
                    return True
        return False

    def _own(self, requester: Requester, appservice_id: str) -> Registration:
        """The caller's registration, which must be C{appservice_id} (403 otherwise)."""
        reg = self._by_id.get(requester.appservice_id or "")
        if reg is None or requester.access_token != reg.as_token:
            raise forbidden("This endpoint needs an application service's as_token")
        if reg.id != appservice_id:
            raise forbidden("Provided access token is not the appservice's as_token")
        return reg

    def caller(self, requester: Requester) -> Registration:
        """The registration of an C{as_token} caller (403 for anyone else)."""
        return self._own(requester, requester.appservice_id or "")

    async def ping(self, requester: Requester, appservice_id: str, transaction_id: Any) -> dict[str, Any]:
        """
        C{POST /appservice/{appserviceId}/ping} (client-server-api
        "Pinging"): ask the appservice's C{/_matrix/app/v1/ping}.
        """
        reg = self._own(requester, appservice_id)
        if transaction_id is not None and not isinstance(transaction_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "transaction_id must be a string")
        if reg.url is None:
            raise MatrixError(400, "M_URL_NOT_SET", "Application service doesn't have a URL configured")
        start = self._clock_ms()
        try:
            status, answer = await self.client.ping(reg, transaction_id)
        except AppserviceUnavailable as e:
            if "Timeout" in str(e):
                raise MatrixError(504, "M_CONNECTION_TIMEOUT", "Connection to the application service timed out") from None
            raise MatrixError(502, "M_CONNECTION_FAILED", f"Connection to the application service failed: {e}") from None
        if not 200 <= status < 300:
            raise MatrixError(
                502, "M_BAD_STATUS", f"Ping returned status {status}", status=status,
                body=json.dumps(answer) if answer is not None else "",
            )
        return {"duration_ms": max(0, self._clock_ms() - start)}

    # -- third-party networks (client-server-api "Third-party Networks")

    def _with_protocol(self, protocol: str | None) -> list[Registration]:
        return [
            r for r in self.list()
            if r.url is not None and (protocol is None or protocol in r.protocols)
        ]

    async def _ask(self, reg: Registration, kind: str, protocol: str | None, query: dict[str, Any]) -> Any:
        try:
            status, answer = await self.client.thirdparty(reg, kind, protocol, query)
        except AppserviceUnavailable as e:
            log.info("Third-party lookup at {id} failed: {e}", id=reg.id, e=e)
            return None
        return answer if 200 <= status < 300 else None

    async def protocols(self) -> dict[str, Any]:
        """C{GET /thirdparty/protocols}: every registered protocol's metadata, instances tagged."""
        out: dict[str, Any] = {}
        for reg in self._with_protocol(None):
            for protocol in reg.protocols:
                answer = await self._ask(reg, "protocol", protocol, {})
                if not isinstance(answer, dict):
                    continue
                instances = []
                for inst in answer.get("instances") or []:
                    if isinstance(inst, dict) and isinstance(inst.get("network_id"), str):
                        inst = {**inst, "instance_id": f"{reg.id}|{inst['network_id']}"}
                        instances.append(inst)
                merged = out.get(protocol)
                if merged is None:
                    out[protocol] = {**answer, "instances": instances}
                else:
                    merged["instances"].extend(instances)
        return out

    async def protocol(self, protocol: str) -> dict[str, Any]:
        """C{GET /thirdparty/protocol/{protocol}} (404 when no appservice has it)."""
        found = (await self.protocols()).get(protocol)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown protocol")
        return found

    async def lookup(self, kind: str, protocol: str | None, query: dict[str, Any]) -> list[Any]:
        """
        C{GET /thirdparty/{location,user}[/{protocol}]}: the answers of
        every appservice with the protocol (all, without one), concatenated.
        """
        if protocol is not None and not self._with_protocol(protocol):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown protocol")
        out: list[Any] = []
        for reg in self._with_protocol(protocol):
            answer = await self._ask(reg, kind, protocol, query)
            if isinstance(answer, list):
                out.extend(a for a in answer if isinstance(a, dict))
        return out

    # -- published room directories per network (application-service-api
    # "Published room directories"); instance IDs are "<appservice id>|<network id>"

    async def set_network_visibility(
        self, requester: Requester, network_id: str, room_id: str, body: dict[str, Any]
    ) -> None:
        """C{PUT /directory/list/appservice/{networkId}/{roomId}}: only with an C{as_token}."""
        reg = self.caller(requester)
        visibility = body.get("visibility")
        if visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be 'public' or 'private'")
        if not room_id.startswith("!"):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a room ID")
        await self.store.set_network_room(reg.id, network_id, room_id, visibility == "public")

    async def network_rooms(self, instance_id: str | None) -> list[str]:
        """
        The rooms of one network's directory (C{third_party_instance_id}),
        or of every network (None, for C{include_all_networks}).
        """
        if instance_id is None:
            rows = await self.store.network_rooms()
        else:
            appservice_id, sep, network_id = instance_id.partition("|")
            if not sep or appservice_id not in self._by_id:
                return []
            rows = await self.store.network_rooms(appservice_id, network_id)
        return [room_id for appservice_id, _, room_id in rows if appservice_id in self._by_id]
