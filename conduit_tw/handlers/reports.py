"""
Reporting content (client-server-api "Reporting content",
modules/report_content.md, report_content.yaml):

- C{POST /rooms/{roomId}/report/{eventId}}: the reporter must be joined
  to the room (v1.8) and able to see the event; otherwise, or when the
  event is unknown or in another room, 404 M_NOT_FOUND (the spec's answer,
  which does not tell "not joined" from "no such event").
- C{POST /rooms/{roomId}/report} (v1.13): any user may report a room we
  know (no membership check, as the spec requires); 404 for unknown rooms.
- C{POST /users/{userId}/report} (v1.14): any user may report a user;
  404 for local users that do not exist (other servers' users cannot be
  checked without federation and are accepted).

C{reason} is optional for events and required for rooms and users; it is
at most L{MAX_REASON} characters (400 M_BAD_JSON beyond). C{score} was
removed in v1.18: it is ignored (old clients still send it).

Reports are stored (L{ReportStore}) for the administrators; hook:
L{ReportHandler.on_report} C{(report_id, report)} (the admin room will
post them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.storage.stores.reports import ReportStore
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.visibility import Visibility
    from conduit_tw.storage.events import EventStore
    from conduit_tw.storage.stores.users import UserStore

#: Longest accepted reason, in characters.
MAX_REASON = 1000

ReportHook = Callable[[int, dict[str, Any]], "Awaitable[None] | None"]


class ReportHandler:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        store: ReportStore,
        events: "EventStore",
        users: "UserStore",
        visibility: "Visibility",
        clock_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.events = events
        self.users = users
        self.visibility = visibility
        self.clock_ms = clock_ms
        #: Sync or async C{(report_id, report)} callables run after storing.
        self.on_report: list[ReportHook] = []

    @staticmethod
    def _reason(body: dict[str, Any], required: bool) -> str | None:
        if "reason" not in body or body["reason"] is None:
            if required:
                raise MatrixError(400, Codes.MISSING_PARAM, "Missing reason")
            return None
        reason = body["reason"]
        if not isinstance(reason, str):
            raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
        if len(reason) > MAX_REASON:
            raise MatrixError(
                400, Codes.BAD_JSON, "reason must be at most %d characters" % MAX_REASON
            )
        return reason

    async def _store(self, report: dict[str, Any]) -> int:
        report["ts"] = self.clock_ms()
        report_id = await self.store.add(report)
        await run_hooks(self.on_report, report_id, report, what="on_report")
        return report_id

    async def report_event(
        self, requester: "Requester", room_id: str, event_id: str, body: dict[str, Any]
    ) -> None:
        """An event report."""
        reason = self._reason(body, required=False)
        user_id = requester.user_id
        store = self.events
        if await store.membership(user_id, room_id) != "join":
            raise not_found("Event not found or you are not joined to the room")
        ev = await store.get_event(event_id)
        if (
            ev is None
            or ev.room_id_or_create() != room_id
            or not ev.in_timeline
            or not await self.visibility.can_see_event(user_id, ev)
        ):
            raise not_found("Event not found or you are not joined to the room")
        report: dict[str, Any] = {
            "kind": "event", "reporter": user_id, "room_id": room_id, "event_id": event_id,
            "user_id": ev.sender,
        }
        if reason is not None:
            report["reason"] = reason
        await self._store(report)

    async def report_room(self, requester: "Requester", room_id: str, body: dict[str, Any]) -> None:
        """A room report (v1.13)."""
        reason = self._reason(body, required=True)
        if await self.events.get_room(room_id) is None:
            raise not_found("The room was not found.")
        await self._store(
            {"kind": "room", "reporter": requester.user_id, "room_id": room_id, "reason": reason}
        )

    async def report_user(self, requester: "Requester", user_id: str, body: dict[str, Any]) -> None:
        """A user report (v1.14)."""
        reason = self._reason(body, required=True)
        if not user_id.startswith("@") or ":" not in user_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a user ID")
        if user_id.partition(":")[2] == self.server_name and not await self.users.exists(user_id):
            raise not_found("The user was not found.")
        await self._store(
            {"kind": "user", "reporter": requester.user_id, "user_id": user_id, "reason": reason}
        )
