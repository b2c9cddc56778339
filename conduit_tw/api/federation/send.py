"""
C{PUT /_matrix/federation/v1/send/{txnId}} (server-server-api
"Transactions", transactions.yaml).

The origin is the server that signed the request:
C{hs.federation_auth.authenticate(request)} returns it or raises 401
M_UNAUTHORIZED (the X-Matrix check, federation/auth.py). The work is
C{hs.transactions.on_send} (federation/transactions.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the transaction endpoint."""

    async def send_transaction(request: MatrixRequest, txn_id: str):
        origin = await hs.federation_auth.authenticate(request)
        return await hs.transactions.on_send(origin, txn_id, request.json_body())

    router.add("PUT", "/_matrix/federation/v1/send/{txn_id}", send_transaction)
