"""
The client side of federation queries (server-server-api "Querying for
information", "Public Room Directory"): what our clients ask about other
servers' aliases, profiles and room directories.

- L{RemoteQueries.resolve_alias}: C{GET /_matrix/federation/v1/query/directory}
  on the alias's server (the spec: "Homeservers should only query room
  aliases that belong to the target server").
- L{RemoteQueries.profile}: C{GET /_matrix/federation/v1/query/profile}
  on the user's server.
- L{RemoteQueries.public_rooms}: C{GET} (or, with a filter, C{POST})
  C{/_matrix/federation/v1/publicRooms} on the named server;
  C{forbidden_remote_room_directory_server_names} are never asked.

Answers are checked (a malformed answer is 502, never passed on) and
failures become Matrix errors that do not confuse the client: the remote's
400/403/404 keep their status and C{errcode}; anything else, including a
401 the remote answered to *our* signature (the client's token is fine),
5xx, unreachable servers and timeouts, is 502 M_UNKNOWN; a destination
refused by our own configuration (C{allow_federation},
C{forbidden_remote_server_names}) is 403 M_FORBIDDEN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, NoReturn

from conduit_tw.config import is_valid_server_name
from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.federation.errors import FederationDisabled, NotReachable, RemoteError
from conduit_tw.logging import get_logger

if TYPE_CHECKING:
    from conduit_tw.federation.client import FederationClient

log = get_logger("conduit_tw.remote_queries")

QUERY_DIRECTORY = "/_matrix/federation/v1/query/directory"
QUERY_PROFILE = "/_matrix/federation/v1/query/profile"
PUBLIC_ROOMS = "/_matrix/federation/v1/publicRooms"

#: Remote answers passed to the client with their own status and errcode.
_PASSED_ON = (400, 403, 404)
#: The largest answer accepted for an alias or a profile (public room
#: listings use the client's default cap).
_SMALL_ANSWER = 1024 * 1024


def _bad_gateway(message: str) -> MatrixError:
    return MatrixError(502, Codes.UNKNOWN, message)


def _raise_for(error: Exception, destination: str, what: str) -> NoReturn:
    """Turn a federation failure into the Matrix error our client gets."""
    if isinstance(error, FederationDisabled):
        raise forbidden(f"Federation with {destination} is not allowed") from None
    if isinstance(error, RemoteError) and error.code in _PASSED_ON and error.errcode:
        message = error.error or f"{destination} refused the {what}"
        raise MatrixError(error.code, error.errcode, message) from None
    log.info("{what} on {destination} failed: {error}", what=what, destination=destination, error=error)
    if isinstance(error, NotReachable):
        raise _bad_gateway(f"Could not reach {destination} for the {what}") from None
    raise _bad_gateway(f"{destination} failed to answer the {what}") from None


class RemoteQueries:
    """
    Federation queries on behalf of our clients.

    @param client: the federation client (C{get_json}, C{post_json}).
    @param forbidden_directory_servers: C{forbidden_remote_room_directory_server_names}.
    """

    def __init__(
        self, client: "FederationClient", forbidden_directory_servers: Iterable[str] = ()
    ) -> None:
        self.client = client
        self.forbidden_directory_servers = frozenset(s.lower() for s in forbidden_directory_servers)

    async def _get(self, destination: str, path: str, args: dict[str, Any], what: str) -> Any:
        if not is_valid_server_name(destination):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid server name: {destination!r}")
        try:
            return await self.client.get_json(destination, path, args, max_size=_SMALL_ANSWER)
        except (FederationDisabled, NotReachable, RemoteError) as e:
            _raise_for(e, destination, what)

    async def resolve_alias(self, alias: str) -> dict[str, Any]:
        """
        C{{"room_id", "servers"}} for an alias of another server (a valid
        alias; the handler checked its grammar). 404 M_NOT_FOUND when the
        alias's server says so.
        """
        server = alias.partition(":")[2]
        answer = await self._get(server, QUERY_DIRECTORY, {"room_alias": alias}, "alias query")
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if (
            not isinstance(room_id, str) or not room_id.startswith("!")
            or not isinstance(servers, list) or not all(isinstance(s, str) for s in servers)
        ):
            raise _bad_gateway(f"{server} answered the alias query with a malformed response")
        # The alias's own server holds the room as far as it knows; put it
        # first so a join tries it first.
        servers = [server] + [s for s in servers if s != server] if server in servers else servers
        return {"room_id": room_id, "servers": servers}

    async def profile(self, user_id: str, field: str | None) -> dict[str, Any]:
        """
        The profile (or the one C{field}) of a user of another server, as
        its server answers it; fields whose value is C{null} are left out.
        """
        server = user_id.partition(":")[2]
        args = {"user_id": user_id}
        if field is not None:
            args["field"] = field
        answer = await self._get(server, QUERY_PROFILE, args, "profile query")
        if not isinstance(answer, dict):
            raise _bad_gateway(f"{server} answered the profile query with a malformed response")
        for key in ("displayname", "avatar_url"):
            if answer.get(key) is not None and not isinstance(answer[key], str):
                raise _bad_gateway(f"{server} answered the profile query with a malformed {key}")
        profile = {k: v for k, v in answer.items() if v is not None}
        if field is not None:
            profile = {k: v for k, v in profile.items() if k == field}
        return profile

    async def public_rooms(
        self,
        server: str,
        *,
        limit: int | None = None,
        since: str | None = None,
        search_term: str | None = None,
        room_types: list[str | None] | None = None,
        include_all_networks: bool = False,
        third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """
        Another server's published rooms (the arguments of the client's
        C{/publicRooms}): C{GET} without a filter, C{POST} with one, as
        the federation API offers both.

        @raise MatrixError: 403 M_FORBIDDEN for a server in
            C{forbidden_remote_room_directory_server_names}.
        """
        if server.lower() in self.forbidden_directory_servers:
            raise forbidden(f"Listing the room directory of {server} is not allowed here")
        what = "room directory request"
        try:
            if search_term is None and room_types is None:
                args: dict[str, Any] = {}
                if limit is not None:
                    args["limit"] = str(limit)
                if since is not None:
                    args["since"] = since
                if include_all_networks:
                    args["include_all_networks"] = "true"
                if third_party_instance_id is not None:
                    args["third_party_instance_id"] = third_party_instance_id
                answer = await self.client.get_json(server, PUBLIC_ROOMS, args)
            else:
                body: dict[str, Any] = {"include_all_networks": include_all_networks}
                if limit is not None:
                    body["limit"] = limit
                if since is not None:
                    body["since"] = since
                if third_party_instance_id is not None:
                    body["third_party_instance_id"] = third_party_instance_id
                filt: dict[str, Any] = {}
                if search_term is not None:
                    filt["generic_search_term"] = search_term
                if room_types is not None:
                    filt["room_types"] = room_types
                body["filter"] = filt
                answer = await self.client.post_json(server, PUBLIC_ROOMS, body)
        except (FederationDisabled, NotReachable, RemoteError) as e:
            _raise_for(e, server, what)
        if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list) or not all(
            isinstance(room, dict) for room in answer["chunk"]
        ):
            raise _bad_gateway(f"{server} answered the {what} with a malformed response")
        return answer

