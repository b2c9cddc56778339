"""GET /capabilities (client-server-api "Capabilities negotiation")."""

from __future__ import annotations

from tests.api.accounts import OPEN, AccountsTestCase

CAPS = "/_matrix/client/v3/capabilities"


class CapabilitiesTests(AccountsTestCase):
    """The capabilities a user sees."""

    config_overrides = {**OPEN, "default_room_version": "11", "allow_guest_registration": True}

    async def test_needs_auth(self) -> None:
        r = await self.request("GET", CAPS)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_user_capabilities(self) -> None:
        a = await self.register("alice")
        r = await self.request("GET", CAPS, access_token=a["access_token"])
        self.assertEqual(r.code, 200, r.body)
        caps = r.json["capabilities"]
        self.assertEqual(caps["m.room_versions"]["default"], "11")
        self.assertEqual(
            caps["m.room_versions"]["available"], {str(v): "stable" for v in range(1, 13)}
        )
        self.assertEqual(caps["m.change_password"], {"enabled": True})
        self.assertEqual(caps["m.set_displayname"], {"enabled": True})
        self.assertEqual(caps["m.set_avatar_url"], {"enabled": True})
        self.assertEqual(caps["m.3pid_changes"], {"enabled": False})
        self.assertEqual(caps["m.get_login_token"], {"enabled": True})
        r = await self.request("GET", "/_matrix/client/r0/capabilities", access_token=a["access_token"])
        self.assertEqual(r.code, 200)

    async def test_guest_capabilities(self) -> None:
        r = await self.request("POST", "/_matrix/client/v3/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", CAPS, access_token=r.json["access_token"])
        self.assertEqual(r.code, 200, r.body)
        caps = r.json["capabilities"]
        self.assertEqual(caps["m.change_password"], {"enabled": False})
        self.assertEqual(caps["m.get_login_token"], {"enabled": False})
        self.assertEqual(caps["m.set_displayname"], {"enabled": True})
