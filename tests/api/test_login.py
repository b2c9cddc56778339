"""Login, login tokens, refresh tokens, logout."""

from __future__ import annotations

from tests.api.accounts import OPEN, AccountsTestCase

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
GET_TOKEN = "/_matrix/client/v1/login/get_token"
REFRESH = "/_matrix/client/v3/refresh"


class LoginTests(AccountsTestCase):
    """GET/POST /login."""

    async def test_flows(self) -> None:
        for prefix in ("v3", "r0"):
            r = await self.request("GET", f"/_matrix/client/{prefix}/login")
            self.assertEqual(r.code, 200)
            types = {f["type"]: f for f in r.json["flows"]}
            self.assertIn("m.login.password", types)
            self.assertEqual(types["m.login.token"]["get_login_token"], True)
            self.assertIn("m.login.application_service", types)

    async def test_password_login_identifiers(self) -> None:
        await self.register("alice")
        for user in ("alice", "@alice:test", "ALICE", "@Alice:test"):
            r = await self.login(user)
            self.assertEqual(r.code, 200, (user, r.body))
            self.assertEqual(r.json["user_id"], "@alice:test")
            self.assertEqual(r.json["home_server"], "test")
            self.assertIsInstance(r.json["device_id"], str)
            self.assertNotIn("well_known", r.json)
            w = await self.request("GET", WHOAMI, access_token=r.json["access_token"])
            self.assertEqual(w.json["device_id"], r.json["device_id"])

    async def test_legacy_user_field(self) -> None:
        await self.register("alice")
        r = await self.request("POST", LOGIN, {"type": "m.login.password", "user": "alice", "password": "secret pw"})
        self.assertEqual(r.code, 200, r.body)

    async def test_bad_credentials(self) -> None:
        await self.register("alice")
        r = await self.login("alice", "wrong")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.login("nobody", "secret pw")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.login("@alice:elsewhere", "secret pw")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("POST", LOGIN, {"type": "m.login.password", "password": "secret pw"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_deactivated_needs_the_right_password(self) -> None:
        """
        M_USER_DEACTIVATED only answers the right password: a wrong one gets
        the same 403 M_FORBIDDEN as for any account, revealing nothing.
        """
        await self.register("alice")
        # Deactivated with the password kept (e.g. by an administrator).
        await self.hs.users.update_account("@alice:test", deactivated=True)
        wrong = await self.login("alice", "wrong")
        unknown = await self.login("nobody", "wrong")
        self.assertMatrixError(wrong, 403, "M_FORBIDDEN")
        self.assertEqual(wrong.json, unknown.json)
        self.assertMatrixError(await self.login("alice", "secret pw"), 403, "M_USER_DEACTIVATED")

    async def test_malformed_requests(self) -> None:
        r = await self.request("POST", LOGIN, {"type": "m.login.password", "user": "alice"})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("POST", LOGIN, {"type": "m.login.magic"})
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request("POST", LOGIN, {})
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request(
            "POST", LOGIN,
            {"type": "m.login.password", "identifier": {"type": "m.id.weird"}, "password": "x"},
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request(
            "POST", LOGIN, {"type": "m.login.password", "identifier": "alice", "password": "x"}
        )
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", LOGIN, raw_body=b"nope")
        self.assertMatrixError(r, 400, "M_NOT_JSON")

    async def test_third_party_identifiers_unknown(self) -> None:
        r = await self.request(
            "POST", LOGIN,
            {"type": "m.login.password",
             "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"},
             "password": "x"},
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request(
            "POST", LOGIN, {"type": "m.login.password", "medium": "email", "address": "a@b.c", "password": "x"}
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_appservice_login_without_token(self) -> None:
        # application-service-api "Server admin style permissions": 401
        # as for any missing token (tests/api/test_appservice_auth.py has the rest).
        r = await self.request(
            "POST", LOGIN,
            {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "x"}},
        )
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_device_display_name_and_last_seen(self) -> None:
        await self.register("alice")
        r = await self.login(initial_device_display_name="Laptop", device_id="LAPTOP")
        d = await self.hs.device_store.get("@alice:test", "LAPTOP")
        self.assertEqual(d.display_name, "Laptop")
        self.assertEqual(d.last_seen_ip, "127.0.0.1")
        self.assertIsNotNone(d.last_seen_ts)

    async def test_query_string_token_accepted_other_schemes_not(self) -> None:
        body = await self.register("alice")
        # Deprecated but accepted (see tests.api.test_auth_query).
        r = await self.request("GET", WHOAMI + "?access_token=" + body["access_token"])
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", WHOAMI, headers={"Authorization": "Basic abc"})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")


class WellKnownLoginTests(AccountsTestCase):
    """[global.well_known].client appears in the login response."""

    config_overrides = {**OPEN, "well_known": {"client": "https://matrix.example.com/"}}

    async def test_well_known(self) -> None:
        await self.register("alice")
        r = await self.login()
        self.assertEqual(r.json["well_known"], {"m.homeserver": {"base_url": "https://matrix.example.com"}})


class LogoutTests(AccountsTestCase):
    """POST /logout and /logout/all."""

    async def test_logout(self) -> None:
        a = await self.register("alice")
        b = (await self.login()).json
        r = await self.request("POST", "/_matrix/client/v3/logout", {}, access_token=a["access_token"])
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", WHOAMI, access_token=a["access_token"])
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(r.json["soft_logout"], False)
        self.assertIsNone(await self.hs.device_store.get("@alice:test", a["device_id"]))
        r = await self.request("GET", WHOAMI, access_token=b["access_token"])
        self.assertEqual(r.code, 200)

    async def test_logout_all(self) -> None:
        a = await self.register("alice")
        b = (await self.login()).json
        r = await self.request("POST", "/_matrix/client/v3/logout/all", None, access_token=b["access_token"])
        self.assertEqual(r.code, 200)
        for tok in (a["access_token"], b["access_token"]):
            r = await self.request("GET", WHOAMI, access_token=tok)
            self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(await self.hs.device_store.list("@alice:test"), [])

    async def test_logout_needs_token(self) -> None:
        r = await self.request("POST", "/_matrix/client/v3/logout", {})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("POST", "/_matrix/client/v3/logout/all", {}, access_token="nope")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_hook_runs(self) -> None:
        deleted = []
        self.hs.devices.on_devices_deleted.append(lambda uid, ids: deleted.append((uid, ids)))
        a = await self.register("alice", device_id="D1")
        await self.request("POST", "/_matrix/client/v3/logout", {}, access_token=a["access_token"])
        self.assertEqual(deleted, [("@alice:test", ["D1"])])


class LoginTokenTests(AccountsTestCase):
    """POST /login/get_token and m.login.token (v1.7)."""

    async def _get_token(self, access_token: str) -> dict:
        r = await self.request("POST", GET_TOKEN, {}, access_token=access_token)
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        r = await self.request(
            "POST", GET_TOKEN, {"auth": self.password_auth("@alice:test", session=r.json["session"])},
            access_token=access_token,
        )
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_single_use(self) -> None:
        a = await self.register("alice")
        t = await self._get_token(a["access_token"])
        self.assertEqual(t["expires_in_ms"], 120000)
        r = await self.request("POST", LOGIN, {"type": "m.login.token", "token": t["login_token"]})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@alice:test")
        self.assertNotEqual(r.json["device_id"], a["device_id"])
        r = await self.request("POST", LOGIN, {"type": "m.login.token", "token": t["login_token"]})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_expires(self) -> None:
        a = await self.register("alice")
        t = await self._get_token(a["access_token"])
        self.clock.advance(121)
        r = await self.request("POST", LOGIN, {"type": "m.login.token", "token": t["login_token"]})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_always_reprompts(self) -> None:
        a = await self.register("alice")
        await self._get_token(a["access_token"])
        # A second token needs a new UIA round.
        await self._get_token(a["access_token"])

    async def test_bad_tokens(self) -> None:
        r = await self.request("POST", LOGIN, {"type": "m.login.token", "token": "made-up"})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("POST", LOGIN, {"type": "m.login.token"})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        r = await self.request("POST", GET_TOKEN, {})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")


class LoginTokenRateLimitTests(AccountsTestCase):
    """With get_token rate-limited, the UIA probe still answers 401 with flows."""

    config_overrides = {**OPEN, "rc_login_per_second": 0.001, "rc_login_burst_count": 2}

    async def test_probe_always_gets_flows(self) -> None:
        await self.register("admin", password="admin pw")  # the first user is an exempt admin
        b = await self.register("bob", password="bob pw")
        tok = b["access_token"]
        for _ in range(2):
            r = await self.request("POST", GET_TOKEN, {}, access_token=tok)
            self.assertEqual(r.code, 401, r.body)
            self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
            r = await self.request(
                "POST", GET_TOKEN, {"auth": self.password_auth("bob", "bob pw", r.json["session"])},
                access_token=tok,
            )
            self.assertEqual(r.code, 200, r.body)
        # The bucket is empty: the probe still shows the flows ...
        r = await self.request("POST", GET_TOKEN, {}, access_token=tok)
        self.assertEqual(r.code, 401, r.body)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        self.assertIn("session", r.json)
        # ... but another attempt is refused.
        r = await self.request(
            "POST", GET_TOKEN, {"auth": self.password_auth("bob", "bob pw", r.json["session"])},
            access_token=tok,
        )
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")


class RefreshTests(AccountsTestCase):
    """refresh_token: true, expiring tokens and POST /refresh."""

    async def _login(self) -> dict:
        await self.register("alice")
        r = await self.login(refresh_token=True)
        self.assertEqual(r.code, 200)
        self.assertEqual(r.json["expires_in_ms"], self.hs.login.access_token_lifetime_ms)
        self.assertIsInstance(r.json["refresh_token"], str)
        return r.json

    async def test_expired_token_soft_logout(self) -> None:
        s = await self._login()
        r = await self.request("GET", WHOAMI, access_token=s["access_token"])
        self.assertEqual(r.code, 200)
        self.clock.advance(s["expires_in_ms"] / 1000 + 1)
        r = await self.request("GET", WHOAMI, access_token=s["access_token"])
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(r.json["soft_logout"], True)
        # Logging out still works with an expired token.
        r = await self.request("POST", "/_matrix/client/v3/logout", {}, access_token=s["access_token"])
        self.assertEqual(r.code, 200)

    async def test_refresh_rotates(self) -> None:
        s = await self._login()
        self.clock.advance(s["expires_in_ms"] / 1000 + 1)
        r = await self.request("POST", REFRESH, {"refresh_token": s["refresh_token"]})
        self.assertEqual(r.code, 200, r.body)
        new = r.json
        self.assertEqual(set(new), {"access_token", "refresh_token", "expires_in_ms"})
        self.assertNotEqual(new["refresh_token"], s["refresh_token"])
        w = await self.request("GET", WHOAMI, access_token=new["access_token"])
        self.assertEqual(w.json["device_id"], s["device_id"])
        # The old access token is gone for good.
        w = await self.request("GET", WHOAMI, access_token=s["access_token"])
        self.assertMatrixError(w, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(w.json["soft_logout"], False)
        # Once the new access token was used, the old refresh token is revoked.
        r = await self.request("POST", REFRESH, {"refresh_token": s["refresh_token"]})
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        # The new refresh token works.
        r = await self.request("POST", REFRESH, {"refresh_token": new["refresh_token"]})
        self.assertEqual(r.code, 200)

    async def test_old_refresh_token_valid_until_new_used(self) -> None:
        """A client that lost the answer may repeat the refresh."""
        s = await self._login()
        r1 = await self.request("POST", REFRESH, {"refresh_token": s["refresh_token"]})
        r2 = await self.request("POST", REFRESH, {"refresh_token": s["refresh_token"]})
        self.assertEqual(r2.code, 200, r2.body)
        # The first answer's tokens were replaced by the second's.
        w = await self.request("GET", WHOAMI, access_token=r1.json["access_token"])
        self.assertMatrixError(w, 401, "M_UNKNOWN_TOKEN")
        r = await self.request("POST", REFRESH, {"refresh_token": r1.json["refresh_token"]})
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        # Using the newest refresh token revokes the original one.
        r3 = await self.request("POST", REFRESH, {"refresh_token": r2.json["refresh_token"]})
        self.assertEqual(r3.code, 200)
        r = await self.request("POST", REFRESH, {"refresh_token": s["refresh_token"]})
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_bad_refresh(self) -> None:
        r = await self.request("POST", REFRESH, {"refresh_token": "nope"})
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertIs(r.json["soft_logout"], False)
        r = await self.request("POST", REFRESH, {})
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")

    async def test_logout_kills_refresh_token(self) -> None:
        s = await self._login()
        await self.request("POST", "/_matrix/client/v3/logout", {}, access_token=s["access_token"])
        r = await self.request("POST", REFRESH, {"refresh_token": s["refresh_token"]})
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_no_refresh_without_flag(self) -> None:
        await self.register("alice")
        r = await self.login()
        self.assertNotIn("refresh_token", r.json)
        self.assertNotIn("expires_in_ms", r.json)
        self.clock.advance(10 * 365 * 86400)
        w = await self.request("GET", WHOAMI, access_token=r.json["access_token"])
        self.assertEqual(w.code, 200)


class RefreshLMDBTests(RefreshTests):
    """The token rotation on the LMDB backend too."""

    backend = "lmdb"
