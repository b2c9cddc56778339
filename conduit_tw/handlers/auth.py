"""
Who is calling: access-token authentication (client-server-api "Using
access tokens"). Tokens come from the C{Authorization: Bearer} header or,
unless C{allow_access_token_query_parameter} is false, from the
C{access_token} query parameter (deprecated by the spec, but still sent by
many clients and bridges). When both are given the header wins. The query
form never reaches a log line: the request log writes the path without
its query string, and L{redact_uri} masks the token in any URI that must
be logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.storage.stores.tokens import TokenStore


@dataclass(frozen=True)
class Requester:
    """The authenticated caller of a request."""

    user_id: str
    device_id: str | None
    is_guest: bool = False
    appservice_id: str | None = None
    access_token: str | None = None


def txn_scope(requester: Requester) -> str | None:
    """
    What a client transaction ID is scoped to: the device, else for an
    appservice acting without one its ID (never its as_token, which would
    end up stored with the event), else the token.
    """
    if requester.device_id:
        return requester.device_id
    if requester.appservice_id is not None:
        return "appservice:" + requester.appservice_id
    return requester.access_token


def bearer_token(request) -> str | None:
    """The token of an C{Authorization: Bearer} header, if present."""
    raw = request.getHeader(b"authorization")
    if not raw:
        return None
    header = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def query_token(request) -> str | None:
    """The C{access_token} query parameter, if present and non-empty."""
    args = getattr(request, "args", None) or {}
    values = args.get(b"access_token")
    if not values:
        return None
    raw = values[0]
    token = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return token.strip() or None


_TOKEN_IN_URI = re.compile(r"(?i)([?&]access_token=)[^&#]*")


def redact_uri(uri: str | bytes) -> str:
    """C{uri} with the value of any C{access_token} query parameter masked."""
    if isinstance(uri, bytes):
        uri = uri.decode("ascii", "replace")
    return _TOKEN_IN_URI.sub(r"\1<redacted>", uri)


class Auth:
    """Turns a request into a L{Requester} or a 401."""

    def __init__(
        self, tokens: TokenStore, clock_ms: Callable[[], int], allow_query_token: bool = True
    ) -> None:
        self.tokens = tokens
        #: Whether C{?access_token=} is accepted (config
        #: C{allow_access_token_query_parameter}).
        self.allow_query_token = allow_query_token
        self._clock_ms = clock_ms
        #: Called as C{seen(user_id, device_id, ip)} for every authenticated
        #: request (the device handler keeps last_seen_ip/ts with it). Must
        #: be cheap and synchronous.
        self.seen: Optional[Callable[[str, str, str], None]] = None
        #: C{(request, token) -> Requester | None}: the appservice code's
        #: answer for C{as_token}s (identity assertion), asked first.
        self.appservice_requester: Optional[Callable[[Any, str], Awaitable[Optional["Requester"]]]] = None

    def token_of(self, request) -> str | None:
        """The request's access token: the header, else the query parameter."""
        token = bearer_token(request)
        if token is None and self.allow_query_token:
            token = query_token(request)
        return token

    async def get_requester(
        self, request, allow_guest: bool = False, allow_expired: bool = False
    ) -> Requester:
        """
        Authenticate C{request}.

        @raise MatrixError: 401 M_MISSING_TOKEN without a token, 401
            M_UNKNOWN_TOKEN for an unknown one, 401 M_UNKNOWN_TOKEN with
            C{soft_logout: true} for an expired one (client-server-api
            "Soft logout"), 403 M_GUEST_ACCESS_FORBIDDEN for guests on
            endpoints they may not use.
        """
        token = self.token_of(request)
        if token is None:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token.")
        if self.appservice_requester is not None:
            appservice = await self.appservice_requester(request, token)
            if appservice is not None:
                return appservice
        info = await self.tokens.lookup(token)
        if info is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token.", soft_logout=False)
        if (
            info.expires_at is not None
            and not allow_expired
            and self._clock_ms() >= info.expires_at
        ):
            raise MatrixError(
                401, Codes.UNKNOWN_TOKEN, "Access token has expired.", soft_logout=True
            )
        if info.is_guest and not allow_guest:
            raise MatrixError(
                403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is not allowed here."
            )
        if info.revoke_refresh is not None:
            # First use of a refreshed token: the old refresh token dies now.
            await self.tokens.clear_revoke_refresh(token, info)
        if self.seen is not None and info.device_id:
            ip = getattr(request, "client_ip", None)
            if ip is not None:
                self.seen(info.user_id, info.device_id, ip)
        return Requester(
            user_id=info.user_id,
            device_id=info.device_id,
            is_guest=info.is_guest,
            appservice_id=info.appservice_id,
            access_token=token,
        )
