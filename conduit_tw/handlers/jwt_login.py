"""
JSON Web Token login (C{jwt_secret}): an external service that shares the
secret signs a token naming a user, and the client logs in with it.

Conduit's semantics, with the login type name Synapse and conduwuit use:

  - C{POST /login} with C{{"type": "org.matrix.login.jwt", "token": JWT}}
    (advertised in C{GET /login} only when C{jwt_secret} is set); Conduit
    itself takes the JWT as C{m.login.token}, which is accepted too when
    the token is no login token of ours (see L{LoginHandler.login}).
  - The signature is HS256 with the secret (UTF-8 bytes), no other
    algorithm (never C{none}); C{exp} is required and, like C{nbf} when
    present, checked against the server's clock with 60 seconds of leeway
    (Conduit's jsonwebtoken defaults).
  - C{sub} is the user: a localpart or a full user ID of this server,
    lower-cased. A user in an appservice's exclusive namespace is refused
    (400 M_EXCLUSIVE), as Conduit does.
  - A user that does not exist yet is registered (without a password,
    whatever C{allow_registration} says: the token's issuer vouches for
    it), as Synapse and conduwuit do; Conduit would make a device for an
    account that does not exist. The usual username rules apply (400
    M_INVALID_USERNAME).

A token that does not verify is 403 M_FORBIDDEN (client-server-api
C{POST /login}: "The login attempt failed").
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import jwt

from conduit_tw.errors import Codes, MatrixError, forbidden
from conduit_tw.handlers.login import resolve_user
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.login")

LOGIN_JWT = "org.matrix.login.jwt"
#: Seconds of clock skew allowed for C{exp} and C{nbf}.
LEEWAY_S = 60
#: RFC 7518 section 3.2: an HS256 key should have at least 256 bits.
MIN_SECRET_BYTES = 32
#: PyJWT >= 2.10 warns about short keys on every decode; we warn once.
_SHORT_KEY_WARNING: Any = getattr(getattr(jwt, "warnings", None), "InsecureKeyLengthWarning", None)


class JWTLogin:
    """
    Turns a JWT into the local user it names (see the module docstring).

    @param registration: the L{conduit_tw.handlers.registration.RegistrationHandler}
        (username rules, exclusive namespaces, account creation).
    @param users: the C{UserStore}.
    """

    def __init__(
        self,
        secret: str,
        server_name: str,
        registration: Any,
        users: Any,
        clock_ms: Callable[[], int],
    ) -> None:
        self._key = secret.encode("utf-8")
        if len(self._key) < MIN_SECRET_BYTES:
            log.warn(
                "jwt_secret is shorter than {n} bytes: tokens signed with it are easier to forge",
                n=MIN_SECRET_BYTES,
            )
        self.server_name = server_name
        self._registration = registration
        self._users = users
        self._clock_ms = clock_ms

    def claims(self, token: str) -> dict[str, Any]:
        """
        The verified claims of C{token}.

        @raise MatrixError: 403 M_FORBIDDEN when it does not verify or has expired.
        """
        try:
            with warnings.catch_warnings():
                if _SHORT_KEY_WARNING is not None:
                    warnings.simplefilter("ignore", _SHORT_KEY_WARNING)
                # exp and nbf are checked below, against our clock.
                claims = jwt.decode(
                    token, self._key, algorithms=["HS256"],
                    options={"require": ["exp", "sub"], "verify_exp": False, "verify_nbf": False,
                             "verify_iat": False, "verify_aud": False, "verify_iss": False},
                )
        except jwt.PyJWTError:
            raise forbidden("Invalid JSON Web Token") from None
        now = self._clock_ms() / 1000
        try:
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", 0))
        except (TypeError, ValueError):
            raise forbidden("Invalid JSON Web Token") from None
        if exp + LEEWAY_S <= now:
            raise forbidden("The JSON Web Token has expired")
        if nbf - LEEWAY_S > now:
            raise forbidden("The JSON Web Token is not valid yet")
        return claims

    async def user_for(self, token: str) -> str:
        """The user a valid token names, registered first if new."""
        sub = self.claims(token)["sub"]
        user_id = resolve_user(sub, self.server_name) if isinstance(sub, str) else None
        if user_id is None:
            raise MatrixError(400, Codes.INVALID_USERNAME, "The token's subject is no user of this server")
        if any(check(user_id) for check in self._registration.exclusive_checks):
            raise MatrixError(400, Codes.EXCLUSIVE, "This user ID is reserved by an application service")
        if not await self._users.exists(user_id):
            user_id = self._registration.check_username(user_id)
            try:
                await self._registration.create_user(user_id, None)
            except MatrixError as e:
                if e.errcode != Codes.USER_IN_USE:  # made meanwhile: fine
                    raise
        return user_id
