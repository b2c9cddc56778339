"""Password hashing through the API: the configured parameters, the queue's 429, re-hashing."""

from __future__ import annotations

from argon2 import PasswordHasher

from conduit_tw.handlers.passwords import make_hasher
from tests.api.accounts import OPEN, AccountsTestCase
from tests.server import HomeserverTestCase


class ConfiguredTests(HomeserverTestCase):
    """The C{password_hash_*} keys reach the hasher and the bound."""

    config_overrides = {
        **OPEN,
        "password_hash_memory_kib": 1024,
        "password_hash_iterations": 1,
        "password_hash_concurrency": 3,
        "password_hash_queue": 5,
    }

    async def test_parameters(self) -> None:
        passwords = self.hs.passwords
        self.assertEqual((passwords.concurrency, passwords.queue_limit), (3, 5))
        self.assertIn("$argon2id$v=19$m=1024,t=1,p=1$", await passwords.hash("pw"))


class QueueTests(AccountsTestCase):
    """With every slot taken and the queue full, password requests get 429 and may retry."""

    async def _fill(self) -> None:
        passwords = self.hs.passwords
        passwords.queue_limit = 0
        for _ in range(passwords.concurrency):
            await passwords._slots.acquire()

    def _free(self) -> None:
        for _ in range(self.hs.passwords.concurrency):
            self.hs.passwords._slots.release()

    async def test_login_429_then_retry(self) -> None:
        await self.register("alice")
        await self._fill()
        r = await self.login()
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertGreater(r.json["retry_after_ms"], 0)
        self.assertIsNotNone(r.header("Retry-After"))
        r = await self.login(password="wrong")  # no hint whether the password was right
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self._free()
        self.assertEqual((await self.login()).code, 200)

    async def test_register_429(self) -> None:
        await self._fill()
        r = await self.request(
            "POST", "/_matrix/client/v3/register",
            {"auth": {"type": "m.login.dummy"}, "username": "bob", "password": "secret pw"},
        )
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self._free()
        await self.register("bob")

    async def test_uia_password_stage_429(self) -> None:
        tok = (await self.register("alice"))["access_token"]
        await self._fill()
        r = await self.request(
            "POST", "/_matrix/client/v3/account/password",
            {"new_password": "new pw", "auth": self.password_auth("alice")}, access_token=tok,
        )
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self._free()
        self.assertEqual((await self.login()).code, 200)


class RehashTests(AccountsTestCase):
    """Hashes of earlier parameters keep verifying and are upgraded on login."""

    async def test_old_default_rehashed_to_configured(self) -> None:
        # argon2-cffi's own defaults (t=3, m=64 MiB, p=4): what earlier versions stored.
        self.hs.passwords.hasher = PasswordHasher()
        await self.register("alice")
        old = (await self.hs.users.get_account("@alice:test")).password_hash
        self.assertIn("m=65536,t=3,p=4", old)
        config = self.hs.config
        self.hs.passwords.hasher = make_hasher(
            config.password_hash_memory_kib, config.password_hash_iterations
        )
        self.assertMatrixError(await self.login(password="wrong"), 403, "M_FORBIDDEN")
        self.assertEqual((await self.hs.users.get_account("@alice:test")).password_hash, old)
        self.assertEqual((await self.login()).code, 200)
        new = (await self.hs.users.get_account("@alice:test")).password_hash
        self.assertIn("$argon2id$v=19$m=19456,t=2,p=1$", new)
        self.assertEqual((await self.login()).code, 200)
        self.assertEqual((await self.hs.users.get_account("@alice:test")).password_hash, new)
