"""
Matrix errors: L{MatrixError} carries an HTTP status, an C{errcode} and a
message, and becomes the C{{"errcode", "error"}} JSON body the spec requires
(client-server-api "Standard error response").
"""

from __future__ import annotations

from typing import Any


class Codes:
    """The error codes of the spec that this server uses."""

    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    USER_LOCKED = "M_USER_LOCKED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    THREEPID_MEDIUM_NOT_SUPPORTED = "M_THREEPID_MEDIUM_NOT_SUPPORTED"
    SERVER_NOT_TRUSTED = "M_SERVER_NOT_TRUSTED"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    BAD_STATE = "M_BAD_STATE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    CAPTCHA_NEEDED = "M_CAPTCHA_NEEDED"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    RESOURCE_LIMIT_EXCEEDED = "M_RESOURCE_LIMIT_EXCEEDED"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    USER_AWAITING_APPROVAL = "M_USER_AWAITING_APPROVAL"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    INVALID_SIGNATURE = "M_INVALID_SIGNATURE"


class MatrixError(Exception):
    """
    An error answered to the client as a Matrix error response.

    @ivar code: the HTTP status.
    @ivar errcode: the Matrix error code (C{M_...}).
    @ivar msg: the human-readable C{error} string.
    @ivar extra: further top-level keys of the body (e.g. C{retry_after_ms}).
    @ivar headers: extra response headers (e.g. C{Retry-After}).
    """

    def __init__(
        self,
        code: int,
        errcode: str,
        msg: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{code} {errcode}: {msg}")
        self.code = code
        self.errcode = errcode
        self.msg = msg
        self.extra = extra
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        """The response body."""
        body = {"errcode": self.errcode, "error": self.msg}
        body.update(self.extra)
        return body


class InteractiveAuthRequired(Exception):
    """
    A 401 answer of the User-Interactive Authentication API whose body is
    the UIA state (flows, params, session, completed, maybe an error).
    """

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("interactive authentication required")
        self.body = body


def forbidden(msg: str) -> MatrixError:
    """403 M_FORBIDDEN."""
    return MatrixError(403, Codes.FORBIDDEN, msg)


def not_found(msg: str) -> MatrixError:
    """404 M_NOT_FOUND."""
    return MatrixError(404, Codes.NOT_FOUND, msg)


def bad_json(msg: str) -> MatrixError:
    """400 M_BAD_JSON."""
    return MatrixError(400, Codes.BAD_JSON, msg)


def missing_param(msg: str) -> MatrixError:
    """400 M_MISSING_PARAM."""
    return MatrixError(400, Codes.MISSING_PARAM, msg)


def invalid_param(msg: str) -> MatrixError:
    """400 M_INVALID_PARAM."""
    return MatrixError(400, Codes.INVALID_PARAM, msg)
