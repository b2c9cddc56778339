"""
A stand-in for L{conduit_tw.federation.client.FederationClient} in unit
tests of code that asks other servers: it records each request and gives
the answer (or raises the error) a test set for its path. The real client
is tested against real TLS servers (tests/federation/test_client.py,
tests/integration/).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from conduit_tw.federation.errors import RemoteError


class FakeFederationClient:
    """
    C{answers[path]}: the JSON answer, or an exception to raise; paths
    without one answer 404 M_UNRECOGNIZED as an unknown endpoint does.
    C{requests}: C{(method, destination, path, args, body)} in order.
    """

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers: dict[str, Any] = dict(answers or {})
        self.requests: list[tuple[str, str, str, Any, Any]] = []

    async def request_json(
        self, method: str, destination: str, path: str, args: Any = None, content: Any = None,
        timeout: float | None = None, max_size: int = 0,
    ) -> Any:
        self.requests.append((method, destination, path, dict(args or {}), content))
        answer = self.answers.get(path)
        if answer is None:
            raise RemoteError(destination, 404, "M_UNRECOGNIZED", "Unrecognized request")
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def get_json(self, destination: str, path: str, args: Any = None, **kw: Any) -> Any:
        return await self.request_json("GET", destination, path, args, **kw)

    async def post_json(self, destination: str, path: str, content: Any, args: Any = None, **kw: Any) -> Any:
        return await self.request_json("POST", destination, path, args, content, **kw)

    def close(self) -> Deferred[None]:
        return succeed(None)
