"""Device management: list, get, rename, delete (UIA), last seen."""

from __future__ import annotations

from conduit_tw.handlers import devices as devices_module
from tests.api.accounts import OPEN, AccountsTestCase

DEVICES = "/_matrix/client/v3/devices"


class DeviceTests(AccountsTestCase):
    """GET/PUT/DELETE /devices and POST /delete_devices."""

    async def _alice(self) -> dict:
        return await self.register("alice", device_id="PHONE", initial_device_display_name="Phone")

    async def test_list_and_get(self) -> None:
        a = await self._alice()
        await self.login(device_id="LAPTOP")
        r = await self.request("GET", DEVICES, access_token=a["access_token"])
        self.assertEqual(r.code, 200)
        ids = [d["device_id"] for d in r.json["devices"]]
        self.assertEqual(sorted(ids), ["LAPTOP", "PHONE"])
        phone = [d for d in r.json["devices"] if d["device_id"] == "PHONE"][0]
        self.assertEqual(phone["display_name"], "Phone")
        self.assertEqual(phone["last_seen_ip"], "127.0.0.1")
        self.assertIsInstance(phone["last_seen_ts"], int)
        laptop = [d for d in r.json["devices"] if d["device_id"] == "LAPTOP"][0]
        # Unset values are null (as Synapse answers; matrix-nio requires the keys).
        self.assertIsNone(laptop["display_name"])
        r = await self.request("GET", DEVICES + "/PHONE", access_token=a["access_token"])
        self.assertEqual(r.json["device_id"], "PHONE")
        r = await self.request("GET", "/_matrix/client/r0/devices/PHONE", access_token=a["access_token"])
        self.assertEqual(r.code, 200)

    async def test_unknown_and_foreign_devices(self) -> None:
        a = await self._alice()
        b = await self.register("bob", device_id="BOBDEV")
        r = await self.request("GET", DEVICES + "/NOPE", access_token=a["access_token"])
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", DEVICES + "/BOBDEV", access_token=a["access_token"])
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("PUT", DEVICES + "/BOBDEV", {"display_name": "x"}, access_token=a["access_token"])
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertIsNotNone(b)

    async def test_rename(self) -> None:
        a = await self._alice()
        r = await self.request("PUT", DEVICES + "/PHONE", {"display_name": "New"}, access_token=a["access_token"])
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", DEVICES + "/PHONE", access_token=a["access_token"])
        self.assertEqual(r.json["display_name"], "New")
        # No display_name: unchanged.
        r = await self.request("PUT", DEVICES + "/PHONE", {}, access_token=a["access_token"])
        self.assertEqual(r.code, 200)
        r = await self.request("GET", DEVICES + "/PHONE", access_token=a["access_token"])
        self.assertEqual(r.json["display_name"], "New")
        r = await self.request("PUT", DEVICES + "/PHONE", {"display_name": 5}, access_token=a["access_token"])
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("PUT", DEVICES + "/PHONE", {"display_name": "x" * 1000}, access_token=a["access_token"])
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_needs_auth(self) -> None:
        r = await self.request("GET", DEVICES)
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")

    async def test_delete_with_uia(self) -> None:
        a = await self._alice()
        other = (await self.login(device_id="LAPTOP")).json
        r = await self.request("DELETE", DEVICES + "/LAPTOP", {}, access_token=a["access_token"])
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        r = await self.request(
            "DELETE", DEVICES + "/LAPTOP",
            {"auth": self.password_auth("alice", session=r.json["session"])},
            access_token=a["access_token"],
        )
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=other["access_token"])
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        r = await self.request("GET", DEVICES + "/LAPTOP", access_token=a["access_token"])
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # The device is gone: deleting it again is a 404, before any UIA.
        r = await self.request(
            "DELETE", DEVICES + "/LAPTOP", {"auth": self.password_auth("alice")}, access_token=a["access_token"]
        )
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_delete_foreign_or_unknown_device_is_not_a_uia_round(self) -> None:
        a = await self._alice()
        await self.register("bob", device_id="BOBDEV")
        for device_id in ("BOBDEV", "NOPE"):
            r = await self.request("DELETE", DEVICES + "/" + device_id, {}, access_token=a["access_token"])
            self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertIsNotNone(await self.hs.device_store.get("@bob:test", "BOBDEV"))

    async def test_uia_session_bound_to_the_device(self) -> None:
        a = await self._alice()
        await self.login(device_id="D1")
        await self.login(device_id="D2")
        r = await self.request("DELETE", DEVICES + "/D1", {}, access_token=a["access_token"])
        self.assertEqual(r.code, 401)
        sid = r.json["session"]
        # The session started for D1 does not authorise deleting D2 ...
        r = await self.request(
            "DELETE", DEVICES + "/D2", {"auth": self.password_auth("alice", session=sid)},
            access_token=a["access_token"],
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        # ... nor a bulk deletion or a password change.
        r = await self.request(
            "POST", "/_matrix/client/v3/delete_devices",
            {"devices": ["D2"], "auth": self.password_auth("alice", session=sid)},
            access_token=a["access_token"],
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request(
            "POST", "/_matrix/client/v3/account/password",
            {"new_password": "new pw", "auth": self.password_auth("alice", session=sid)},
            access_token=a["access_token"],
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertIsNotNone(await self.hs.device_store.get("@alice:test", "D2"))
        # It still works for D1.
        r = await self.request(
            "DELETE", DEVICES + "/D1", {"auth": self.password_auth("alice", session=sid)},
            access_token=a["access_token"],
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertIsNone(await self.hs.device_store.get("@alice:test", "D1"))

    async def test_bulk_uia_session_bound_to_the_list(self) -> None:
        a = await self._alice()
        await self.login(device_id="D1")
        await self.login(device_id="D2")
        path = "/_matrix/client/v3/delete_devices"
        r = await self.request("POST", path, {"devices": ["D1"]}, access_token=a["access_token"])
        sid = r.json["session"]
        r = await self.request(
            "POST", path, {"devices": ["D1", "D2"], "auth": self.password_auth("alice", session=sid)},
            access_token=a["access_token"],
        )
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        self.assertEqual(len(await self.hs.device_store.list("@alice:test")), 3)

    async def test_delete_devices_bulk(self) -> None:
        a = await self._alice()
        await self.login(device_id="D1")
        await self.login(device_id="D2")
        r = await self.request(
            "POST", "/_matrix/client/v3/delete_devices",
            {"devices": ["D1", "D2", "UNKNOWN"], "auth": self.password_auth("alice")},
            access_token=a["access_token"],
        )
        self.assertEqual(r.code, 200, r.body)
        ids = [d.device_id for d in await self.hs.device_store.list("@alice:test")]
        self.assertEqual(ids, ["PHONE"])
        r = await self.request(
            "POST", "/_matrix/client/v3/delete_devices", {"auth": self.password_auth("alice")},
            access_token=a["access_token"],
        )
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request(
            "POST", "/_matrix/client/v3/delete_devices", {"devices": ["D1"]},
            access_token=a["access_token"],
        )
        self.assertEqual(r.code, 401)

    async def test_delete_wrong_password(self) -> None:
        a = await self._alice()
        r = await self.request(
            "DELETE", DEVICES + "/PHONE", {"auth": self.password_auth("alice", "bad")},
            access_token=a["access_token"],
        )
        self.assertEqual(r.code, 401)
        self.assertEqual(r.json["errcode"], "M_FORBIDDEN")
        self.assertIsNotNone(await self.hs.device_store.get("@alice:test", "PHONE"))

    async def test_last_seen_tracks_ip_and_is_flushed(self) -> None:
        a = await self._alice()
        self.clock.advance(10)
        r = await self.request("GET", "/_matrix/client/v3/account/whoami",
                               access_token=a["access_token"], client_ip="10.1.2.3")
        self.assertEqual(r.code, 200)
        r = await self.request("GET", DEVICES + "/PHONE", access_token=a["access_token"], client_ip="10.1.2.3")
        self.assertEqual(r.json["last_seen_ip"], "10.1.2.3")
        # A new IP is written at once.
        stored = await self.hs.device_store.get("@alice:test", "PHONE")
        self.assertEqual(stored.last_seen_ip, "10.1.2.3")
        written_ts = stored.last_seen_ts
        # Same IP a bit later: only in memory, but the API shows it.
        self.clock.advance(30)
        await self.request("GET", "/_matrix/client/v3/account/whoami",
                           access_token=a["access_token"], client_ip="10.1.2.3")
        stored = await self.hs.device_store.get("@alice:test", "PHONE")
        self.assertEqual(stored.last_seen_ts, written_ts)
        r = await self.request("GET", DEVICES, access_token=a["access_token"], client_ip="10.1.2.3")
        self.assertGreater(r.json["devices"][0]["last_seen_ts"], written_ts)
        # After the flush interval it is written (once the first write is
        # durable: one flush at a time).
        self.commit()
        self.clock.advance(devices_module.LAST_SEEN_FLUSH_MS / 1000)
        await self.request("GET", "/_matrix/client/v3/account/whoami",
                           access_token=a["access_token"], client_ip="10.1.2.3")
        stored = await self.hs.device_store.get("@alice:test", "PHONE")
        self.assertEqual(stored.last_seen_ts, self.hs.clock_ms())

    async def test_federation_view_hides_names(self) -> None:
        await self._alice()
        view = await self.hs.devices.devices_for_federation("@alice:test")
        self.assertEqual(view, [{"device_id": "PHONE"}])


class DeviceNameFederationTests(AccountsTestCase):
    """allow_device_name_federation = true."""

    config_overrides = {**OPEN, "allow_device_name_federation": True}

    async def test_names_shared(self) -> None:
        await self.register("alice", device_id="PHONE", initial_device_display_name="Phone")
        view = await self.hs.devices.devices_for_federation("@alice:test")
        self.assertEqual(view, [{"device_id": "PHONE", "device_display_name": "Phone"}])


class DeviceLMDBTests(DeviceTests):
    """Device storage on the LMDB backend too."""

    backend = "lmdb"
