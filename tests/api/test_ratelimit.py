"""Token-bucket rate limiting of registration, login and messages."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.errors import MatrixError
from conduit_tw.handlers.auth import Requester
from conduit_tw.handlers.ratelimit import RateLimiter
from tests.api.accounts import OPEN, AccountsTestCase


class BucketTests(SynchronousTestCase):
    """L{RateLimiter} on its own."""

    def setUp(self) -> None:
        self.now = 1_000_000
        self.limiter = RateLimiter(0.5, 2, lambda: self.now)

    def test_burst_then_refill(self) -> None:
        self.limiter.check("k")
        self.limiter.check("k")
        e = self.assertRaises(MatrixError, self.limiter.check, "k")
        self.assertEqual((e.code, e.errcode), (429, "M_LIMIT_EXCEEDED"))
        self.assertEqual(e.extra["retry_after_ms"], 2000)
        self.assertEqual(e.headers["Retry-After"], "2")
        self.limiter.check("other")
        self.now += 1000
        e = self.assertRaises(MatrixError, self.limiter.check, "k")
        self.assertEqual(e.extra["retry_after_ms"], 1000)
        self.now += 1000
        self.limiter.check("k")

    def test_refill_caps_at_burst(self) -> None:
        self.limiter.check("k")
        self.now += 3_600_000
        self.limiter.check("k")
        self.limiter.check("k")
        self.assertRaises(MatrixError, self.limiter.check, "k")

    def test_peek_and_take(self) -> None:
        for _ in range(5):
            self.limiter.check("k", update=False)
        self.limiter.take("k")
        self.limiter.take("k")
        self.limiter.take("k")
        self.assertRaises(MatrixError, self.limiter.check, "k", update=False)

    def test_disabled(self) -> None:
        limiter = RateLimiter(0, 1, lambda: self.now)
        for _ in range(100):
            limiter.check("k")


class LoginLimitTests(AccountsTestCase):
    """rc_login_*: per client IP."""

    config_overrides = {**OPEN, "rc_login_per_second": 0.1, "rc_login_burst_count": 3}

    async def test_login_limited_per_ip(self) -> None:
        await self.register("alice")
        await self.register("bob")
        for _ in range(3):
            r = await self.login("bob")
            self.assertEqual(r.code, 200)
        r = await self.login()
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertEqual(r.json["retry_after_ms"], 10000)
        self.assertEqual(r.header("retry-after"), "10")
        r = await self.request(
            "POST", "/_matrix/client/v3/login",
            {"type": "m.login.password", "user": "alice", "password": "secret pw"},
            client_ip="10.9.9.9",
        )
        self.assertEqual(r.code, 200)
        self.clock.advance(10)
        self.assertEqual((await self.login()).code, 200)

    async def test_failed_logins_limited_per_account(self) -> None:
        await self.register("alice")
        await self.register("bob")
        for i in range(3):
            r = await self.request(
                "POST", "/_matrix/client/v3/login",
                {"type": "m.login.password", "user": "alice", "password": "wrong"},
                client_ip=f"10.0.0.{i}",
            )
            self.assertMatrixError(r, 403, "M_FORBIDDEN")
        # From yet another address: this account is locked for a while ...
        r = await self.login(client_ip="10.0.0.99")
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        # ... but not other accounts.
        r = await self.login("bob", client_ip="10.0.0.99")
        self.assertEqual(r.code, 200)
        self.clock.advance(10)
        r = await self.login(client_ip="10.0.0.98")
        self.assertEqual(r.code, 200)


class RegistrationLimitTests(AccountsTestCase):
    """rc_registration_*: per IP, counting created accounts only."""

    config_overrides = {**OPEN, "rc_registration_per_second": 0.01, "rc_registration_burst_count": 2}

    async def test_registration_limited(self) -> None:
        # UIA round trips do not use up the allowance.
        for _ in range(5):
            r = await self.request("POST", "/_matrix/client/v3/register", {"username": "x"})
            self.assertEqual(r.code, 401)
        await self.register("a1")
        await self.register("a2")
        r = await self.request(
            "POST", "/_matrix/client/v3/register", {"username": "a3", "auth": {"type": "m.login.dummy"}}
        )
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertIn("retry_after_ms", r.json)
        self.assertFalse(await self.hs.users.exists("@a3:test"))

    async def test_checks_limited(self) -> None:
        for _ in range(2):
            r = await self.request("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
            self.assertEqual(r.code, 200)
        r = await self.request("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")


class RequesterLimitTests(AccountsTestCase):
    """check_requester: per user, admins and appservices exempt."""

    config_overrides = {**OPEN, "rc_message_per_second": 0.01, "rc_message_burst_count": 1}

    async def test_exemptions(self) -> None:
        await self.register("admin")  # first user: admin
        await self.register("bob")
        limits = self.hs.ratelimit
        admin = Requester("@admin:test", "D")
        bob = Requester("@bob:test", "D")
        appservice = Requester("@bridge:test", None, appservice_id="irc")
        for _ in range(5):
            await limits.check_requester(limits.message, admin)
            await limits.check_requester(limits.message, appservice)
        await limits.check_requester(limits.message, bob)
        with self.assertRaises(MatrixError) as cm:
            await limits.check_requester(limits.message, bob)
        self.assertEqual(cm.exception.code, 429)
