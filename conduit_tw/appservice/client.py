"""
Requests to application services (application-service-api "Homeserver ->
Application Service API"): every one carries C{Authorization: Bearer
<hs_token>} (v1.4) and goes through an L{OutgoingHTTPClient} (so
C{ip_range_denylist}, the TLS policy and the size caps apply), with
C{appservice_timeout}.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from conduit_tw.appservice.registration import Registration

#: Largest answer read from an appservice (query and third-party answers).
MAX_ANSWER = 1024 * 1024


class AppserviceUnavailable(Exception):
    """The appservice could not be reached, or answered with an error."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        #: The appservice's HTTP status, when it answered.
        self.status = status
        self.body = body


def _path(*segments: str) -> str:
    return "/".join(quote(s, safe="") for s in segments)


class AppserviceClient:
    """See the module docstring."""

    def __init__(self, http_client: Any, timeout_s: float) -> None:
        self.http = http_client
        self.timeout_s = timeout_s

    async def request(
        self,
        reg: Registration,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """
        One request to C{reg}'s URL: C{(status, parsed JSON or None)}.

        @raise AppserviceUnavailable: no URL, unreachable, refused by the
            denylist, timed out.
        """
        if reg.url is None:
            raise AppserviceUnavailable(f"appservice {reg.id} has no url")
        url = reg.url + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        headers = {"authorization": f"Bearer {reg.hs_token}"}
        raw = None
        if body is not None:
            headers["content-type"] = "application/json"
            raw = json.dumps(body).encode("utf-8")
        try:
            response = await self.http.request(
                method, url, headers, raw, max_size=MAX_ANSWER, timeout=self.timeout_s
            )
        except Exception as e:
            raise AppserviceUnavailable(f"{reg.id}: {e.__class__.__name__}: {e}") from e
        try:
            parsed = json.loads(response.body) if response.body else None
        except ValueError:
            parsed = None
        return response.code, parsed

    async def push(self, reg: Registration, txn_id: str, body: dict[str, Any]) -> None:
        """C{PUT /_matrix/app/v1/transactions/{txnId}}; raises unless 2xx."""
        status, answer = await self.request(
            reg, "PUT", "/_matrix/app/v1/transactions/" + _path(txn_id), body
        )
        if not 200 <= status < 300:
            raise AppserviceUnavailable(f"{reg.id} answered {status} to transaction {txn_id}", status)

    async def query_user(self, reg: Registration, user_id: str) -> bool:
        """C{GET /_matrix/app/v1/users/{userId}}: whether the appservice made the user."""
        try:
            status, _ = await self.request(reg, "GET", "/_matrix/app/v1/users/" + _path(user_id))
        except AppserviceUnavailable:
            return False
        return 200 <= status < 300

    async def query_alias(self, reg: Registration, alias: str) -> bool:
        """C{GET /_matrix/app/v1/rooms/{roomAlias}}: whether the appservice made the alias."""
        try:
            status, _ = await self.request(reg, "GET", "/_matrix/app/v1/rooms/" + _path(alias))
        except AppserviceUnavailable:
            return False
        return 200 <= status < 300

    async def ping(self, reg: Registration, transaction_id: str | None) -> tuple[int, Any]:
        """C{POST /_matrix/app/v1/ping}."""
        body = {} if transaction_id is None else {"transaction_id": transaction_id}
        return await self.request(reg, "POST", "/_matrix/app/v1/ping", body)

    async def thirdparty(
        self, reg: Registration, kind: str, protocol: str | None, query: Mapping[str, Any]
    ) -> tuple[int, Any]:
        """C{GET /_matrix/app/v1/thirdparty/{kind}[/{protocol}]} with the client's query."""
        path = "/_matrix/app/v1/thirdparty/" + _path(kind)
        if protocol is not None:
            path += "/" + _path(protocol)
        return await self.request(reg, "GET", path, query=query)
