"""JWT login (handlers/jwt_login.py, jwt_secret): org.matrix.login.jwt and Conduit's m.login.token."""

from __future__ import annotations

import warnings
from typing import Any

import jwt

from tests.api.accounts import OPEN, AccountsTestCase

SECRET = "a shared secret of the issuer, 32 bytes or more"


class JWTLoginTests(AccountsTestCase):
    config_overrides = {**OPEN, "jwt_secret": SECRET}

    def token(self, sub: Any = "carol", key: str = SECRET, alg: str = "HS256", **claims: Any) -> str:
        payload = {"sub": sub, "exp": int(self.clock.now) + 300, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key, algorithm=alg)

    async def jwt_login(self, token: str, kind: str = "org.matrix.login.jwt") -> Any:
        return await self.request("POST", "/_matrix/client/v3/login", {"type": kind, "token": token})

    async def test_flow_advertised(self) -> None:
        r = await self.request("GET", "/_matrix/client/v3/login")
        self.assertIn({"type": "org.matrix.login.jwt"}, r.json["flows"])

    async def test_new_user_registered_and_logged_in(self) -> None:
        r = await self.jwt_login(self.token("Carol"))
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@carol:test")
        who = await self.request(
            "GET", "/_matrix/client/v3/account/whoami", access_token=r.json["access_token"]
        )
        self.assertEqual(who.json["user_id"], "@carol:test")
        account = await self.hs.users.get_account("@carol:test")
        self.assertIsNone(account.password_hash)
        # Again: the same account, a new device.
        again = await self.jwt_login(self.token("@carol:test"))
        self.assertEqual(again.json["user_id"], "@carol:test")
        self.assertNotEqual(again.json["device_id"], r.json["device_id"])

    async def test_existing_user(self) -> None:
        body = await self.register("dave")
        r = await self.jwt_login(self.token("dave"))
        self.assertEqual((r.code, r.json["user_id"]), (200, body["user_id"]))

    async def test_conduit_style_m_login_token(self) -> None:
        r = await self.jwt_login(self.token("erin"), kind="m.login.token")
        self.assertEqual((r.code, r.json["user_id"]), (200, "@erin:test"))
        r = await self.jwt_login("syl_not-a-login-token", kind="m.login.token")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_refused_tokens(self) -> None:
        now = int(self.clock.now)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the secret is short for HS512
            hs512 = jwt.encode({"sub": "carol", "exp": now + 300}, SECRET, algorithm="HS512")
        for token in (
            self.token(key="another secret, also long enough for hs256"),
            hs512,
            jwt.encode({"sub": "carol", "exp": now + 300}, None, algorithm="none"),
            self.token(exp=None),
            self.token(sub=None),
            self.token(sub=42),
            self.token(exp=now - 120),
            self.token(nbf=now + 600),
            "not.a.jwt",
        ):
            r = await self.jwt_login(token)
            self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertFalse(await self.hs.users.exists("@carol:test"))

    async def test_expiry_follows_the_server_clock(self) -> None:
        token = self.token()
        self.clock.advance(300 + 61)
        self.assertMatrixError(await self.jwt_login(token), 403, "M_FORBIDDEN")

    async def test_bad_subjects(self) -> None:
        for sub in ("@carol:elsewhere", "bad name", "12345"):
            r = await self.jwt_login(self.token(sub))
            self.assertEqual(r.code, 400, (sub, r.body))
            self.assertEqual(r.json["errcode"], "M_INVALID_USERNAME", sub)

    async def test_deactivated(self) -> None:
        body = await self.register("frank")
        await self.hs.account.deactivate(body["user_id"])
        r = await self.jwt_login(self.token("frank"))
        self.assertMatrixError(r, 403, "M_USER_DEACTIVATED")


class NoSecretTests(AccountsTestCase):
    async def test_not_offered(self) -> None:
        r = await self.request("GET", "/_matrix/client/v3/login")
        self.assertNotIn("org.matrix.login.jwt", [f["type"] for f in r.json["flows"]])
        token = jwt.encode({"sub": "carol", "exp": 2**40}, SECRET, algorithm="HS256")
        r = await self.request(
            "POST", "/_matrix/client/v3/login", {"type": "org.matrix.login.jwt", "token": token}
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request(
            "POST", "/_matrix/client/v3/login", {"type": "m.login.token", "token": token}
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
