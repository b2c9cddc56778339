"""
C{PUT /_matrix/federation/v1/send/{txnId}} (server-server-api
"Transactions", transactions.yaml).

The origin is the server that signed the request (L{federation_route}:
the X-Matrix check of federation/auth.py, 401 M_UNAUTHORIZED otherwise).
The work is
C{hs.transactions.on_send} (federation/transactions.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.federation._paths import federation_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the transaction endpoint."""

    async def send_transaction(request: MatrixRequest, origin: str, txn_id: str):
        return await hs.transactions.on_send(origin, txn_id, request.json_body())

    federation_route(
        router, hs.federation_auth, "PUT", "/_matrix/federation/v1/send/{txn_id}", send_transaction
    )
