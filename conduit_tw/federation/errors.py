"""
Errors of the federation layer. Callers catch L{FederationError} for "the
remote side could not be asked or refused", and the subclasses when they
act differently (back off on L{NotReachable}, report the remote's
C{errcode} from L{RemoteError}).
"""

from __future__ import annotations

from typing import Any


class FederationError(Exception):
    """Something about talking to another server failed."""


class FederationDisabled(FederationError):
    """
    Federation is off (C{allow_federation = false}), or off for this
    destination (C{forbidden_remote_server_names}): no request was made.
    """


class KeyNotFound(FederationError):
    """A server's verify key could not be found (neither cached nor fetched)."""

    def __init__(self, server_name: str, key_id: str, reason: str = "") -> None:
        super().__init__(
            f"No key {key_id!r} for {server_name!r}" + (f": {reason}" if reason else "")
        )
        self.server_name = server_name
        self.key_id = key_id


class NotReachable(FederationError):
    """
    The destination could not be reached or did not answer usefully:
    resolution, connection, TLS, timeout, or a response too large.
    """

    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


class RemoteError(FederationError):
    """
    The destination answered with an error status (or an unreadable body).

    @ivar code: the HTTP status.
    @ivar errcode: the Matrix C{errcode} of the JSON error body, if any.
    @ivar error: the C{error} message of the body, if any.
    @ivar body: the parsed JSON body (C{None} if it was not JSON).
    """

    def __init__(
        self,
        destination: str,
        code: int,
        errcode: str | None = None,
        error: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(
            f"{destination} answered {code}"
            + (f" {errcode}" if errcode else "")
            + (f": {error}" if error else "")
        )
        self.destination = destination
        self.code = code
        self.errcode = errcode
        self.error = error
        self.body = body
