"""
The User-Interactive Authentication API (client-server-api "User-Interactive
Authentication API").

An endpoint calls L{UIA.authenticate} with the flows it offers. Without an
C{auth} dict (or with one that has neither C{type} nor C{session}) the
answer is 401 with C{flows}, C{params} and a new C{session}. Each submitted
stage is checked; stages must follow a flow in order. A successful stage
that does not finish a flow answers 401 with C{completed}; a failed one
answers 401 with C{errcode}/C{error} added; when some flow is complete the
call returns and the endpoint does its work. A session is then consumed, so
every UIA-protected call (e.g. C{/login/get_token}, which must re-prompt)
needs a fresh authentication; an endpoint whose retries must be answered
with the result of the call (the spec: "servers must return either a 401
response with the completed stages, or the result of the API call", e.g.
C{/register}) passes C{keep=True} and keeps the session until it expires.

Sessions live in memory: they last minutes (L{SESSION_LIFETIME_MS}), and a
restart only makes a client start its flow again. A session is bound to
the authenticated user that started it (an unknown, expired or foreign
session answers 400 C{M_UNKNOWN}) and to the operation of its first
request: the endpoint plus an C{operation} value the endpoint derives from
the method, path and identifying body parameters (e.g. the device to
delete). A session used for a different operation answers 403
C{M_FORBIDDEN}, so authenticating "delete device X" never authorises
"delete device Y" or a password change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from conduit_tw.errors import Codes, InteractiveAuthRequired, MatrixError

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"

#: How long a UIA session may take from its first request.
SESSION_LIFETIME_MS = 30 * 60 * 1000
#: Sessions kept at most (oldest dropped first) so unauthenticated
#: /register calls cannot grow memory without bound.
MAX_SESSIONS = 10_000


class StageFailed(Exception):
    """A stage check failed; the client may try again (401 with errcode)."""

    def __init__(self, errcode: str, msg: str) -> None:
        super().__init__(msg)
        self.errcode = errcode
        self.msg = msg


#: A stage checker: C{(auth dict, session)}; raises L{StageFailed} (or a
#: L{MatrixError} for a malformed request) when the stage is not passed.
Checker = Callable[[dict[str, Any], "Session"], Awaitable[None]]


@dataclass
class Session:
    """One UIA session."""

    session_id: str
    endpoint: str
    user_id: str | None
    created_ms: int
    flows: list[list[str]]
    params: dict[str, Any]
    completed: list[str] = field(default_factory=list)
    #: What the session's first request asked for (see the module docstring).
    operation: Any = None
    #: Free space for the endpoint (e.g. what registration validated).
    data: dict[str, Any] = field(default_factory=dict)


class UIA:
    """Runs UIA sessions; see the module docstring."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._sessions: dict[str, Session] = {}
        #: Built-in stage checkers; endpoints may pass more per call.
        self.checkers: dict[str, Checker] = {DUMMY: _dummy}
        self.lifetime_ms = SESSION_LIFETIME_MS

    def _new_session(
        self,
        endpoint: str,
        user_id: str | None,
        flows: list[list[str]],
        params: dict[str, Any],
        operation: Any = None,
    ) -> Session:
        now = self._clock_ms()
        self._expire(now)
        sid = secrets.token_urlsafe(18)
        session = Session(sid, endpoint, user_id, now, flows, params, operation=operation)
        self._sessions[sid] = session
        return session

    async def expire_sessions(self) -> None:
        """Forget expired sessions now (periodic housekeeping; else done on each new one)."""
        self._expire(self._clock_ms())

    def _expire(self, now: int) -> None:
        # Dicts keep insertion order, so the oldest sessions come first.
        while self._sessions:
            sid, oldest = next(iter(self._sessions.items()))
            if oldest.created_ms + self.lifetime_ms > now and len(self._sessions) < MAX_SESSIONS:
                break
            del self._sessions[sid]

    def get_session(self, session_id: str) -> Session | None:
        """A live session (for tests and endpoints that peek)."""
        session = self._sessions.get(session_id)
        if session is not None and session.created_ms + self.lifetime_ms <= self._clock_ms():
            del self._sessions[session_id]
            return None
        return session

    @staticmethod
    def _body(session: Session, with_completed: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "flows": [{"stages": list(f)} for f in session.flows],
            "params": session.params,
            "session": session.session_id,
        }
        if with_completed:
            body["completed"] = list(session.completed)
        return body

    async def authenticate(
        self,
        body: dict[str, Any],
        endpoint: str,
        flows: list[list[str]],
        user_id: str | None = None,
        params: dict[str, Any] | None = None,
        checkers: dict[str, Checker] | None = None,
        on_new_session: Callable[[Session], Awaitable[None] | None] | None = None,
        operation: Any = None,
        keep: bool = False,
    ) -> Session:
        """
        Run one UIA step for a request.

        @param body: the request's JSON object (its C{auth} key is used).
        @param endpoint: a name binding the session to this endpoint.
        @param flows: the flows offered, each a list of stage types.
        @param user_id: the authenticated user, when there is one; sessions
            are bound to it and C{m.login.password} checks against it.
        @param checkers: extra stage checkers for this call.
        @param operation: a comparable value naming what this request asks
            for (method, path, identifying parameters); a session only
            authorises the operation of its first request.
        @param keep: keep the completed session (until it expires) so a
            retry of the same call finds it complete.
        @return: the completed session (removed from the store unless
            C{keep}).
        @raise InteractiveAuthRequired: 401 with the UIA state.
        @raise MatrixError: 400 M_UNKNOWN for an unknown/expired/foreign
            session, 403 M_FORBIDDEN for a session of another operation,
            or the error a checker raised for a malformed request.
        """
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, Codes.BAD_JSON, "'auth' must be an object")
        params = params or {}
        sid = auth.get("session") if auth else None
        stage = auth.get("type") if auth else None
        if sid is not None and not isinstance(sid, str):
            raise MatrixError(400, Codes.BAD_JSON, "'auth.session' must be a string")
        if stage is not None and not isinstance(stage, str):
            raise MatrixError(400, Codes.BAD_JSON, "'auth.type' must be a string")

        if sid is None:
            session = self._new_session(endpoint, user_id, flows, params, operation)
            if on_new_session is not None:
                await _maybe_await(on_new_session(session))
            if stage is None:
                raise InteractiveAuthRequired(self._body(session, with_completed=False))
        else:
            found = self.get_session(sid)
            if found is None or found.user_id != user_id:
                raise MatrixError(400, Codes.UNKNOWN, "Unknown or expired session ID")
            if found.endpoint != endpoint or found.operation != operation:
                raise MatrixError(
                    403,
                    Codes.FORBIDDEN,
                    "Requested operation has changed during the UI authentication session",
                )
            session = found

        if stage is not None and stage not in session.completed:
            assert auth is not None
            expected = {
                f[len(session.completed)]
                for f in session.flows
                if len(f) > len(session.completed) and f[: len(session.completed)] == session.completed
            }
            if stage not in expected:
                offered = any(stage in f for f in session.flows)
                raise InteractiveAuthRequired(
                    {
                        "errcode": Codes.FORBIDDEN if offered else Codes.UNRECOGNIZED,
                        "error": (
                            f"Stage {stage} is not the next stage of any flow"
                            if offered
                            else f"Unsupported authentication type {stage}"
                        ),
                        **self._body(session, with_completed=True),
                    }
                )
            checker = (checkers or {}).get(stage) or self.checkers.get(stage)
            if checker is None:
                raise InteractiveAuthRequired(
                    {
                        "errcode": Codes.UNRECOGNIZED,
                        "error": f"Unsupported authentication type {stage}",
                        **self._body(session, with_completed=True),
                    }
                )
            try:
                await checker(auth, session)
            except StageFailed as e:
                raise InteractiveAuthRequired(
                    {"errcode": e.errcode, "error": e.msg, **self._body(session, with_completed=True)}
                ) from None
            session.completed.append(stage)

        if any(session.completed == f for f in session.flows):
            if not keep:
                self._sessions.pop(session.session_id, None)
            return session
        raise InteractiveAuthRequired(self._body(session, with_completed=True))


async def _dummy(auth: dict[str, Any], session: Session) -> None:
    """C{m.login.dummy} always succeeds."""


async def _maybe_await(value: Any) -> None:
    if hasattr(value, "__await__"):
        await value
