"""
In-process bridges: appservices that run inside the server process
(docs/plugins/bridges.md).

A bridge ships a Twisted dropin (C{twisted/plugins/<name>.py}) with an
object providing L{IAppserviceBridgeFactory}; the operator enables it by
name in C{appservice_bridges}. At start the server registers it as an
ordinary appservice (id C{bridge-<name>}, random tokens, stored, so they
stay the same across restarts; no URL), hands it a L{BridgeAPI} and
delivers its transactions by calling L{IAppserviceBridge.on_transaction}
with the same JSON body an HTTP appservice would get. The bridge acts only
through the L{BridgeAPI}, which has exactly the rights of its
C{as_token}: its sender and the users of its user namespaces.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from zope.interface import Attribute, Interface

from conduit_tw.appservice.registration import Registration
from conduit_tw.handlers.auth import txn_scope

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester


class IAppserviceBridge(Interface):
    """A running in-process bridge."""

    def registration() -> dict[str, Any]:
        """
        The registration it needs, without C{id}, C{url} or tokens (the
        server adds them): C{sender_localpart}, C{namespaces}, and
        optionally C{protocols}, C{receive_ephemeral}.
        """

    def start(api: "BridgeAPI") -> "Awaitable[None] | None":
        """Called once at server start, with the API it acts through."""

    def on_transaction(txn_id: str, body: dict[str, Any]) -> "Awaitable[None] | None":
        """
        One transaction (application-service-api C{PUT /transactions}
        body: C{events}, and C{ephemeral}/C{to_device} when
        C{receive_ephemeral}). Raising makes the server retry it later,
        unchanged; the same C{txn_id} may so arrive twice.
        """

    def routes() -> list[tuple[str, str, Callable[..., Any]]]:
        """
        HTTP endpoints as C{(method, path, handler)}, mounted under
        C{/_conduit/bridges/<name>}; handlers are the router's
        (C{async def handler(request, **path_vars)} returning JSON).
        """

    def stop() -> "Awaitable[None] | None":
        """Called on shutdown."""


class IAppserviceBridgeFactory(Interface):
    """The plugin object of a bridge (found with C{getPlugins})."""

    name = Attribute("The name operators enable in C{appservice_bridges}.")
    description = Attribute("One line shown in logs.")

    def build() -> IAppserviceBridge:
        """Make the bridge."""


class BridgeAPI:
    """
    What a bridge may do: the client-server actions of its appservice's
    users, checked as for its C{as_token} (L{requester}), and a small
    persisted key-value space of its own.
    """

    def __init__(
        self,
        registration: Registration,
        requester: Callable[[Registration, str | None], Awaitable["Requester"]],
        create_user: Callable[..., Awaitable[Any]],
        users_exist: Callable[[str], Awaitable[bool]],
        membership: Any,
        events: Any,
        room_creation: Any,
        data_get: Callable[[str, str], Awaitable[bytes | None]],
        data_put: Callable[[str, str, bytes | None], Awaitable[None]],
    ) -> None:
        self.registration = registration
        #: The bridge's own user (C{sender_localpart}).
        self.bot = registration.sender
        self.server_name = registration.sender.partition(":")[2]
        self._requester = requester
        self._create_user = create_user
        self._exists = users_exist
        self._membership = membership
        self._events = events
        self._rooms = room_creation
        self._get = data_get
        self._put = data_put

    def user_id(self, localpart: str) -> str:
        """The full user ID of a localpart on this server."""
        return f"@{localpart}:{self.server_name}"

    async def requester(self, user_id: str | None = None) -> "Requester":
        """
        Act as C{user_id} (default: the bot): 403 M_FORBIDDEN outside the
        bridge's namespaces or for unregistered users, as for C{?user_id=}.
        """
        return await self._requester(self.registration, user_id)

    async def ensure_registered(self, user_id: str) -> None:
        """Register a namespace user unless it exists (M_EXCLUSIVE outside the namespaces)."""
        from conduit_tw.errors import Codes, MatrixError

        if await self._exists(user_id):
            return
        if not self.registration.is_user_in_namespace(user_id):
            raise MatrixError(400, Codes.EXCLUSIVE, "User is not in the bridge's namespace")
        await self._create_user(user_id, None, appservice_id=self.registration.id)

    async def join(self, user_id: str, room_id_or_alias: str) -> str:
        """Join a room as C{user_id}; returns the room ID."""
        return await self._membership.join(await self.requester(user_id), room_id_or_alias)

    async def joined_rooms(self, user_id: str) -> list[str]:
        """The rooms C{user_id} (one of the bridge's users) is joined to."""
        requester = await self.requester(user_id)
        return list(await self._membership.joined_room_ids(requester.user_id))

    async def invite(self, user_id: str, room_id: str, target: str) -> None:
        """Invite C{target} as C{user_id}."""
        await self._membership.invite(await self.requester(user_id), room_id, target)

    async def create_room(self, user_id: str, body: dict[str, Any]) -> str:
        """C{POST /createRoom} as C{user_id}; returns the room ID."""
        return await self._rooms.create_room(await self.requester(user_id), body)

    async def send(
        self, user_id: str, room_id: str, content: dict[str, Any],
        event_type: str = "m.room.message", txn_id: str | None = None,
    ) -> str:
        """Send an event as C{user_id}; returns its event ID (idempotent per C{txn_id})."""
        requester = await self.requester(user_id)
        stored = await self._events.send(
            room_id, requester.user_id, event_type, content,
            device_id=txn_scope(requester), txn_id=txn_id,
        )
        return stored.event_id

    async def get_data(self, key: str) -> Any:
        """A JSON value the bridge stored under C{key}, or None."""
        raw = await self._get(self.registration.id, key)
        return json.loads(raw) if raw is not None else None

    async def put_data(self, key: str, value: Any) -> None:
        """Store a JSON value under C{key} (None deletes it)."""
        raw = None if value is None else json.dumps(value, separators=(",", ":")).encode("utf-8")
        await self._put(self.registration.id, key, raw)
