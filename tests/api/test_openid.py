"""OpenID tokens: request_token and the federation userinfo exchange (handlers/openid.py)."""

from __future__ import annotations

from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase, q

USERINFO = "/_matrix/federation/v1/openid/userinfo"


class OpenIdTests(RoomsTestCase):
    """Tokens for oneself only, exchanged without signatures, expiring."""

    config_overrides = {**OPEN, "openid_token_ttl": 120, "allow_guest_registration": True}

    async def token(self, user_id: str, access_token: str, expect: int = 200):
        r = await self.request(
            "POST", f"{V3}/user/{q(user_id)}/openid/request_token", {}, access_token=access_token
        )
        self.assertEqual(r.code, expect, r.body)
        return r

    async def test_request_and_exchange(self) -> None:
        user_id, token = await self.user("alice")
        body = (await self.token(user_id, token)).json
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["matrix_server_name"], self.hs.server_name)
        self.assertEqual(body["expires_in"], 120)
        r = await self.request("GET", USERINFO + "?access_token=" + q(body["access_token"]))
        self.assertEqual((r.code, r.json), (200, {"sub": user_id}))
        # Not an access token.
        r = await self.request("GET", V3 + "/account/whoami", access_token=body["access_token"])
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_expiry(self) -> None:
        user_id, token = await self.user("alice")
        oid = (await self.token(user_id, token)).json["access_token"]
        self.clock.advance(121)
        r = await self.request("GET", USERINFO + "?access_token=" + q(oid))
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        # A new token prunes the expired one, and works.
        fresh = (await self.token(user_id, token)).json["access_token"]
        r = await self.request("GET", USERINFO + "?access_token=" + q(fresh))
        self.assertEqual(r.json, {"sub": user_id})

    async def test_unknown_and_missing(self) -> None:
        r = await self.request("GET", USERINFO + "?access_token=nope")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        r = await self.request("GET", USERINFO)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_only_for_oneself(self) -> None:
        _, token = await self.user("alice")
        bob, _ = await self.user("bob")
        r = await self.token(bob, token, expect=403)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("POST", f"{V3}/user/{q(bob)}/openid/request_token", {})
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("POST", V3 + "/register?kind=guest", {})
        guest = r.json
        r = await self.token(guest["user_id"], guest["access_token"], expect=403)
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")

    async def test_survives_restart(self) -> None:
        user_id, token = await self.user("alice")
        oid = (await self.token(user_id, token)).json["access_token"]
        self.commit()
        await self.restart()
        r = await self.request("GET", USERINFO + "?access_token=" + q(oid))
        self.assertEqual(r.json, {"sub": user_id})
