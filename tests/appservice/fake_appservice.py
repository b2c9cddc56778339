"""
A small appservice over real HTTP on loopback (twisted.web): it records
every request the homeserver makes and answers from a table tests fill.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

Answer = Callable[[str, str, Any], "tuple[int, Any] | Deferred[tuple[int, Any]]"]


class FakeAppservice(Resource):
    """See the module docstring. C{url} once L{listen} ran."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        #: C{(method, path, authorization, json body)} in arrival order.
        self.requests: list[tuple[str, str, str | None, Any]] = []
        #: C{answer(method, path, body) -> (status, json)}; default 200 {}.
        self.answer: Answer = lambda method, path, body: (200, {})
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []
        self.url = ""

    def listen(self, case: Any) -> str:
        port = reactor.listenTCP(0, Site(self), interface="127.0.0.1")
        case.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        return self.url

    def transactions(self) -> list[tuple[str, dict[str, Any]]]:
        """C{(txnId, body)} of every transaction received (retries included)."""
        prefix = "/_matrix/app/v1/transactions/"
        return [(p[len(prefix):], b) for m, p, _, b in self.requests if p.startswith(prefix)]

    def events(self) -> list[dict[str, Any]]:
        """Every event of the distinct transactions, in order."""
        seen: dict[str, dict[str, Any]] = {}
        for txn_id, body in self.transactions():
            seen.setdefault(txn_id, body)
        return [e for body in seen.values() for e in body.get("events", [])]

    def wait_for(self, condition: Callable[[], bool]) -> Deferred[None]:
        """Fires once C{condition()} is true (checked after each request)."""
        d: Deferred[None] = Deferred()
        if condition():
            d.callback(None)
        else:
            self._waiters.append((condition, d))
        return d

    def render(self, request: Any) -> Any:
        raw = request.content.read()
        body = json.loads(raw) if raw else None
        path = request.uri.decode()
        auth = request.getHeader(b"authorization")
        self.requests.append((request.method.decode(), path, auth, body))
        result = self.answer(request.method.decode(), path.split("?")[0], body)

        def respond(answer: tuple[int, Any]) -> None:
            status, content = answer
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(content).encode())
            request.finish()
            self._check()

        if isinstance(result, Deferred):
            result.addCallback(respond)
        else:
            reactor.callLater(0, respond, result)
        return NOT_DONE_YET

    def _check(self) -> None:
        for item in list(self._waiters):
            condition, d = item
            if condition():
                self._waiters.remove(item)
                d.callback(None)
