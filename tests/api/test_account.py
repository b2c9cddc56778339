"""whoami, password change, deactivation."""

from __future__ import annotations

from tests.api.accounts import AccountsTestCase

WHOAMI = "/_matrix/client/v3/account/whoami"
PASSWORD = "/_matrix/client/v3/account/password"
DEACTIVATE = "/_matrix/client/v3/account/deactivate"


class WhoamiTests(AccountsTestCase):
    """GET /account/whoami."""

    async def test_whoami(self) -> None:
        a = await self.register("alice", device_id="DEV")
        for prefix in ("v3", "r0"):
            r = await self.request("GET", f"/_matrix/client/{prefix}/account/whoami", access_token=a["access_token"])
            self.assertEqual(r.json, {"user_id": "@alice:test", "device_id": "DEV", "is_guest": False})

    async def test_errors(self) -> None:
        r = await self.request("GET", WHOAMI)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("GET", WHOAMI, access_token="bogus")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(r.json["soft_logout"], False)


class PasswordChangeTests(AccountsTestCase):
    """POST /account/password."""

    async def test_change_logs_out_other_devices(self) -> None:
        a = await self.register("alice")
        other = (await self.login()).json
        r = await self.request("POST", PASSWORD, {"new_password": "new pw"}, access_token=a["access_token"])
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        r = await self.request(
            "POST", PASSWORD,
            {"new_password": "new pw", "auth": self.password_auth("alice", session=r.json["session"])},
            access_token=a["access_token"],
        )
        self.assertEqual((r.code, r.json), (200, {}))
        self.assertMatrixError(await self.login("alice", "secret pw"), 403, "M_FORBIDDEN")
        self.assertEqual((await self.login("alice", "new pw")).code, 200)
        r = await self.request("GET", WHOAMI, access_token=a["access_token"])
        self.assertEqual(r.code, 200)
        r = await self.request("GET", WHOAMI, access_token=other["access_token"])
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_keep_devices(self) -> None:
        a = await self.register("alice")
        other = (await self.login()).json
        r = await self.request(
            "POST", PASSWORD,
            {"new_password": "new pw", "logout_devices": False, "auth": self.password_auth("alice")},
            access_token=a["access_token"],
        )
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", WHOAMI, access_token=other["access_token"])
        self.assertEqual(r.code, 200)

    async def test_wrong_password_and_bad_requests(self) -> None:
        a = await self.register("alice")
        tok = a["access_token"]
        r = await self.request(
            "POST", PASSWORD, {"new_password": "n", "auth": self.password_auth("alice", "wrong")}, access_token=tok
        )
        self.assertEqual((r.code, r.json["errcode"]), (401, "M_FORBIDDEN"))
        r = await self.request("POST", PASSWORD, {"auth": self.password_auth("alice")}, access_token=tok)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request(
            "POST", PASSWORD, {"new_password": "n", "logout_devices": "yes"}, access_token=tok
        )
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", PASSWORD, {"new_password": "n"})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        self.assertEqual((await self.login()).code, 200)

    async def test_rehash_on_login_with_new_parameters(self) -> None:
        await self.register("alice")
        from argon2 import PasswordHasher

        self.hs.passwords.hasher = PasswordHasher(time_cost=2, memory_cost=512, parallelism=1)
        self.assertEqual((await self.login()).code, 200)
        account = await self.hs.users.get_account("@alice:test")
        self.assertIn("m=512", account.password_hash)


class DeactivationTests(AccountsTestCase):
    """POST /account/deactivate."""

    async def _deactivate(self, token: str, **extra) -> dict:
        r = await self.request(
            "POST", DEACTIVATE, {"auth": self.password_auth("alice"), **extra}, access_token=token
        )
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_deactivate(self) -> None:
        a = await self.register("alice")
        other = (await self.login()).json
        hook_calls = []
        self.hs.account.on_deactivated.append(lambda uid, erase: hook_calls.append((uid, erase)))
        r = await self.request("POST", DEACTIVATE, {}, access_token=a["access_token"])
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        body = await self._deactivate(a["access_token"])
        self.assertEqual(body, {"id_server_unbind_result": "success"})
        self.assertEqual(hook_calls, [("@alice:test", False)])
        for tok in (a["access_token"], other["access_token"]):
            r = await self.request("GET", WHOAMI, access_token=tok)
            self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        # Deactivation drops the password, so even the former one cannot
        # learn that the account exists (M_USER_DEACTIVATED needs the right one).
        self.assertMatrixError(await self.login(), 403, "M_FORBIDDEN")
        # The user ID is never reusable.
        r = await self.request(
            "POST", "/_matrix/client/v3/register", {"username": "alice", "auth": {"type": "m.login.dummy"}}
        )
        self.assertMatrixError(r, 400, "M_USER_IN_USE")
        r = await self.request("GET", "/_matrix/client/v3/register/available?username=alice")
        self.assertMatrixError(r, 400, "M_USER_IN_USE")
        # Without erase the profile stays.
        r = await self.request("GET", "/_matrix/client/v3/profile/@alice:test")
        self.assertEqual(r.json, {"displayname": "alice"})
        self.assertEqual(await self.hs.device_store.list("@alice:test"), [])

    async def test_erase(self) -> None:
        a = await self.register("alice")
        hook_calls = []
        self.hs.account.on_deactivated.append(lambda uid, erase: hook_calls.append((uid, erase)))
        await self._deactivate(a["access_token"], erase=True)
        r = await self.request("GET", "/_matrix/client/v3/profile/@alice:test")
        self.assertEqual((r.code, r.json), (200, {}))
        self.assertEqual(hook_calls, [("@alice:test", True)])

    async def test_admin_loses_rights(self) -> None:
        a = await self.register("alice")
        self.assertTrue(await self.hs.users.is_admin("@alice:test"))
        await self._deactivate(a["access_token"])
        self.assertFalse(await self.hs.users.is_admin("@alice:test"))

    async def test_wrong_password_and_bad_erase(self) -> None:
        a = await self.register("alice")
        r = await self.request(
            "POST", DEACTIVATE, {"auth": self.password_auth("alice", "nope")}, access_token=a["access_token"]
        )
        self.assertEqual((r.code, r.json["errcode"]), (401, "M_FORBIDDEN"))
        r = await self.request("POST", DEACTIVATE, {"erase": "yes"}, access_token=a["access_token"])
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        self.assertEqual((await self.login()).code, 200)
