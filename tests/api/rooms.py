"""
Helpers for rooms tests: users registered through the real API, and
shortcuts for creating rooms, sending events and reading them back.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from argon2 import PasswordHasher

from tests.api.accounts import AccountsTestCase
from tests.server import Response

V3 = "/_matrix/client/v3"


def q(s: str) -> str:
    """Percent-encode a path segment."""
    return quote(s, safe="")


class RoomsTestCase(AccountsTestCase):
    """A server with open registration and room helpers."""

    _txn = 0

    async def user(self, name: str) -> tuple[str, str]:
        """Register C{name}; returns C{(user_id, access_token)}."""
        body = await self.register(name)
        return body["user_id"], body["access_token"]

    async def create_room(self, token: str, expect: int = 200, **body: Any) -> str:
        """POST /createRoom; returns the room ID."""
        r = await self.request("POST", V3 + "/createRoom", body, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json.get("room_id", "")

    def next_txn(self) -> str:
        RoomsTestCase._txn += 1
        return "t%d" % RoomsTestCase._txn

    async def send(
        self, token: str, room_id: str, content: Any = None, event_type: str = "m.room.message",
        txn: str | None = None,
    ) -> Response:
        """PUT /rooms/{id}/send/{type}/{txn}."""
        if content is None:
            content = {"msgtype": "m.text", "body": "hello"}
        txn = txn or self.next_txn()
        return await self.request(
            "PUT", f"{V3}/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn)}", content,
            access_token=token,
        )

    async def send_ok(self, token: str, room_id: str, content: Any = None, **kw: Any) -> str:
        r = await self.send(token, room_id, content, **kw)
        self.assertEqual(r.code, 200, r.body)
        return r.json["event_id"]

    async def put_state(
        self, token: str, room_id: str, event_type: str, content: Any, state_key: str = ""
    ) -> Response:
        return await self.request(
            "PUT", f"{V3}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}", content,
            access_token=token,
        )

    async def get_state(self, token: str, room_id: str, event_type: str, state_key: str = "") -> Response:
        return await self.request(
            "GET", f"{V3}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}",
            access_token=token,
        )

    async def get_event(self, token: str, room_id: str, event_id: str) -> Response:
        return await self.request(
            "GET", f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}", access_token=token
        )

    async def member_action(
        self, token: str, room_id: str, action: str, body: dict[str, Any] | None = None
    ) -> Response:
        """POST /rooms/{id}/{join,leave,invite,kick,ban,unban,forget}."""
        return await self.request(
            "POST", f"{V3}/rooms/{q(room_id)}/{action}", body or {}, access_token=token
        )

    async def join(self, token: str, room_id_or_alias: str, expect: int = 200) -> Response:
        r = await self.request("POST", f"{V3}/join/{q(room_id_or_alias)}", {}, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r

    async def invite(self, token: str, room_id: str, user_id: str, expect: int = 200) -> Response:
        r = await self.member_action(token, room_id, "invite", {"user_id": user_id})
        self.assertEqual(r.code, expect, r.body)
        return r

    async def full_state(self, token: str, room_id: str) -> list[dict[str, Any]]:
        r = await self.request("GET", f"{V3}/rooms/{q(room_id)}/state", access_token=token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def restart(self) -> None:
        """Close the server and start a new one on the same database."""
        from conduit_tw.api.resource import InFlightTracker, MatrixSite
        from tests.server import FakeClient, record_federation

        await self.hs.close()
        self.hs = self.make_homeserver()
        self.addCleanup(self.hs.close)
        self.sent = record_federation(self.hs)
        await self.hs.setup()
        self.hs.passwords.hasher = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
        site = MatrixSite(
            self.hs.resource,
            max_request_size=self.config.max_request_size,
            trusted_proxies=self.config.trusted_proxies,
            tracker=InFlightTracker(),
        )
        site.timeOut = None
        self.site = site
        self.client = FakeClient(site)
