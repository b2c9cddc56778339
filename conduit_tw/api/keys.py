"""
C{/_matrix/key/v2}: our published signing keys and the notary endpoints
(server-server-api "Retrieving server keys"). Both are unauthenticated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.body import is_json_type
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.config import is_valid_server_name
from conduit_tw.errors import Codes, MatrixError, missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

#: How many servers one C{POST /query} may ask about (not from the spec:
#: a bound on the fetches one request can cause).
MAX_QUERIED_SERVERS = 100


def _server_name(name: Any) -> str:
    if not isinstance(name, str) or not is_valid_server_name(name):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name!r} is not a server name")
    return name


def parse_query_body(body: dict[str, Any], now: int) -> dict[str, dict[str | None, int]]:
    """
    The criteria of C{POST /_matrix/key/v2/query} (keys_query.yaml):
    server name -> key ID -> C{minimum_valid_until_ts} (now when absent).

    @raise MatrixError: 400 for a body that does not follow the schema.
    """
    server_keys = body.get("server_keys")
    if server_keys is None:
        raise missing_param("'server_keys' is required")
    if not isinstance(server_keys, dict):
        raise MatrixError(400, Codes.BAD_JSON, "'server_keys' must be an object")
    if len(server_keys) > MAX_QUERIED_SERVERS:
        raise MatrixError(
            400, Codes.LIMIT_EXCEEDED, f"at most {MAX_QUERIED_SERVERS} servers per query"
        )
    criteria: dict[str, dict[str | None, int]] = {}
    for server, by_key in server_keys.items():
        _server_name(server)
        if not isinstance(by_key, dict):
            raise MatrixError(400, Codes.BAD_JSON, f"'server_keys.{server}' must be an object")
        wanted: dict[str | None, int] = {}
        criteria[server] = wanted
        for key_id, criterion in by_key.items():
            if not isinstance(criterion, dict):
                raise MatrixError(400, Codes.BAD_JSON, f"criteria of {key_id!r} must be an object")
            minimum = criterion.get("minimum_valid_until_ts")
            if minimum is None:
                minimum = now
            elif not is_json_type(minimum, "integer"):
                raise MatrixError(
                    400, Codes.BAD_JSON, "'minimum_valid_until_ts' must be an integer"
                )
            wanted[key_id] = minimum
    return criteria


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the key endpoints."""

    async def get_server_keys(request: MatrixRequest, key_id: str | None = None):
        """
        C{GET /_matrix/key/v2/server}: server-server-api "Publishing Keys".
        The deprecated C{/server/{keyId}} form answers the same document.
        """
        request.setHeader(b"Content-Type", b"application/json")
        return 200, hs.server_keys.response_bytes()

    async def query_one(request: MatrixRequest, server_name: str):
        """
        C{GET /_matrix/key/v2/query/{serverName}}: the server's keys, valid
        until C{minimum_valid_until_ts} (default: now) if possible, signed
        by the server and by us.
        """
        minimum = request.int_arg("minimum_valid_until_ts")
        wanted = {None: hs.clock_ms() if minimum is None else minimum}
        keys = await hs.keyring.query({_server_name(server_name): wanted})
        return 200, {"server_keys": keys}

    async def query_many(request: MatrixRequest):
        """C{POST /_matrix/key/v2/query}: the batch form of L{query_one}."""
        criteria = parse_query_body(request.json_object(), hs.clock_ms())
        return 200, {"server_keys": await hs.keyring.query(criteria)}

    router.add("GET", "/_matrix/key/v2/server", get_server_keys)
    router.add("GET", "/_matrix/key/v2/server/{key_id}", get_server_keys)
    router.add("GET", "/_matrix/key/v2/query/{server_name}", query_one)
    router.add("POST", "/_matrix/key/v2/query", query_many)
