"""
Synapse's shared-secret registration (C{/_synapse/admin/v1/register}),
with the MAC computed here from Synapse's documentation, independently of
handlers/shared_secret.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from conduit_tw.config import ConfigError
from conduit_tw.config.registration import load_shared_secret
from tests.api.accounts import OPEN, AccountsTestCase

PATH = "/_synapse/admin/v1/register"
SECRET = "a-long-shared-secret-for-tests"


def mac(nonce: str, user: str, password: str, admin: bool, user_type: str | None = None) -> str:
    parts = [nonce, user, password, "admin" if admin else "notadmin"] + ([user_type] if user_type else [])
    return hmac.new(SECRET.encode(), "\x00".join(parts).encode(), hashlib.sha1).hexdigest()


class SharedSecretTests(AccountsTestCase):
    config_overrides = {**OPEN, "registration_shared_secret": SECRET}

    async def nonce(self) -> str:
        r = await self.request("GET", PATH)
        self.assertEqual(r.code, 200, r.body)
        self.assertIsInstance(r.json["nonce"], str)
        return r.json["nonce"]

    async def post(self, **body: Any) -> Any:
        return await self.request("POST", PATH, body)

    async def test_register_admin_and_login(self) -> None:
        nonce = await self.nonce()
        r = await self.post(nonce=nonce, username="root", password="pw-root-1", admin=True,
                            displayname="Root", mac=mac(nonce, "root", "pw-root-1", True))
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@root:test")
        self.assertEqual(r.json["home_server"], "test")
        r2 = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=r.json["access_token"])
        self.assertEqual(r2.json["device_id"], r.json["device_id"])
        acc = await self.hs.users.get_account("@root:test")
        assert acc is not None
        self.assertTrue(acc.is_admin)
        self.assertEqual(await self.hs.event_store.membership("@root:test", self.hs.admin_room.room_id), "join")
        profile = await self.request("GET", "/_matrix/client/v3/profile/@root:test/displayname")
        self.assertEqual(profile.json["displayname"], "Root")
        login = await self.login("root", "pw-root-1")
        self.assertEqual(login.code, 200, login.body)
        # A second, non-admin user with a user_type in the MAC.
        nonce = await self.nonce()
        r = await self.post(nonce=nonce, username="bot", password="pw-bot-1", admin=False,
                            user_type="bot", mac=mac(nonce, "bot", "pw-bot-1", False, "bot"))
        self.assertEqual(r.code, 200, r.body)
        acc = await self.hs.users.get_account("@bot:test")
        assert acc is not None
        self.assertFalse(acc.is_admin)

    async def test_refusals(self) -> None:
        nonce = await self.nonce()
        # The MAC covers the admin flag: claiming admin with a notadmin MAC fails.
        r = await self.post(nonce=nonce, username="eve", password="pw", admin=True,
                            mac=mac(nonce, "eve", "pw", False))
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        # The nonce was used up by that attempt.
        r = await self.post(nonce=nonce, username="eve", password="pw", admin=False,
                            mac=mac(nonce, "eve", "pw", False))
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.post(nonce="made-up", username="eve", password="pw", mac=mac("made-up", "eve", "pw", False))
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        self.assertFalse(await self.hs.users.exists("@eve:test"))
        nonce = await self.nonce()
        r = await self.post(nonce=nonce, username="Bad Name!", password="pw",
                            mac=mac(nonce, "Bad Name!", "pw", False))
        self.assertMatrixError(r, 400, "M_INVALID_USERNAME")
        await self.register("taken")
        nonce = await self.nonce()
        r = await self.post(nonce=nonce, username="taken", password="pw", mac=mac(nonce, "taken", "pw", False))
        self.assertMatrixError(r, 400, "M_USER_IN_USE")
        nonce = await self.nonce()
        r = await self.post(nonce=nonce, username="eve", password="pw", mac="\u00e9" * 40)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.post(nonce=1, username="x", password="pw", mac="00")
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.post(username="x", password="pw", mac="00")
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("POST", PATH, raw_body=b"[1]")
        self.assertMatrixError(r, 400, "M_BAD_JSON")

    async def test_nonce_expires(self) -> None:
        nonce = await self.nonce()
        self.clock.advance(61)
        r = await self.post(nonce=nonce, username="late", password="pw", mac=mac(nonce, "late", "pw", False))
        self.assertMatrixError(r, 400, "M_UNKNOWN")


class ClosedRegistrationTests(AccountsTestCase):
    """The shared secret works while registration is closed."""

    config_overrides = {"registration_shared_secret": SECRET, "rc_registration_per_second": 0}

    async def test_register_while_closed(self) -> None:
        r = await self.request("POST", "/_matrix/client/v3/register",
                               {"username": "x", "password": "p", "auth": {"type": "m.login.dummy"}})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        nonce = (await self.request("GET", PATH)).json["nonce"]
        r = await self.request("POST", PATH, {"nonce": nonce, "username": "x", "password": "pw",
                                              "mac": mac(nonce, "x", "pw", False)})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@x:test")


class DisabledTests(AccountsTestCase):
    async def test_disabled_without_secret(self) -> None:
        r = await self.request("GET", PATH)
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request("POST", PATH, {"nonce": "n", "username": "u", "password": "p", "mac": "m"})
        self.assertMatrixError(r, 400, "M_UNKNOWN")


class SecretFileTests(AccountsTestCase):
    def test_file_created_and_read(self) -> None:
        path = os.path.abspath(self.mktemp())
        secret = load_shared_secret(path)
        self.assertGreaterEqual(len(secret), 40)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(load_shared_secret(path), secret)
        with open(path, "w") as f:
            f.write("  \n")
        self.assertRaises(ConfigError, load_shared_secret, path)
        self.assertRaises(ConfigError, load_shared_secret, os.path.join(path, "not-a-dir", "x"))
