"""User-Interactive Authentication: shapes, order, sessions, expiry."""

from __future__ import annotations

from tests.api.accounts import OPEN, AccountsTestCase

REGISTER = "/_matrix/client/v3/register"


class UIAShapeTests(AccountsTestCase):
    """The 401 bodies exactly as client-server-api shows them."""

    async def test_initial_401(self) -> None:
        r = await self.request("POST", REGISTER, {"username": "alice", "password": "pw"})
        self.assertEqual(r.code, 401)
        body = r.json
        self.assertEqual(set(body), {"flows", "params", "session"})
        self.assertEqual(body["flows"], [{"stages": ["m.login.dummy"]}])
        self.assertEqual(body["params"], {})
        self.assertIsInstance(body["session"], str)
        self.assertEqual(r.header("content-type"), "application/json")

    async def test_auth_without_type_or_session_starts_a_session(self) -> None:
        """matrix-nio's first call sends an auth dict with neither."""
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"initial_device_display_name": "x"}}
        )
        self.assertEqual(r.code, 401)
        self.assertNotIn("errcode", r.json)
        self.assertIn("session", r.json)

    async def test_dummy_without_session_completes(self) -> None:
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_dummy_with_session_completes(self) -> None:
        first = await self.request("POST", REGISTER, {"username": "alice"})
        sid = first.json["session"]
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.dummy", "session": sid}}
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@alice:test")

    async def test_unknown_stage_type(self) -> None:
        first = await self.request("POST", REGISTER, {"username": "alice"})
        sid = first.json["session"]
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.foo", "session": sid}}
        )
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["errcode"], "M_UNRECOGNIZED")
        self.assertIsInstance(r.json["error"], str)
        self.assertEqual(r.json["completed"], [])
        self.assertEqual(r.json["session"], sid)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.dummy"]}])

    async def test_bad_auth_values(self) -> None:
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": "nope"})
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": {"type": 5}})
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": {"session": 5}})
        self.assertMatrixError(r, 400, "M_BAD_JSON")

    async def test_unknown_session(self) -> None:
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.dummy", "session": "nope"}}
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")

    async def test_session_expires(self) -> None:
        first = await self.request("POST", REGISTER, {"username": "alice"})
        sid = first.json["session"]
        self.clock.advance(31 * 60)
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.dummy", "session": sid}}
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")

    async def test_session_still_valid_before_expiry(self) -> None:
        first = await self.request("POST", REGISTER, {"username": "alice"})
        sid = first.json["session"]
        self.clock.advance(29 * 60)
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.dummy", "session": sid}}
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_completed_session_cannot_register_another_user(self) -> None:
        first = await self.request("POST", REGISTER, {"username": "alice"})
        sid = first.json["session"]
        auth = {"type": "m.login.dummy", "session": sid}
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": auth})
        self.assertEqual(r.code, 200)
        r = await self.request("POST", REGISTER, {"username": "bob", "auth": auth})
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertFalse(await self.hs.users.exists("@bob:test"))


class UIAPasswordTests(AccountsTestCase):
    """m.login.password stages on authenticated endpoints."""

    async def _setup_users(self) -> None:
        self.alice = await self.register("alice")
        self.bob = await self.register("bob", password="bob pw")

    async def test_wrong_password_shape(self) -> None:
        await self._setup_users()
        tok = self.alice["access_token"]
        path = f"/_matrix/client/v3/devices/{self.alice['device_id']}"
        r = await self.request("DELETE", path, {}, access_token=tok)
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        sid = r.json["session"]
        r = await self.request(
            "DELETE", path, {"auth": self.password_auth("@alice:test", "wrong", sid)}, access_token=tok
        )
        self.assertEqual(r.code, 401)
        self.assertEqual(
            set(r.json), {"errcode", "error", "completed", "flows", "params", "session"}
        )
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        self.assertEqual(r.json["completed"], [])
        self.assertEqual(r.json["session"], sid)
        # The client may try again in the same session.
        r = await self.request(
            "DELETE", path, {"auth": self.password_auth("alice", session=sid)}, access_token=tok
        )
        self.assertEqual(r.code, 200, r.body)

    async def test_password_of_another_user_fails(self) -> None:
        await self._setup_users()
        tok = self.alice["access_token"]
        path = f"/_matrix/client/v3/devices/{self.alice['device_id']}"
        r = await self.request(
            "DELETE", path, {"auth": self.password_auth("@bob:test", "bob pw")}, access_token=tok
        )
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")

    async def test_session_bound_to_user(self) -> None:
        await self._setup_users()
        path = f"/_matrix/client/v3/devices/{self.alice['device_id']}"
        r = await self.request("DELETE", path, {}, access_token=self.alice["access_token"])
        sid = r.json["session"]
        bob_path = f"/_matrix/client/v3/devices/{self.bob['device_id']}"
        r = await self.request(
            "DELETE", bob_path, {"auth": self.password_auth("bob", "bob pw", sid)},
            access_token=self.bob["access_token"],
        )
        self.assertMatrixError(r, 400, "M_UNKNOWN")

    async def test_session_bound_to_endpoint(self) -> None:
        await self._setup_users()
        tok = self.alice["access_token"]
        r = await self.request(
            "POST", "/_matrix/client/v3/delete_devices", {"devices": []}, access_token=tok
        )
        sid = r.json["session"]
        r = await self.request(
            "POST", "/_matrix/client/v3/account/password",
            {"new_password": "x", "auth": self.password_auth("alice", session=sid)},
            access_token=tok,
        )
        # A session only authorises the operation it was started for.
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_missing_password_is_a_bad_request(self) -> None:
        await self._setup_users()
        tok = self.alice["access_token"]
        r = await self.request(
            "POST", "/_matrix/client/v3/delete_devices",
            {"devices": [], "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}}},
            access_token=tok,
        )
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")


class UIAMultiStageTests(AccountsTestCase):
    """Token registration: two stages, in order."""

    config_overrides = {**OPEN, "registration_token": "letmein"}

    async def test_order_and_completed(self) -> None:
        r = await self.request("POST", REGISTER, {"username": "alice", "password": "pw"})
        self.assertEqual(
            r.json["flows"], [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
        )
        sid = r.json["session"]
        # Out of order: dummy first.
        r = await self.request(
            "POST", REGISTER, {"username": "alice", "auth": {"type": "m.login.dummy", "session": sid}}
        )
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        self.assertEqual(r.json["completed"], [])
        # Wrong token.
        r = await self.request(
            "POST", REGISTER,
            {"username": "alice", "auth": {"type": "m.login.registration_token", "token": "no", "session": sid}},
        )
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        # Right token: one stage done.
        token_auth = {"type": "m.login.registration_token", "token": "letmein", "session": sid}
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": token_auth})
        self.assertEqual(r.code, 401)
        self.assertNotIn("errcode", r.json)
        self.assertEqual(r.json["completed"], ["m.login.registration_token"])
        self.assertEqual(r.json["session"], sid)
        # Retrying a completed stage answers the same state.
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": token_auth})
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["completed"], ["m.login.registration_token"])
        # Polling with the session only (out-of-band style) too.
        r = await self.request("POST", REGISTER, {"username": "alice", "auth": {"session": sid}})
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["completed"], ["m.login.registration_token"])
        r = await self.request(
            "POST", REGISTER,
            {"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy", "session": sid}},
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@alice:test")
