"""
Periodic housekeeping (handlers/housekeeping.py, util/periodic.py) and media
retention policies (handlers/media_retention.py), driven by a
twisted.internet.task.Clock for the timers and the server's FakeTime.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial import unittest

from conduit_tw.config.media import MediaRetention as Policy
from conduit_tw.handlers.housekeeping import TXN_ID_LIFETIME_MS
from conduit_tw.handlers.media_retention import MediaRetention, _Item, expired, resolve_policies
from conduit_tw.storage.stores.media_files import media_key
from conduit_tw.util.periodic import PeriodicTasks
from tests.api.test_media import CLIENT, NO_MEDIA_LIMIT, MediaTestCase, media_id_of, png

DAY = 86400


def retention(*policies: dict[str, Any]) -> dict[str, Any]:
    return {**NO_MEDIA_LIMIT, "media": {"retention": list(policies)}}


class PolicyTests(unittest.TestCase):
    """The pure part: which policy applies, what it deletes."""

    def test_resolve(self) -> None:
        local = Policy(scope="local", created=10)
        default = Policy(accessed=5)
        got = resolve_policies([local, default])
        self.assertEqual(got, {"local": local, "remote": default, "thumbnail": default})
        self.assertEqual(resolve_policies([Policy(scope="remote")]), {})
        self.assertEqual(resolve_policies([]), {})

    def test_expired(self) -> None:
        def item(name: str, size: int, created: int, accessed: int) -> _Item:
            return _Item("s", name, "", size, created, accessed)

        a, b, c = item("a", 10, 0, 9_000), item("b", 10, 5_000, 5_000), item("c", 10, 8_000, 8_000)
        self.assertEqual(expired([a, b, c], Policy(created=6), 10_000), [a])
        self.assertEqual(expired([a, b, c], Policy(created=5), 10_000), [a, b])
        self.assertEqual(expired([a, b, c], Policy(accessed=4), 10_000), [b])
        # Space: least recently accessed first until the rest fits.
        self.assertEqual(expired([a, b, c], Policy(space=15), 10_000), [b, c])
        self.assertEqual(expired([a, b, c], Policy(space=30), 10_000), [])

    def test_interval(self) -> None:
        def interval(*policies: Policy) -> float:
            return MediaRetention("s", None, None, policies, lambda: 0).interval  # type: ignore[arg-type]

        self.assertEqual(interval(Policy(created=30 * DAY)), 3600)
        self.assertEqual(interval(Policy(accessed=600)), 150)
        self.assertEqual(interval(Policy(accessed=10)), 60)
        self.assertEqual(interval(Policy(space=1000)), 3600)


class RetentionTestCase(MediaTestCase):
    async def _start(self) -> None:
        await super()._start()
        self.timers = Clock()
        self.hs.housekeeping.clock = self.timers
        self.hs.housekeeping.startService()
        self.addCleanup(self.hs.housekeeping.stopService)

    async def tick(self, seconds: float) -> None:
        """Move both clocks; the timers run what is due."""
        self.clock.advance(seconds)
        self.timers.advance(seconds)
        await self.hs.housekeeping.wait_idle()
        self.commit()

    async def upload_png(self, size: int = 8) -> str:
        return media_id_of((await self.upload(png(size, size)))["content_uri"])[1]

    async def exists(self, media_id: str, server_name: str = "test") -> bool:
        meta = await self.hs.media.store.get(server_name, media_id)
        on_disk = os.path.exists(self.hs.media.files.path_for(media_key(server_name, media_id)))
        self.assertEqual(meta is not None, on_disk, "metadata and file disagree")
        return meta is not None

    async def fake_remote(self, media_id: str, created_ts: int, size: int = 100) -> None:
        """Remote media as the federation fetcher caches it."""
        await self.hs.media.files.write(media_key("remote.example", media_id), b"x" * size)
        await self.hs.media.store.put(
            "remote.example", media_id,
            {"content_type": "application/octet-stream", "size": size,
             "created_ts": created_ts, "remote": True},
        )


class CreatedTests(RetentionTestCase):
    config_overrides = retention({"scope": "local", "created": "1h"})

    async def test_old_local_media_deleted_fresh_and_remote_kept(self) -> None:
        self.assertEqual(self.hs.housekeeping.task_names, ["cleanup", "media_retention"])
        old = await self.upload_png()
        await self.fake_remote("remote1", self.hs.clock_ms())
        await self.tick(1800)
        fresh = await self.upload_png()
        # Downloading does not save media from a `created` policy.
        self.assertEqual((await self.get(f"{CLIENT}/download/test/{old}")).code, 200)
        await self.tick(1800)
        self.assertFalse(await self.exists(old))
        self.assertTrue(await self.exists(fresh))
        self.assertTrue(await self.exists("remote1", "remote.example"))
        r = await self.get(f"{CLIENT}/download/test/{old}")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        self.assertEqual((await self.get(f"{CLIENT}/download/test/{fresh}")).code, 200)

    async def test_thumbnails_go_with_their_media(self) -> None:
        media_id = await self.upload_png(400)
        r = await self.get(f"{CLIENT}/thumbnail/test/{media_id}?width=32&height=32&method=crop")
        self.assertEqual(r.code, 200)
        variants = await self.hs.media.store.thumbnail_variants("test", media_id)
        self.assertEqual(len(variants), 1)
        path = self.hs.media.files.path_for(media_key("test", media_id, variants[0]))
        self.assertTrue(os.path.exists(path))
        await self.tick(3600)
        self.assertFalse(await self.exists(media_id))
        self.assertEqual(await self.hs.media.store.thumbnail_variants("test", media_id), [])
        self.assertFalse(os.path.exists(path))
        self.assertEqual(await self.hs.media.store.access_times(), {})


class AccessedTests(RetentionTestCase):
    config_overrides = retention({"accessed": "2h"})

    async def test_downloads_keep_media(self) -> None:
        used, unused = await self.upload_png(), await self.upload_png()
        await self.fake_remote("stale", self.hs.clock_ms())
        for _ in range(3):
            await self.tick(3600)
            r = await self.get(f"{CLIENT}/download/test/{used}")
            self.assertEqual(r.code, 200)
        self.assertTrue(await self.exists(used))
        self.assertFalse(await self.exists(unused))
        # The scope-less policy covers remote media too.
        self.assertFalse(await self.exists("stale", "remote.example"))

    async def test_thumbnail_views_count(self) -> None:
        media_id = await self.upload_png(400)
        for _ in range(3):
            await self.tick(3600)
            r = await self.get(f"{CLIENT}/thumbnail/test/{media_id}?width=32&height=32&method=scale")
            self.assertEqual(r.code, 200)
        self.assertTrue(await self.exists(media_id))


class ThumbnailScopeTests(RetentionTestCase):
    config_overrides = retention({"scope": "thumbnail", "accessed": "1h"})

    async def test_only_thumbnails_deleted(self) -> None:
        media_id = await self.upload_png(400)
        r = await self.get(f"{CLIENT}/thumbnail/test/{media_id}?width=32&height=32&method=crop")
        self.assertEqual(r.code, 200)
        await self.tick(3600)
        self.assertTrue(await self.exists(media_id))
        self.assertEqual(await self.hs.media.store.thumbnail_variants("test", media_id), [])
        # Generated again when asked for.
        r = await self.get(f"{CLIENT}/thumbnail/test/{media_id}?width=32&height=32&method=crop")
        self.assertEqual(r.code, 200)
        self.assertEqual(len(await self.hs.media.store.thumbnail_variants("test", media_id)), 1)


class SpaceTests(RetentionTestCase):
    config_overrides = retention({"scope": "remote", "space": 250})

    async def test_least_recently_used_over_the_cap(self) -> None:
        now = self.hs.clock_ms()
        for i, name in enumerate(("r1", "r2", "r3", "r4")):
            await self.fake_remote(name, now + i)
        await self.hs.media.store.touch("remote.example", "r1", "", now + 10)
        local = await self.upload_png(200)
        self.assertEqual(await self.hs.media_retention.run(), 2)
        self.assertEqual(
            [await self.exists(n, "remote.example") for n in ("r1", "r2", "r3", "r4")],
            [True, False, False, True],
        )
        self.assertTrue(await self.exists(local))


class NoPolicyTests(RetentionTestCase):
    async def test_nothing_deleted_and_no_timer(self) -> None:
        self.assertEqual(self.hs.housekeeping.task_names, ["cleanup"])
        media_id = await self.upload_png()
        await self.tick(365 * DAY)
        self.assertTrue(await self.exists(media_id))


class CleanupTests(RetentionTestCase):
    """cleanup_second_interval: what expired is swept by the timer."""

    config_overrides = {**NO_MEDIA_LIMIT, "cleanup_second_interval": 30}

    async def test_expired_things_swept(self) -> None:
        hs = self.hs
        now = hs.clock_ms()
        expired_login = await hs.tokens.create_login_token(self.user_id, now + 10_000, now)
        live_login = await hs.tokens.create_login_token(self.user_id, now + 3_600_000, now)
        r = await self.request("POST", "/_matrix/media/v1/create", access_token=self.token)
        pending = media_id_of(r.json["content_uri"])[1]
        r = await self.request(
            "PUT", "/_matrix/client/v3/sendToDevice/m.test/txn1",
            {"messages": {self.user_id: {"*": {"a": 1}}}}, access_token=self.token,
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertTrue(await hs.to_device.store.seen_txn(self.user_id, self.device_id, "txn1"))
        r = await self.request(
            "POST", f"/_matrix/client/v3/user/{self.user_id}/openid/request_token", {},
            access_token=self.token,
        )
        self.assertEqual(r.code, 200, r.body)
        openid = r.json["access_token"]
        # The first sweep: only the 10 s login token has expired.
        await self.tick(30)
        self.assertEqual(await hs.tokens.purge_expired_login_tokens(hs.clock_ms()), 0)
        self.assertIsNone(await hs.tokens.consume_login_token(expired_login, now))
        self.assertEqual(await hs.tokens.consume_login_token(live_login, now), self.user_id)
        self.assertIsNotNone(await hs.media.store.get("test", pending))
        self.assertTrue(await hs.to_device.store.seen_txn(self.user_id, self.device_id, "txn1"))
        self.assertEqual(await hs.openid.store.user_for(openid, now), self.user_id)
        # A day later: the /create id, the to-device transaction ID, the
        # OpenID token (asked about at a time it was valid: it is gone).
        await self.tick(25 * 3600)
        self.assertIsNone(await hs.media.store.get("test", pending))
        self.assertFalse(await hs.to_device.store.seen_txn(self.user_id, self.device_id, "txn1"))
        self.assertIsNone(await hs.openid.store.user_for(openid, now))

    async def _start(self) -> None:
        await super()._start()
        r = await self.request("GET", "/_matrix/client/v3/account/whoami", access_token=self.token)
        self.device_id = r.json["device_id"]

    async def test_room_txn_ids_forgotten_after_a_day(self) -> None:
        r = await self.request(
            "POST", "/_matrix/client/v3/createRoom", {}, access_token=self.token
        )
        room_id = r.json["room_id"]
        path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1"
        body = {"msgtype": "m.text", "body": "hi"}
        first = (await self.request("PUT", path, body, access_token=self.token)).json["event_id"]
        await self.tick(3600)
        again = (await self.request("PUT", path, body, access_token=self.token)).json["event_id"]
        self.assertEqual(first, again)
        await self.tick(TXN_ID_LIFETIME_MS / 1000)
        later = (await self.request("PUT", path, body, access_token=self.token)).json["event_id"]
        self.assertNotEqual(first, later)

    async def test_stop_waits_for_a_running_sweep(self) -> None:
        from twisted.internet.defer import Deferred

        gate: Deferred[None] = Deferred()
        ran = []

        async def slow() -> None:
            ran.append(1)
            await gate

        svc = PeriodicTasks(self.timers)
        svc.add("slow", 10, slow)
        svc.startService()
        self.timers.advance(10)
        self.assertEqual(ran, [1])
        stopped = svc.stopService()
        self.assertNoResult(stopped)
        gate.callback(None)
        self.successResultOf(stopped)
        self.timers.advance(100)
        self.assertEqual(ran, [1])

    async def test_failing_task_runs_again(self) -> None:
        calls = []

        async def broken() -> None:
            calls.append(1)
            raise RuntimeError("boom")

        svc = PeriodicTasks(self.timers)
        svc.add("broken", 5, broken)
        svc.startService()
        self.timers.advance(5)
        self.timers.advance(5)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.successResultOf(svc.stopService())


class ServiceTreeTests(unittest.TestCase):
    def test_housekeeping_is_a_child_of_the_server(self) -> None:
        from conduit_tw.service import make_service
        from tests.server import make_config

        path = self.mktemp()
        os.makedirs(path)
        config = make_config(database_path=path, port=65000, address=["127.0.0.1"])
        svc = make_service(config)
        self.addCleanup(svc.homeserver.close)
        self.assertIs(svc.getServiceNamed("housekeeping"), svc.homeserver.housekeeping)
        self.assertNotIn("housekeeping", svc.listener_names)

