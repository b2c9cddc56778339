"""
Inbound federation authentication (server-server-api "Request
Authentication"): who sent a request under C{/_matrix/federation/}.

L{FederationAuth.authenticate} reads the X-Matrix header, refuses
C{forbidden_remote_server_names}, fetches the origin's key through the
keyring and checks the signature over method, target, origin, destination
and body. Servlets get the verified origin; see
L{conduit_tw.api.federation._paths.federation_route}.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Protocol

from nacl.signing import VerifyKey

from conduit_tw.config import is_valid_server_name
from conduit_tw.errors import Codes, MatrixError
from conduit_tw.events.signing import SignatureError
from conduit_tw.federation.errors import FederationError
from conduit_tw.federation.xmatrix import XMatrixAuth, XMatrixParseError, parse_authorization, verify_request
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.federation.auth")


class KeyRing(Protocol):
    """What authentication needs from the keyring (L{conduit_tw.federation.keyring})."""

    async def get_verify_key(
        self, server_name: str, key_id: str, min_valid_until_ts: int = 0
    ) -> VerifyKey:
        """The key, valid at least until C{min_valid_until_ts}; raises KeyNotFound."""


def _unauthorized(message: str) -> MatrixError:
    return MatrixError(401, Codes.UNAUTHORIZED, message)


def x_matrix_header(request: Any) -> XMatrixAuth:
    """
    The first X-Matrix C{Authorization} header of a request (a request may
    carry other schemes too).

    @raise MatrixError: 401 M_UNAUTHORIZED when there is none or it is malformed.
    """
    headers = request.requestHeaders.getRawHeaders(b"authorization") or []
    problem = "Missing X-Matrix Authorization header"
    for raw in headers:
        try:
            return parse_authorization(raw)
        except XMatrixParseError as e:
            if raw.strip().lower().startswith(b"x-matrix"):
                problem = f"Malformed X-Matrix Authorization header: {e}"
    raise _unauthorized(problem)


def _body(request: Any) -> Any:
    """The parsed JSON body, C{None} when there is none (what the origin signed)."""
    content = request.content
    if content is None:
        return None
    raw = content.read()
    content.seek(0)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.") from None


class FederationAuth:
    """
    Authenticates federation requests for this server.

    @ivar keyring: where verify keys come from; set by the keyring's wiring
        (until it is, every signed request is refused with 401).
    @ivar on_origin_seen: callables run with each authenticated origin
        (the sender retries a backed-off destination when it contacts us).
    """

    def __init__(
        self,
        server_name: str,
        clock_ms: Callable[[], int],
        keyring: KeyRing | None = None,
        forbidden_server_names: Iterable[str] = (),
    ) -> None:
        self.server_name = server_name
        self.keyring = keyring
        self._clock_ms = clock_ms
        self.forbidden = frozenset(n.lower() for n in forbidden_server_names)
        self.on_origin_seen: list[Callable[[str], Any]] = []

    def is_forbidden(self, server_name: str) -> bool:
        """Whether C{forbidden_remote_server_names} lists C{server_name}."""
        return server_name.lower() in self.forbidden

    async def authenticate(self, request: Any) -> str:
        """
        Verify the request's X-Matrix signature and return its origin.

        @raise MatrixError: 401 M_UNAUTHORIZED when the header is missing or
            malformed, names another destination, the key cannot be found
            or the signature does not verify; 403 M_FORBIDDEN when the
            origin is in C{forbidden_remote_server_names}; 400 M_NOT_JSON
            for a body that is not JSON.
        """
        auth = x_matrix_header(request)
        origin = auth.origin
        if not is_valid_server_name(origin):
            raise _unauthorized("Invalid origin server name")
        if auth.destination is not None and auth.destination != self.server_name:
            raise _unauthorized(f"Request is for {auth.destination}, not this server")
        # Before any key fetch: a forbidden server is never contacted.
        if self.is_forbidden(origin):
            raise MatrixError(403, Codes.FORBIDDEN, "Federation with this server is not allowed")
        content = _body(request)
        try:
            uri = request.uri.decode("ascii")
            method = request.method.decode("ascii")
        except UnicodeDecodeError:
            raise _unauthorized("Request target is not ASCII") from None
        if self.keyring is None:
            raise _unauthorized("Cannot fetch the origin's keys")
        try:
            key = await self.keyring.get_verify_key(origin, auth.key_id, self._clock_ms())
        except (FederationError, SignatureError) as e:
            log.info("Refusing request from {origin}: {error}", origin=origin, error=str(e))
            raise _unauthorized(f"Cannot find key {auth.key_id} of {origin}") from None
        try:
            verify_request(auth, method, uri, self.server_name, content, key)
        except SignatureError as e:
            raise _unauthorized(f"Invalid signature: {e}") from None
        for hook in self.on_origin_seen:
            try:
                hook(origin)
            except Exception:
                log.failure("on_origin_seen hook failed")
        return origin
