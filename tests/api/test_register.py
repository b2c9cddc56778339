"""POST /register, /register/available, registration tokens, guests."""

from __future__ import annotations

import os

from tests.api.accounts import OPEN, AccountsTestCase

REGISTER = "/_matrix/client/v3/register"
AVAILABLE = "/_matrix/client/v3/register/available"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


class RegistrationDisabledTests(AccountsTestCase):
    """allow_registration = false (the default)."""

    config_overrides = {"rc_registration_per_second": 0}

    async def test_register_forbidden(self) -> None:
        r = await self.request(
            "POST", REGISTER, {"username": "a", "password": "b", "auth": {"type": "m.login.dummy"}}
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("POST", "/_matrix/client/r0/register", {"username": "a"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_available_and_validity_forbidden(self) -> None:
        r = await self.request("GET", AVAILABLE + "?username=alice")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", VALIDITY + "?token=x")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_guest_forbidden(self) -> None:
        r = await self.request("POST", REGISTER + "?kind=guest", {})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")


class OpenRegistrationTests(AccountsTestCase):
    """allow_registration with the open-registration flag: m.login.dummy."""

    async def test_success_response(self) -> None:
        body = await self.register("alice", device_id="MYDEVICE", initial_device_display_name="Phone")
        self.assertEqual(body["user_id"], "@alice:test")
        self.assertEqual(body["home_server"], "test")
        self.assertEqual(body["device_id"], "MYDEVICE")
        self.assertIsInstance(body["access_token"], str)
        self.assertNotIn("refresh_token", body)
        self.assertNotIn("expires_in_ms", body)
        r = await self.request("GET", "/_matrix/client/v3/devices/MYDEVICE", access_token=body["access_token"])
        self.assertEqual(r.json["display_name"], "Phone")

    async def test_token_is_opaque_and_stored_hashed(self) -> None:
        body = await self.register("alice")
        token = body["access_token"]
        self.assertGreater(len(token), 40)
        rows = await self.hs.tokens.info.iter_from(b"\x00")
        self.assertEqual(len(rows), 1)
        self.assertNotIn(token.encode(), rows[0][0] + rows[0][1])

    async def test_password_hashed_with_argon2id(self) -> None:
        await self.register("alice", password="hunter2")
        account = await self.hs.users.get_account("@alice:test")
        self.assertTrue(account.password_hash.startswith("$argon2id$"))
        self.assertNotIn("hunter2", account.password_hash)

    async def test_production_hash_parameters(self) -> None:
        """The server's own hasher (before tests swap it) uses OWASP's argon2id parameters."""
        from argon2 import Type

        from conduit_tw.handlers.passwords import Passwords

        hasher = Passwords(None).hasher
        self.assertGreaterEqual(hasher.memory_cost, 19 * 1024)
        self.assertGreaterEqual(hasher.time_cost, 2)
        self.assertEqual(hasher.type, Type.ID)

    async def test_inhibit_login(self) -> None:
        body = await self.register("alice", inhibit_login=True)
        self.assertEqual(body, {"user_id": "@alice:test", "home_server": "test"})
        self.assertEqual(await self.hs.device_store.list("@alice:test"), [])
        r = await self.login()
        self.assertEqual(r.code, 200)

    async def test_refresh_token_requested(self) -> None:
        body = await self.register("alice", refresh_token=True)
        self.assertIsInstance(body["refresh_token"], str)
        self.assertGreater(body["expires_in_ms"], 0)

    async def test_username_lowercased(self) -> None:
        body = await self.register("Alice.Smith")
        self.assertEqual(body["user_id"], "@alice.smith:test")

    async def test_all_allowed_characters(self) -> None:
        body = await self.register("a-z_0.9=x/y+z")
        self.assertEqual(body["user_id"], "@a-z_0.9=x/y+z:test")

    async def test_invalid_usernames(self) -> None:
        for bad in ["", "al ice", "alice:test", "ali#ce", "élan", "1234", "a" * 250, 5]:
            body = {"username": bad, "password": "pw", "auth": {"type": "m.login.dummy"}}
            r = await self.request("POST", REGISTER, body)
            self.assertMatrixError(r, 400, "M_INVALID_USERNAME")

    async def test_user_in_use_before_uia(self) -> None:
        await self.register("alice")
        # No auth at all: the username problem comes first, not a 401.
        r = await self.request("POST", REGISTER, {"username": "alice", "password": "x"})
        self.assertMatrixError(r, 400, "M_USER_IN_USE")
        r = await self.request("POST", REGISTER, {"username": "ALICE", "auth": {"type": "m.login.dummy"}})
        self.assertMatrixError(r, 400, "M_USER_IN_USE")

    async def test_generated_username(self) -> None:
        body = await self.register(None)
        localpart = body["user_id"][1:].split(":")[0]
        self.assertRegex(localpart, r"^[a-z0-9]{10}$")
        self.assertFalse(localpart.isdigit())

    async def test_first_user_is_admin(self) -> None:
        await self.register("first")
        await self.register("second")
        self.assertTrue(await self.hs.users.is_admin("@first:test"))
        self.assertFalse(await self.hs.users.is_admin("@second:test"))
        self.assertTrue((await self.hs.users.get_account("@first:test")).is_admin)

    async def test_initial_displayname(self) -> None:
        await self.register("alice")
        r = await self.request("GET", "/_matrix/client/v3/profile/@alice:test/displayname")
        self.assertEqual(r.json, {"displayname": "alice"})

    async def test_available(self) -> None:
        r = await self.request("GET", AVAILABLE + "?username=alice")
        self.assertEqual((r.code, r.json), (200, {"available": True}))
        await self.register("alice")
        r = await self.request("GET", AVAILABLE + "?username=alice")
        self.assertMatrixError(r, 400, "M_USER_IN_USE")
        r = await self.request("GET", AVAILABLE + "?username=Al%20ice")
        self.assertMatrixError(r, 400, "M_INVALID_USERNAME")
        r = await self.request("GET", AVAILABLE)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")

    async def test_exclusive_namespace_hook(self) -> None:
        self.hs.registration.exclusive_checks.append(lambda uid: uid.startswith("@irc_"))
        r = await self.request("POST", REGISTER, {"username": "irc_bob", "auth": {"type": "m.login.dummy"}})
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")
        r = await self.request("GET", AVAILABLE + "?username=irc_bob")
        self.assertMatrixError(r, 400, "M_EXCLUSIVE")

    async def test_appservice_registration_without_token(self) -> None:
        r = await self.request(
            "POST", REGISTER, {"username": "x", "auth": {"type": "m.login.application_service"}}
        )
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_bad_kind(self) -> None:
        r = await self.request("POST", REGISTER + "?kind=robot", {"username": "x"})
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_bad_fields(self) -> None:
        r = await self.request("POST", REGISTER, {"username": "x", "password": 5, "auth": {"type": "m.login.dummy"}})
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("POST", REGISTER, {"username": "x", "device_id": 5, "auth": {"type": "m.login.dummy"}})
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("POST", REGISTER, raw_body=b"[]")
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", REGISTER, raw_body=b"{nope")
        self.assertMatrixError(r, 400, "M_NOT_JSON")

    async def test_device_id_reuse_on_login(self) -> None:
        body = await self.register("alice", device_id="DEV1", initial_device_display_name="Phone")
        r = await self.login(device_id="DEV1", initial_device_display_name="Other")
        self.assertEqual(r.json["device_id"], "DEV1")
        devices = await self.hs.device_store.list("@alice:test")
        self.assertEqual([(d.device_id, d.display_name) for d in devices], [("DEV1", "Phone")])
        # The old token of the device is gone.
        r2 = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=body["access_token"])
        self.assertMatrixError(r2, 401, "M_UNKNOWN_TOKEN")
        r2 = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=r.json["access_token"])
        self.assertEqual(r2.json["device_id"], "DEV1")

    async def test_hook_on_registered(self) -> None:
        seen = []
        self.hs.registration.on_registered.append(lambda uid, guest: seen.append((uid, guest)))
        await self.register("alice")
        self.assertEqual(seen, [("@alice:test", False)])


class RegistrationSessionTests(AccountsTestCase):
    """A registration UIA session: retries are idempotent, parameters are bound."""

    async def _probe(self, body: dict) -> str:
        r = await self.request("POST", REGISTER, body)
        self.assertEqual(r.code, 401, r.body)
        return r.json["session"]

    async def test_retry_gives_the_same_answer(self) -> None:
        sid = await self._probe({"username": "alice", "password": "secret pw"})
        body = {"username": "alice", "password": "secret pw", "auth": {"type": "m.login.dummy", "session": sid}}
        first = await self.request("POST", REGISTER, body)
        self.assertEqual(first.code, 200, first.body)
        again = await self.request("POST", REGISTER, body)
        self.assertEqual(again.code, 200, again.body)
        self.assertEqual(again.json, first.json)
        self.assertEqual(len(await self.hs.device_store.list("@alice:test")), 1)

    async def test_retry_without_username_makes_no_second_account(self) -> None:
        made = []
        self.hs.registration.on_registered.append(lambda uid, guest: made.append(uid))
        sid = await self._probe({"password": "secret pw"})
        body = {"password": "secret pw", "auth": {"type": "m.login.dummy", "session": sid}}
        first = await self.request("POST", REGISTER, body)
        self.assertEqual(first.code, 200, first.body)
        again = await self.request("POST", REGISTER, {"auth": {"session": sid}})
        self.assertEqual(again.code, 200, again.body)
        self.assertEqual(again.json, first.json)
        self.assertEqual(made, [first.json["user_id"]])
        # Only one generated account exists: it logs in with the password.
        r = await self.login(first.json["user_id"])
        self.assertEqual(r.code, 200, r.body)

    async def test_concurrent_retries_make_one_account(self) -> None:
        from twisted.internet.defer import gatherResults

        made = []
        self.hs.registration.on_registered.append(lambda uid, guest: made.append(uid))
        sid = await self._probe({})
        body = {"password": "pw", "auth": {"type": "m.login.dummy", "session": sid}}
        responses = await gatherResults([self.request("POST", REGISTER, body) for _ in range(3)])
        self.assertEqual([r.code for r in responses], [200, 200, 200])
        self.assertEqual(len({r.json["user_id"] for r in responses}), 1)
        self.assertEqual(len(made), 1)

    async def test_username_and_password_bound_to_the_session(self) -> None:
        sid = await self._probe({"username": "alice", "password": "first pw"})
        r = await self.request(
            "POST", REGISTER,
            {"username": "mallory", "password": "first pw", "auth": {"type": "m.login.dummy", "session": sid}},
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request(
            "POST", REGISTER,
            {"username": "alice", "password": "other pw", "auth": {"type": "m.login.dummy", "session": sid}},
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        # Leaving them out keeps the first request's values.
        r = await self.request("POST", REGISTER, {"auth": {"type": "m.login.dummy", "session": sid}})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@alice:test")
        self.assertFalse(await self.hs.users.exists("@mallory:test"))
        self.assertEqual((await self.login("alice", "first pw")).code, 200)
        self.assertEqual((await self.login("alice", "other pw")).code, 403)

    async def test_inhibit_login_of_the_first_request_is_kept(self) -> None:
        sid = await self._probe({"username": "alice", "password": "pw", "inhibit_login": True})
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy", "session": sid}}
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertNotIn("access_token", r.json)
        self.assertNotIn("device_id", r.json)
        self.assertEqual(await self.hs.device_store.list("@alice:test"), [])

    async def test_inhibit_login_with_refresh_token(self) -> None:
        body = await self.register("alice", inhibit_login=True, refresh_token=True, device_id="DEV")
        self.assertEqual(set(body), {"user_id", "home_server"})


class ForbiddenUsernamesTests(AccountsTestCase):
    """forbidden_usernames are regular expressions."""

    config_overrides = {**OPEN, "forbidden_usernames": ["^admin", "root"]}

    async def test_forbidden(self) -> None:
        for name in ("admin", "administrator", "xrootx"):
            r = await self.request("POST", REGISTER, {"username": name, "auth": {"type": "m.login.dummy"}})
            self.assertMatrixError(r, 400, "M_INVALID_USERNAME")
        await self.register("notadmin")


class DisplaynameSuffixTests(AccountsTestCase):
    """new_user_displayname_suffix."""

    config_overrides = {**OPEN, "new_user_displayname_suffix": "\u26a1\ufe0f"}

    async def test_suffix(self) -> None:
        await self.register("alice")
        r = await self.request("GET", "/_matrix/client/v3/profile/@alice:test")
        self.assertEqual(r.json["displayname"], "alice \u26a1\ufe0f")


class TokenRegistrationTests(AccountsTestCase):
    """registration_token: m.login.registration_token then m.login.dummy."""

    config_overrides = {
        "allow_registration": True,
        "registration_token": "s3cret-token",
        "rc_registration_per_second": 0,
    }

    async def _register_with_token(self, token: str) -> tuple[int, dict]:
        r = await self.request("POST", REGISTER, {"username": "alice", "password": "pw"})
        self.assertEqual(r.code, 401)
        self.assertEqual(
            r.json["flows"], [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
        )
        sid = r.json["session"]
        r = await self.request(
            "POST", REGISTER,
            {"username": "alice", "password": "pw",
             "auth": {"type": "m.login.registration_token", "token": token, "session": sid}},
        )
        if r.code == 401 and "errcode" in r.json:
            return r.code, r.json
        r = await self.request(
            "POST", REGISTER,
            {"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy", "session": sid}},
        )
        return r.code, r.json

    async def test_right_token(self) -> None:
        code, body = await self._register_with_token("s3cret-token")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["user_id"], "@alice:test")

    async def test_wrong_token(self) -> None:
        code, body = await self._register_with_token("guess")
        self.assertEqual((code, body["errcode"]), (401, "M_FORBIDDEN"))
        self.assertFalse(await self.hs.users.exists("@alice:test"))

    async def test_dummy_alone_is_not_enough(self) -> None:
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.dummy"}})
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")

    async def test_validity(self) -> None:
        r = await self.request("GET", VALIDITY + "?token=s3cret-token")
        self.assertEqual((r.code, r.json), (200, {"valid": True}))
        r = await self.request("GET", VALIDITY + "?token=other")
        self.assertEqual((r.code, r.json), (200, {"valid": False}))
        r = await self.request("GET", VALIDITY)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")


class TokenFileTests(AccountsTestCase):
    """registration_token_file: the token is the file's content."""

    def setUp(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("from-a-file\n")
        self.config_overrides = {
            "allow_registration": True,
            "registration_token_file": path,
            "rc_registration_per_second": 0,
        }
        return super().setUp()

    async def test_file_token(self) -> None:
        r = await self.request("GET", VALIDITY + "?token=from-a-file")
        self.assertEqual(r.json, {"valid": True})


class OpenWithoutTokenValidityTests(AccountsTestCase):
    """Open registration has no tokens: every token is invalid."""

    async def test_validity_false(self) -> None:
        r = await self.request("GET", VALIDITY + "?token=anything")
        self.assertEqual((r.code, r.json), (200, {"valid": False}))


class GuestTests(AccountsTestCase):
    """kind=guest with allow_guest_registration."""

    config_overrides = {**OPEN, "allow_guest_registration": True}

    async def _guest(self, body: dict | None = None) -> dict:
        r = await self.request("POST", REGISTER + "?kind=guest", body or {})
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_guest_registration(self) -> None:
        g = await self._guest(
            {"username": "ignored", "password": "ignored", "device_id": "IGNORED",
             "initial_device_display_name": "Guest phone", "inhibit_login": True}
        )
        self.assertRegex(g["user_id"], r"^@\d+:test$")
        self.assertNotEqual(g["device_id"], "IGNORED")
        self.assertIn("access_token", g)
        r = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=g["access_token"])
        self.assertEqual(r.json, {"user_id": g["user_id"], "device_id": g["device_id"], "is_guest": True})
        r = await self.request("GET", "/_matrix/client/v3/devices", access_token=g["access_token"])
        self.assertEqual(r.json["devices"][0]["display_name"], "Guest phone")
        g2 = await self._guest()
        self.assertNotEqual(g["user_id"], g2["user_id"])

    async def test_guest_not_admin_and_restricted(self) -> None:
        g = await self._guest()
        self.assertFalse(await self.hs.users.is_admin(g["user_id"]))
        tok = g["access_token"]
        r = await self.request("POST", "/_matrix/client/v3/account/password", {"new_password": "x"}, access_token=tok)
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await self.request("POST", "/_matrix/client/v3/account/deactivate", {}, access_token=tok)
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await self.request("POST", "/_matrix/client/v1/login/get_token", {}, access_token=tok)
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await self.request("DELETE", f"/_matrix/client/v3/devices/{g['device_id']}", {}, access_token=tok)
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
        # Allowed for guests: display name (not avatar), device names, logout.
        path = f"/_matrix/client/v3/profile/{g['user_id']}"
        r = await self.request("PUT", path + "/displayname", {"displayname": "G"}, access_token=tok)
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("PUT", path + "/avatar_url", {"avatar_url": "mxc://a/b"}, access_token=tok)
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await self.request(
            "PUT", f"/_matrix/client/v3/devices/{g['device_id']}", {"display_name": "n"}, access_token=tok
        )
        self.assertEqual(r.code, 200)
        r = await self.request("POST", "/_matrix/client/v3/logout", {}, access_token=tok)
        self.assertEqual(r.code, 200)

    async def test_guest_cannot_log_in_with_password(self) -> None:
        g = await self._guest()
        r = await self.login(g["user_id"], "")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_first_real_user_still_admin_after_guests(self) -> None:
        await self._guest()
        await self.register("alice")
        self.assertTrue(await self.hs.users.is_admin("@alice:test"))


class GuestUpgradeTests(AccountsTestCase):
    """guest_access_token: a guest becomes a full user with the same ID."""

    config_overrides = {**OPEN, "allow_guest_registration": True}

    async def test_upgrade(self) -> None:
        r = await self.request("POST", REGISTER + "?kind=guest", {})
        g = r.json
        localpart = g["user_id"][1:].split(":")[0]
        body = {"username": localpart, "password": "new pw", "guest_access_token": g["access_token"]}
        r = await self.request("POST", REGISTER, body)
        self.assertEqual(r.code, 401)
        body["auth"] = {"type": "m.login.dummy", "session": r.json["session"]}
        r = await self.request("POST", REGISTER, body)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], g["user_id"])
        w = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=r.json["access_token"])
        self.assertEqual(w.json["is_guest"], False)
        w = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=g["access_token"])
        self.assertMatrixError(w, 401, "M_UNKNOWN_TOKEN")
        self.assertEqual((await self.login(g["user_id"], "new pw")).code, 200)

    async def test_bad_upgrades(self) -> None:
        g = (await self.request("POST", REGISTER + "?kind=guest", {})).json
        user = await self.register("alice")
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "guest_access_token": user["access_token"]}
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("POST", REGISTER, {"username": "other", "guest_access_token": g["access_token"]})
        self.assertMatrixError(r, 400, "M_INVALID_USERNAME")
        r = await self.request("POST", REGISTER, {"username": "x", "guest_access_token": "nope"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")


class GuestDisabledTests(AccountsTestCase):
    """Open registration does not imply guests."""

    async def test_guest_forbidden(self) -> None:
        r = await self.request("POST", REGISTER + "?kind=guest", {})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

