"""
Test helper: a remote server for the federation sender. Its C{put_json}
(the signed client's interface) hands each transaction to a real
L{TransactionHandler} (our own /send receiver, on its own database) and
records what arrived; it can be made unreachable or hold responses.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.federation.transactions import TransactionHandler
from conduit_tw.storage.database import open_database
from conduit_tw.storage.stores.federation_queue import FederationQueueStore

SEND = "/_matrix/federation/v1/send/"


class Unreachable(Exception):
    """What the peer raises while it is down (as the client's NotReachable)."""


def open_db(case: unittest.TestCase) -> Any:
    """A fresh SQLite database closed at the end of the test."""
    path = case.mktemp()
    os.makedirs(path)
    db = open_database("sqlite", path, {})
    case.addCleanup(db.close)
    return db


class Peer:
    """
    A remote server (see the module docstring).

    @ivar calls: every C{(destination, txn_id, body)} attempted, in order.
    @ivar edus: every EDU the receiver dispatched, in order.
    """

    def __init__(self, case: unittest.TestCase, origin: str = "test") -> None:
        self.origin = origin
        self.handler = TransactionHandler(FederationQueueStore(open_db(case)))
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.edus: list[dict[str, Any]] = []
        self.pdus: list[dict[str, Any]] = []
        #: Transaction IDs answered with 200, in order.
        self.delivered: list[str] = []
        self.down = False
        #: When true, responses wait in L{held} until the test fires them.
        self.hold = False
        self.held: list[Deferred[None]] = []
        for edu_type in ("m.typing", "m.receipt", "m.presence", "m.direct_to_device", "x.test"):
            self.handler.edu_handlers[edu_type] = self._edu(edu_type)

    def _edu(self, edu_type: str) -> Any:
        async def record(origin: str, content: dict[str, Any]) -> None:
            self.edus.append({"edu_type": edu_type, "content": content})

        return record

    async def put_json(
        self, destination: str, path: str, body: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """The federation client's C{put_json}."""
        assert path.startswith(SEND), path
        txn_id = path[len(SEND):]
        self.calls.append((destination, txn_id, body))
        if self.hold:
            d: Deferred[None] = Deferred()
            self.held.append(d)
            await d
        if self.down:
            raise Unreachable(destination)
        response = await self.handler.on_send(self.origin, txn_id, body)
        if txn_id not in self.delivered:
            self.delivered.append(txn_id)
            self.pdus.extend(body["pdus"])
        return response

    def release(self) -> None:
        """Fire every held response."""
        held, self.held = self.held, []
        for d in held:
            d.callback(None)

    @property
    def txn_ids(self) -> list[str]:
        return [c[1] for c in self.calls]
