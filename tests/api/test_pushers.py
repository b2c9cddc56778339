"""Pushers API (client-server-api "Push Notifications": /pushers, /pushers/set)."""

from __future__ import annotations

from typing import Any

from tests.api.accounts import AccountsTestCase

P = "/_matrix/client/v3/pushers"
URL = "https://push.example.com/_matrix/push/v1/notify"


def pusher(**kw: Any) -> dict[str, Any]:
    body = {
        "kind": "http", "app_id": "com.example.app.ios", "pushkey": "PK1",
        "app_display_name": "Mat Rix", "device_display_name": "iPhone 9", "profile_tag": "xxyyzz",
        "lang": "en", "data": {"url": URL, "format": "event_id_only", "custom": 1},
    }
    body.update(kw)
    return body


class PusherApiTests(AccountsTestCase):
    """Create, replace, append, delete, validate."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]
        self.bob = (await self.register("bob"))["access_token"]

    async def list(self, tok: str) -> list[dict[str, Any]]:
        r = await self.request("GET", P, access_token=tok)
        self.assertEqual(r.code, 200)
        return r.json["pushers"]

    async def test_set_get_replace_delete(self) -> None:
        self.assertEqual(await self.list(self.tok), [])
        r = await self.request("POST", P + "/set", pusher(), access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        expected = {k: v for k, v in pusher().items()}
        self.assertEqual(await self.list(self.tok), [expected])
        r = await self.request("POST", P + "/set", pusher(lang="de", profile_tag=None), access_token=self.tok)
        self.assertEqual(r.code, 400, "profile_tag must be a string when given")
        body = pusher(lang="de")
        del body["profile_tag"]
        await self.request("POST", P + "/set", body, access_token=self.tok)
        [only] = await self.list(self.tok)
        self.assertEqual(only["lang"], "de")
        self.assertNotIn("profile_tag", only)
        await self.request("POST", P + "/set", pusher(pushkey="PK2"), access_token=self.tok)
        self.assertEqual(sorted(p["pushkey"] for p in await self.list(self.tok)), ["PK1", "PK2"])
        r = await self.request("POST", P + "/set", {"kind": None, "app_id": "com.example.app.ios", "pushkey": "PK1"},
                               access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual([p["pushkey"] for p in await self.list(self.tok)], ["PK2"])
        r = await self.request("POST", P + "/set", {"kind": None, "app_id": "x", "pushkey": "absent"},
                               access_token=self.tok)
        self.assertEqual(r.code, 200)

    async def test_append(self) -> None:
        await self.request("POST", P + "/set", pusher(), access_token=self.tok)
        await self.request("POST", P + "/set", pusher(append=True), access_token=self.bob)
        self.assertEqual(len(await self.list(self.tok)), 1)
        self.assertEqual(len(await self.list(self.bob)), 1)
        await self.request("POST", P + "/set", pusher(), access_token=self.bob)
        self.assertEqual(await self.list(self.tok), [], "append: false removes other users' pushers")
        self.assertEqual(len(await self.list(self.bob)), 1)

    async def test_long_pushkey(self) -> None:
        key = "k" * 512
        r = await self.request("POST", P + "/set", pusher(pushkey=key), access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual((await self.list(self.tok))[0]["pushkey"], key)
        r = await self.request("POST", P + "/set", pusher(pushkey=key + "k"), access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_validation(self) -> None:
        r = await self.request("POST", P + "/set", {"kind": "http", "app_id": "a", "pushkey": "p"}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        self.assertIn("app_display_name", r.json["error"])
        r = await self.request("POST", P + "/set", {"app_id": "a", "pushkey": "p"}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        for body in (
            pusher(data={}), pusher(data={"url": "https://x/other/path"}),
            pusher(data={"url": "ftp://x/_matrix/push/v1/notify"}), pusher(data="url"),
            pusher(data={"url": "https:///_matrix/push/v1/notify"}),
            pusher(data={"url": "https://x:99999/_matrix/push/v1/notify"}),
            pusher(kind="email"), pusher(kind="carrier-pigeon"), pusher(app_id="a" * 65),
            pusher(pushkey=""), pusher(append="yes"), pusher(lang=5),
        ):
            r = await self.request("POST", P + "/set", body, access_token=self.tok)
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        self.assertEqual(await self.list(self.tok), [])
        r = await self.request("GET", P)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_logout_and_deactivation_remove_pushers(self) -> None:
        phone = (await self.login("alice")).json["access_token"]
        await self.request("POST", P + "/set", pusher(pushkey="PHONE"), access_token=phone)
        await self.request("POST", P + "/set", pusher(pushkey="MAIN"), access_token=self.tok)
        r = await self.request("POST", "/_matrix/client/v3/logout", {}, access_token=phone)
        self.assertEqual(r.code, 200)
        self.assertEqual([p["pushkey"] for p in await self.list(self.tok)], ["MAIN"])
        await self.hs.account.deactivate("@alice:test")
        self.assertEqual(await self.hs.pushers.list_pushers("@alice:test"), [])
