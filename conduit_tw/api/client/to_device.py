"""
Send-to-device messaging (client-server-api "Send-to-Device messaging";
to_device.yaml): C{PUT /sendToDevice/{eventType}/{txnId}}. The rules
(idempotency, C{*}, remote users) are in handlers/to_device.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.body import body_field
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount C{/sendToDevice}."""

    async def send_to_device(request: MatrixRequest, event_type: str, txn_id: str):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        messages = body_field(body, "messages", "object", required=True)
        await hs.to_device.send(
            requester.user_id, requester.device_id, event_type, txn_id, messages
        )
        return {}

    client_route(router, "PUT", "/sendToDevice/{event_type}/{txn_id}", send_to_device)
