"""
C{/versions} lists v1.1 to v1.20, and the endpoints of every module the
spec's feature profiles make Required for Web and Desktop clients are
mounted (client-server-api "Feature Profiles").
"""

from __future__ import annotations

from conduit_tw.errors import MatrixError
from tests.api.accounts import OPEN
from tests.server import HomeserverTestCase

#: Module -> (method, path) of its endpoints (placeholders are literal
#: values; the router only matches shapes).
REQUIRED_MODULE_ENDPOINTS: dict[str, list[tuple[str, str]]] = {
    "content repository": [
        ("GET", "/_matrix/client/v1/media/config"),
        ("POST", "/_matrix/media/v3/upload"),
        ("PUT", "/_matrix/media/v3/upload/example.org/abc"),
        ("POST", "/_matrix/media/v1/create"),
        ("GET", "/_matrix/client/v1/media/download/example.org/abc"),
        ("GET", "/_matrix/client/v1/media/download/example.org/abc/name.png"),
        ("GET", "/_matrix/client/v1/media/thumbnail/example.org/abc"),
        ("GET", "/_matrix/client/v1/media/preview_url"),
    ],
    "direct messaging and ignoring users (account data)": [
        ("POST", "/_matrix/client/v3/createRoom"),
        ("PUT", "/_matrix/client/v3/user/@a:test/account_data/m.direct"),
        ("GET", "/_matrix/client/v3/user/@a:test/account_data/m.ignored_user_list"),
        ("PUT", "/_matrix/client/v3/user/@a:test/rooms/!r:test/account_data/x"),
    ],
    "instant messaging": [
        ("PUT", "/_matrix/client/v3/rooms/!r:test/send/m.room.message/t1"),
        ("GET", "/_matrix/client/v3/sync"),
        ("GET", "/_matrix/client/v3/rooms/!r:test/messages"),
        ("GET", "/_matrix/client/v3/rooms/!r:test/state"),
        ("PUT", "/_matrix/client/v3/rooms/!r:test/state/m.room.name/"),
        ("GET", "/_matrix/client/v3/rooms/!r:test/state/m.room.topic/"),
        ("PUT", "/_matrix/client/v3/rooms/!r:test/redact/$e/t2"),
        ("GET", "/_matrix/client/v3/rooms/!r:test/event/$e"),
        ("GET", "/_matrix/client/v3/rooms/!r:test/members"),
        ("GET", "/_matrix/client/v3/rooms/!r:test/joined_members"),
        ("POST", "/_matrix/client/v3/join/!r:test"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/leave"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/invite"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/kick"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/ban"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/forget"),
        ("GET", "/_matrix/client/v3/joined_rooms"),
        ("POST", "/_matrix/client/v3/user/@a:test/filter"),
        ("GET", "/_matrix/client/v3/publicRooms"),
        ("GET", "/_matrix/client/v3/profile/@a:test"),
        ("GET", "/_matrix/client/v3/capabilities"),
    ],
    "presence": [
        ("GET", "/_matrix/client/v3/presence/@a:test/status"),
        ("PUT", "/_matrix/client/v3/presence/@a:test/status"),
    ],
    "receipts and read markers": [
        ("POST", "/_matrix/client/v3/rooms/!r:test/receipt/m.read/$e"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/read_markers"),
    ],
    "room history visibility and room upgrades": [
        ("PUT", "/_matrix/client/v3/rooms/!r:test/state/m.room.history_visibility/"),
        ("POST", "/_matrix/client/v3/rooms/!r:test/upgrade"),
    ],
    "typing notifications": [
        ("PUT", "/_matrix/client/v3/rooms/!r:test/typing/@a:test"),
    ],
    "user and room mentions (push rules)": [
        ("GET", "/_matrix/client/v3/pushrules/"),
        ("GET", "/_matrix/client/v3/pushrules/global/override/.m.rule.is_user_mention"),
    ],
    "voice over IP": [
        ("GET", "/_matrix/client/v3/voip/turnServer"),
    ],
    "accounts (every profile)": [
        ("GET", "/_matrix/client/v3/login"),
        ("POST", "/_matrix/client/v3/login"),
        ("POST", "/_matrix/client/v3/register"),
        ("POST", "/_matrix/client/v3/logout"),
        ("GET", "/_matrix/client/v3/account/whoami"),
        ("POST", "/_matrix/client/v3/account/password"),
        ("POST", "/_matrix/client/v3/refresh"),
    ],
}


class VersionsTests(HomeserverTestCase):
    async def test_versions_listed(self) -> None:
        r = await self.request("GET", "/_matrix/client/versions")
        self.assertEqual(r.code, 200)
        versions = r.json["versions"]
        self.assertEqual(versions[0], "v1.1")
        self.assertEqual(versions[-1], "v1.20")
        self.assertEqual(len(versions), 20)
        self.assertNotIn("r0.6.1", versions)

    def test_required_modules_mounted(self) -> None:
        missing = []
        for module, endpoints in REQUIRED_MODULE_ENDPOINTS.items():
            for method, path in endpoints:
                try:
                    self.hs.router.resolve(method, path)
                except MatrixError:
                    missing.append(f"{module}: {method} {path}")
        self.assertEqual(missing, [])

    async def test_required_endpoint_answers(self) -> None:
        """An unauthenticated call reaches the handler (401, not 404)."""
        for path in ("/_matrix/client/v3/voip/turnServer", "/_matrix/client/v1/media/config",
                     "/_matrix/client/v3/pushrules/"):
            r = await self.request("GET", path)
            self.assertMatrixError(r, 401, "M_MISSING_TOKEN")


class ThreepidTests(HomeserverTestCase):
    """No third-party identifiers are kept: empty lists, clear refusals."""

    config_overrides = OPEN

    async def test_threepid_endpoints(self) -> None:
        r = await self.request("POST", "/_matrix/client/v3/register", {
            "username": "alice", "password": "secret-password-1",
            "auth": {"type": "m.login.dummy"},
        })
        self.assertEqual(r.code, 200, r.body)
        token = r.json["access_token"]
        r = await self.request("GET", "/_matrix/client/v3/account/3pid")
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("GET", "/_matrix/client/v3/account/3pid", access_token=token)
        self.assertEqual((r.code, r.json), (200, {"threepids": []}))
        body = {"client_secret": "s", "email": "a@example.org", "send_attempt": 1}
        r = await self.request(
            "POST", "/_matrix/client/v3/account/3pid/email/requestToken", body, access_token=token
        )
        self.assertMatrixError(r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
        r = await self.request("POST", "/_matrix/client/v3/register/email/requestToken", body)
        self.assertMatrixError(r, 403, "M_THREEPID_DENIED")
        r = await self.request("POST", "/_matrix/client/v3/account/password/msisdn/requestToken", {
            "client_secret": "s", "country": "GB", "phone_number": "07700900001", "send_attempt": 1,
        })
        self.assertMatrixError(r, 400, "M_THREEPID_NOT_FOUND")
        r = await self.request("POST", "/_matrix/client/v3/account/3pid/add",
                               {"client_secret": "s", "sid": "x"}, access_token=token)
        self.assertMatrixError(r, 403, "M_THREEPID_DENIED")
        r = await self.request("POST", "/_matrix/client/v3/account/3pid/delete",
                               {"medium": "email", "address": "a@example.org"}, access_token=token)
        self.assertEqual((r.code, r.json), (200, {"id_server_unbind_result": "no-support"}))
        r = await self.request("POST", "/_matrix/client/v3/account/3pid/delete", raw_body=b"{",
                               access_token=token)
        self.assertMatrixError(r, 400, "M_NOT_JSON")
