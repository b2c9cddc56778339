"""
Receipts and read markers (receipts.yaml, read_markers.yaml):

- C{POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}}
- C{POST /_matrix/client/v3/rooms/{roomId}/read_markers}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the receipt endpoints."""

    async def post_receipt(request: MatrixRequest, room_id: str, receipt_type: str, event_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        await hs.receipts.client_receipt(requester.user_id, room_id, receipt_type, event_id, body)
        return {}

    async def post_read_markers(request: MatrixRequest, room_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        await hs.receipts.read_markers(requester.user_id, room_id, request.json_object())
        return {}

    client_route(router, "POST", "/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post_receipt)
    client_route(router, "POST", "/rooms/{room_id}/read_markers", post_read_markers)
