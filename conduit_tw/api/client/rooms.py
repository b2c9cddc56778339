"""
Rooms and messaging (client-server-api "Rooms", "Room Events", "Sending
events to a room", "Redactions"):

- C{POST /createRoom}
- C{PUT /rooms/{roomId}/send/{eventType}/{txnId}}
- C{PUT /rooms/{roomId}/state/{eventType}/{stateKey}} (state key may be empty)
- C{GET /rooms/{roomId}/state/{eventType}/{stateKey}} (C{?format=event}
  answers the whole event instead of its content, as conduwuit does)
- C{GET /rooms/{roomId}/state}
- C{PUT /rooms/{roomId}/redact/{eventId}/{txnId}}, legacy C{POST
  /rooms/{roomId}/redact/{eventId}}
- C{GET /rooms/{roomId}/event/{eventId}}
- C{GET /joined_rooms}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.body import check_body
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, MatrixError
from conduit_tw.handlers.auth import txn_scope

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.homeserver import HomeServer
    from conduit_tw.storage.stores.timeline import StoredEvent

#: C{POST /createRoom} body key -> spec type (client-server-api "Creation").
CREATE_ROOM_SCHEMA = {
    "visibility": "string", "room_alias_name": "string", "name": "string", "topic": "string",
    "invite": "array", "invite_3pid": "array", "room_version": "string",
    "creation_content": "object", "initial_state": "array", "preset": "string",
    "is_direct": "boolean", "power_level_content_override": "object",
}

#: Keys of C{creation_content} with a type in the C{m.room.create} schema
#: (client-server-api "m.room.create"); others are copied as given.
CREATION_CONTENT_SCHEMA = {
    "m.federate": "boolean", "type": "string", "predecessor": "object",
    "additional_creators": "array",
}


def _check_type(event_type: str) -> None:
    """400 M_INVALID_PARAM for an empty event type or one over 255 bytes."""
    if not event_type or len(event_type.encode("utf-8")) > 255:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event type")


class _RoomServlet:
    """Shared state of the rooms endpoints."""

    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
        self.events = hs.events
        self.history = hs.room_history

    async def send_with_txn(
        self, requester: "Requester", room_id: str, event_type: str, content: dict[str, Any],
        txn_id: str | None, **kwargs: Any,
    ) -> "StoredEvent":
        """
        Send as C{requester}, rate-limited like a message; the transaction ID
        is scoped to the requester's device (its token when it has none).
        """
        hs = self.hs
        await hs.ratelimit.check_requester(hs.ratelimit.message, requester)
        return await self.events.send(
            room_id, requester.user_id, event_type, content,
            device_id=txn_scope(requester), txn_id=txn_id, **kwargs,
        )


class RoomCreationServlet(_RoomServlet):
    """C{POST /createRoom} and C{GET /joined_rooms}."""

    async def create_room(self, request: MatrixRequest):
        hs = self.hs
        requester = await hs.auth.get_requester(request)
        await hs.ratelimit.check_requester(hs.ratelimit.message, requester)
        body = request.json_object()
        check_body(body, CREATE_ROOM_SCHEMA)
        check_body(
            body.get("creation_content") or {}, CREATION_CONTENT_SCHEMA, where="creation_content."
        )
        room_id = await hs.room_creation.create_room(requester, body)
        return {"room_id": room_id}

    async def joined_rooms(self, request: MatrixRequest):
        requester = await self.hs.auth.get_requester(request, allow_guest=True)
        return {"joined_rooms": await self.hs.membership.joined_room_ids(requester.user_id)}


class SendStateServlet(_RoomServlet):
    """
    Sending events and room state (client-server-api "Sending events to a
    room", "Getting events for a room").
    """

    async def send_event(self, request: MatrixRequest, room_id: str, event_type: str, txn_id: str):
        requester = await self.hs.auth.get_requester(request, allow_guest=True)
        _check_type(event_type)
        content = request.json_object()
        stored = await self.send_with_txn(requester, room_id, event_type, content, txn_id)
        return {"event_id": stored.event_id}

    async def put_state(self, request: MatrixRequest, room_id: str, event_type: str, state_key: str):
        hs = self.hs
        requester = await hs.auth.get_requester(request)
        _check_type(event_type)
        if len(state_key.encode("utf-8")) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM, "State key is too long")
        content = request.json_object()
        if event_type == "m.room.member":
            # Any membership may be PUT as state (e.g. a per-room display
            # name or avatar on one's own join event); the auth rules
            # (server-server-api "Authorization rules", m.room.member)
            # decide whether it is allowed.
            membership = content.get("membership")
            if not isinstance(membership, str):
                raise MatrixError(400, Codes.BAD_JSON, "m.room.member needs a string membership")
            if not state_key.startswith("@") or state_key.partition(":")[2] != hs.server_name:
                raise MatrixError(
                    400, Codes.INVALID_PARAM,
                    "The state key of m.room.member must be a user ID of this server",
                )
        # m.room.canonical_alias is checked by the directory's validator
        # in hs.events.send (handlers/directory.py). Setting the same
        # content again is a no-op (EventHandler.set_state).
        stored = await self.events.set_state(
            room_id, requester.user_id, event_type, state_key, content
        )
        return {"event_id": stored.event_id}

    async def get_state_event(self, request: MatrixRequest, room_id: str, event_type: str, state_key: str):
        hs = self.hs
        requester = await hs.auth.get_requester(request, allow_guest=True)
        ev = await self.history.state_event(requester.user_id, room_id, event_type, state_key)
        if request.arg("format") == "event":
            return await hs.serializer.serialize_event(ev, requester.user_id, requester.device_id)
        return ev.content

    async def get_state(self, request: MatrixRequest, room_id: str):
        hs = self.hs
        requester = await hs.auth.get_requester(request, allow_guest=True)
        state = await self.history.state(requester.user_id, room_id)
        return (
            200,
            await hs.serializer.serialize_events(state, requester.user_id, requester.device_id),
        )


class EventRedactServlet(_RoomServlet):
    """Single events and redactions (client-server-api "Redactions")."""

    async def redact(self, request: MatrixRequest, room_id: str, event_id: str, txn_id: str | None = None):
        requester = await self.hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        content: dict[str, Any] = {}
        reason = body.get("reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
            content["reason"] = reason
        stored = await self.send_with_txn(
            requester, room_id, "m.room.redaction", content, txn_id,
            txn_kind="redact", redacts=event_id,
        )
        return {"event_id": stored.event_id}

    async def get_event(self, request: MatrixRequest, room_id: str, event_id: str):
        hs = self.hs
        requester = await hs.auth.get_requester(request, allow_guest=True)
        ev = await self.history.event(requester.user_id, room_id, event_id)
        return await hs.serializer.serialize_event(ev, requester.user_id, requester.device_id)


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the rooms endpoints."""
    rooms = RoomCreationServlet(hs)
    sending = SendStateServlet(hs)
    events = EventRedactServlet(hs)
    client_route(router, "POST", "/createRoom", rooms.create_room)
    client_route(router, "PUT", "/rooms/{room_id}/send/{event_type}/{txn_id}", sending.send_event)
    client_route(router, "PUT", "/rooms/{room_id}/state/{event_type}/{state_key:*}", sending.put_state)
    client_route(
        router, "GET", "/rooms/{room_id}/state/{event_type}/{state_key:*}", sending.get_state_event
    )
    client_route(router, "GET", "/rooms/{room_id}/state", sending.get_state)
    client_route(router, "PUT", "/rooms/{room_id}/redact/{event_id}/{txn_id}", events.redact)
    client_route(router, "POST", "/rooms/{room_id}/redact/{event_id}", events.redact)
    client_route(router, "GET", "/rooms/{room_id}/event/{event_id}", events.get_event)
    client_route(router, "GET", "/joined_rooms", rooms.joined_rooms)
