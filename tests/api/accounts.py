"""
Helpers for account tests: open registration, no rate limits (unless a
test class sets them), a cheap password hasher, and shortcuts to register
and log in through the real API.
"""

from __future__ import annotations

from typing import Any

import time as _time

from argon2 import PasswordHasher

from conduit_tw import homeserver
from conduit_tw.config import OPEN_REGISTRATION_KEY
from tests.server import HomeserverTestCase, Response

#: Config for open registration without rate limits.
OPEN = {
    "allow_registration": True,
    OPEN_REGISTRATION_KEY: True,
    "rc_registration_per_second": 0,
    "rc_login_per_second": 0,
    "rc_message_per_second": 0,
    "rc_joins_per_second": 0,
    "rc_invites_per_second": 0,
    "rc_profile_per_second": 0,
    "rc_account_data_per_second": 0,
    "rc_room_aliases_per_second": 0,
    "rc_directory_per_second": 0,
    "rc_pushers_per_second": 0,
    "rc_keys_per_second": 0,
}


class FakeTime:
    """Stands in for the C{time} module of L{homeserver}: a clock tests move."""

    def __init__(self) -> None:
        self.now = _time.time()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class AccountsTestCase(HomeserverTestCase):
    """A server with open registration; see the module docstring."""

    config_overrides: dict[str, Any] = OPEN

    async def _start(self) -> None:
        #: The server's clock (C{self.clock.advance(seconds)}).
        self.clock = FakeTime()
        self.patch(homeserver, "time", self.clock)
        await super()._start()
        # argon2 with production parameters costs ~50 ms a hash; tests make
        # many, so they use the same algorithm with tiny parameters.
        self.hs.passwords.hasher = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)

    async def register(
        self, username: str | None = "alice", password: str | None = "secret pw", **extra: Any
    ) -> dict[str, Any]:
        """Register through /register (dummy auth); returns the 200 body."""
        body: dict[str, Any] = {"auth": {"type": "m.login.dummy"}, **extra}
        if username is not None:
            body["username"] = username
        if password is not None:
            body["password"] = password
        r = await self.request("POST", "/_matrix/client/v3/register", body)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def login(
        self, user: str = "alice", password: str = "secret pw", client_ip: str = "127.0.0.1", **extra: Any
    ) -> Response:
        """POST /login with m.login.password."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            **extra,
        }
        return await self.request("POST", "/_matrix/client/v3/login", body, client_ip=client_ip)

    def password_auth(self, user_id: str, password: str = "secret pw", session: str | None = None) -> dict[str, Any]:
        """A UIA m.login.password auth dict."""
        auth: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        if session is not None:
            auth["session"] = session
        return auth
