"""
End-to-end encryption key management (client-server-api "End-to-End
Encryption", "Key management API"; keys.yaml, cross_signing.yaml):

- C{POST /keys/upload}, C{POST /keys/query}, C{POST /keys/claim},
  C{GET /keys/changes}
- C{POST /keys/device_signing/upload} (UIA, see handlers/e2e_keys.py),
  C{POST /keys/signatures/upload}

Uploads are rate-limited with C{rc_keys_*}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.body import body_field
from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import missing_param
from conduit_tw.handlers.e2e_keys import CROSS_SIGNING_FIELDS

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the key endpoints."""
    keys = hs.e2e_keys

    async def upload(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.keys, requester)
        return await keys.upload(
            requester,
            body_field(body, "device_keys", "object"),
            body_field(body, "one_time_keys", "object", default={}),
            body_field(body, "fallback_keys", "object", default={}),
        )

    async def _user_map_request(request: MatrixRequest, field: str, handler):
        # /keys/query and /keys/claim: a map of users plus a timeout (ms).
        requester = await hs.auth.get_requester(request, allow_guest=True)
        body = request.json_object()
        return await handler(
            requester,
            body_field(body, field, "object", required=True),
            body_field(body, "timeout", "integer", default=10_000),
        )

    async def query(request: MatrixRequest):
        return await _user_map_request(request, "device_keys", keys.query)

    async def claim(request: MatrixRequest):
        return await _user_map_request(request, "one_time_keys", keys.claim)

    async def changes(request: MatrixRequest):
        requester = await hs.auth.get_requester(request, allow_guest=True)
        from_token = request.arg("from")
        to_token = request.arg("to")
        if from_token is None or to_token is None:
            raise missing_param("'from' and 'to' are required")
        return await keys.changes(requester, from_token, to_token)

    async def upload_signing(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.keys, requester)
        signing_keys = {}
        for field, usage in CROSS_SIGNING_FIELDS:
            key = body_field(body, field, "object")
            if key is not None:
                signing_keys[usage] = key
        body_field(body, "auth", "object")
        return await keys.upload_signing_keys(requester, body, signing_keys)

    async def upload_signatures(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        body = request.json_object()
        await hs.ratelimit.check_requester(hs.ratelimit.keys, requester)
        return await keys.upload_signatures(requester, body)

    client_route(router, "POST", "/keys/upload", upload)
    client_route(router, "POST", "/keys/query", query)
    client_route(router, "POST", "/keys/claim", claim)
    client_route(router, "GET", "/keys/changes", changes)
    client_route(router, "POST", "/keys/device_signing/upload", upload_signing)
    client_route(router, "POST", "/keys/signatures/upload", upload_signatures)
