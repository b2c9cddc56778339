"""Helpers for /sync, receipts and notifications tests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tests.api.rooms import V3, RoomsTestCase, q


class SyncTestCase(RoomsTestCase):
    """Rooms helpers plus /sync and receipts."""

    async def sync(
        self, token: str, since: str | None = None, filter: Any = None, expect: int = 200,
        **params: Any,
    ) -> dict[str, Any]:
        """GET /sync; returns the body."""
        args: dict[str, Any] = {}
        if since is not None:
            args["since"] = since
        if filter is not None:
            args["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
        for k, v in params.items():
            args[k] = ("true" if v else "false") if isinstance(v, bool) else v
        path = V3 + "/sync" + ("?" + urlencode(args) if args else "")
        r = await self.request("GET", path, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    def joined(self, body: dict[str, Any], room_id: str) -> dict[str, Any] | None:
        return body.get("rooms", {}).get("join", {}).get(room_id)

    def timeline_ids(self, body: dict[str, Any], room_id: str) -> list[str]:
        room = self.joined(body, room_id)
        if room is None:
            return []
        return [e["event_id"] for e in room["timeline"]["events"]]

    def bodies(self, body: dict[str, Any], room_id: str) -> list[str]:
        room = self.joined(body, room_id)
        if room is None:
            return []
        return [
            e["content"].get("body") for e in room["timeline"]["events"]
            if e["type"] == "m.room.message"
        ]

    async def receipt(
        self, token: str, room_id: str, event_id: str, receipt_type: str = "m.read",
        body: dict[str, Any] | None = None, expect: int = 200,
    ) -> Any:
        r = await self.request(
            "POST", f"{V3}/rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}",
            body if body is not None else {}, access_token=token,
        )
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def put_account_data(self, token: str, user_id: str, event_type: str, content: Any) -> None:
        r = await self.request(
            "PUT", f"{V3}/user/{q(user_id)}/account_data/{q(event_type)}", content,
            access_token=token,
        )
        self.assertEqual(r.code, 200, r.body)
