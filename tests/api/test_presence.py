"""Presence (client-server-api "Presence")."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial import unittest

from conduit_tw.homeserver import HomeServer
from tests.api.accounts import AccountsTestCase
from tests.server import make_config

S = "/_matrix/client/v3/presence/{}/status"
ALICE, BOB = "@alice:test", "@bob:test"


class PresenceApiTests(AccountsTestCase):
    """GET/PUT /presence/{userId}/status."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]
        self.bob = (await self.register("bob"))["access_token"]

    async def test_set_and_get_own(self) -> None:
        r = await self.request("GET", S.format(ALICE), access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {"presence": "offline"}))
        r = await self.request("PUT", S.format(ALICE), {"presence": "online", "status_msg": "I am here."},
                               access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        self.clock.advance(2)
        r = await self.request("GET", S.format(ALICE), access_token=self.tok)
        self.assertEqual(r.json, {"presence": "online", "status_msg": "I am here.",
                                  "last_active_ago": 2000, "currently_active": True})
        r = await self.request("PUT", S.format(ALICE), {"presence": "unavailable"}, access_token=self.tok)
        r = await self.request("GET", S.format(ALICE), access_token=self.tok)
        self.assertEqual(r.json, {"presence": "unavailable", "last_active_ago": 0})

    async def test_errors(self) -> None:
        r = await self.request("PUT", S.format(ALICE), {"presence": "online"}, access_token=self.bob)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        for body, errcode in (({"presence": "away"}, "M_INVALID_PARAM"), ({}, "M_INVALID_PARAM"),
                              ({"presence": "online", "status_msg": 3}, "M_BAD_JSON")):
            r = await self.request("PUT", S.format(ALICE), body, access_token=self.tok)
            self.assertMatrixError(r, 400, errcode)
        r = await self.request("GET", S.format("@nobody:test"), access_token=self.tok)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.request("GET", S.format(BOB), access_token=self.tok)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_shares_room_hook_and_changes(self) -> None:
        shared = {(ALICE, BOB), (BOB, ALICE)}

        async def shares_room(a: str, b: str) -> bool:
            return a == b or (a, b) in shared

        self.hs.presence.shares_room = shares_room
        start = await self.hs.globals.next_position()
        waiting = self.hs.notifier.wait(BOB, [], 30)
        await self.request("PUT", S.format(BOB), {"presence": "online"}, access_token=self.bob)
        self.assertTrue(self.successResultOf(waiting))
        r = await self.request("GET", S.format(BOB), access_token=self.tok)
        self.assertEqual(r.json["presence"], "online")
        r = await self.request("GET", S.format("@nobody:test"), access_token=self.tok)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

        await self.request("PUT", S.format(ALICE), {"presence": "unavailable"}, access_token=self.tok)
        events, pos = await self.hs.presence.changes_since(ALICE, start)
        self.assertEqual([(e["type"], e["sender"], e["content"]["presence"]) for e in events],
                         [("m.presence", BOB, "online"), ("m.presence", ALICE, "unavailable")])
        shared.clear()
        events, pos2 = await self.hs.presence.changes_since(ALICE, start)
        self.assertEqual([e["sender"] for e in events], [ALICE])
        self.assertEqual(pos, pos2)
        self.assertEqual(await self.hs.presence.changes_since(ALICE, pos), ([], 0))
        async def everyone(a: str, b: str) -> bool:
            return True

        self.hs.presence.shares_room = everyone
        r = await self.request("GET", S.format("@nobody:test"), access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", S.format("@carol:elsewhere"), access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # Setting the same state again takes no stream position.
        await self.request("PUT", S.format(ALICE), {"presence": "unavailable"}, access_token=self.tok)
        self.assertEqual(await self.hs.presence.changes_since(ALICE, pos), ([], 0))


class PresenceDisabledTests(AccountsTestCase):
    """allow_local_presence = false."""

    config_overrides = {**AccountsTestCase.config_overrides, "allow_local_presence": False}

    async def test_always_offline(self) -> None:
        tok = (await self.register("alice"))["access_token"]
        r = await self.request("PUT", S.format(ALICE), {"presence": "online"}, access_token=tok)
        self.assertEqual(r.code, 200)
        r = await self.request("GET", S.format(ALICE), access_token=tok)
        self.assertEqual(r.json, {"presence": "offline"})
        self.assertEqual(await self.hs.presence.changes_since(ALICE, 0), ([], 0))
        self.assertIsNone(await self.hs.presence.store.get(ALICE))


class PresenceClockCase(unittest.TestCase):
    """A server whose presence timers run on a fake clock."""

    async def make_server(self, path: str | None = None, **overrides: Any) -> HomeServer:
        if path is None:
            path = self.mktemp()
            os.makedirs(path)
        self.path = path
        hs = HomeServer(
            make_config(database_path=path, presence_idle_timeout_s=300,
                        presence_offline_timeout_s=1800, **overrides),
            self.clock, clock_ms=lambda: int(self.clock.seconds() * 1000),
        )
        await hs.setup()
        return hs

    async def setUp(self) -> None:  # type: ignore[override]
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hs = await self.make_server()
        self.addCleanup(lambda: self.hs.close())

    def advance(self, seconds: float) -> None:
        """Move the fake clock on, then commit what its timers wrote (group commit)."""
        self.clock.advance(seconds)
        flush = getattr(self.hs.db, "flush", None)
        if flush is not None:
            flush()

    async def state(self) -> str:
        return (await self.hs.presence.get_content(ALICE))["presence"]


class PresenceTimeoutTests(PresenceClockCase):
    """Idle and offline timeouts on a fake clock."""

    async def test_idle_then_offline(self) -> None:
        p = self.hs.presence
        await p.set_presence(ALICE, "online")
        self.advance(299)
        self.assertEqual(await self.state(), "online")
        await p.bump_activity(ALICE)  # pushes the idle timer back
        self.advance(299)
        self.assertEqual(await self.state(), "online")
        self.advance(2)
        self.assertEqual(await self.state(), "unavailable")
        content = await p.get_content(ALICE)
        self.assertEqual(content["last_active_ago"], 301_000)
        self.assertNotIn("currently_active", content)
        self.advance(1800 - 301 - 1)
        self.assertEqual(await self.state(), "unavailable")
        self.advance(1)
        self.assertEqual(await self.state(), "offline")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        await p.bump_activity(ALICE)
        self.assertEqual(await self.state(), "online")

    async def test_bump_without_io_when_online(self) -> None:
        p = self.hs.presence
        await p.set_presence(ALICE, "online")
        before = await self.hs.globals.current_position()
        for _ in range(5):
            self.advance(100)
            await p.bump_activity(ALICE)
        self.assertEqual(await self.hs.globals.current_position(), before)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1, "one timer per user")
        self.assertEqual((await p.get_content(ALICE))["last_active_ago"], 0)

    async def test_manual_offline_cancels_timers(self) -> None:
        await self.hs.presence.set_presence(ALICE, "online")
        await self.hs.presence.set_presence(ALICE, "offline")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_timers_survive_restart(self) -> None:
        await self.hs.presence.set_presence(ALICE, "online")
        await self.hs.close()
        self.advance(200)
        self.hs = await self.make_server(self.path)
        self.assertEqual(await self.state(), "online")
        self.advance(101)
        self.assertEqual(await self.state(), "unavailable")


REMOTE = "@bob:remote.example"


class RemotePresenceTimeoutTests(PresenceClockCase):
    """presence_timeout_remote_users: remote users time out without updates."""

    async def remote_state(self) -> str:
        return (await self.hs.presence.get_content(REMOTE))["presence"]

    async def test_remote_idle_then_offline_without_updates(self) -> None:
        p = self.hs.presence
        await p.set_remote(REMOTE, "online", None, 60_000)
        self.advance(200)
        await p.set_remote(REMOTE, "online", "here", 0)  # an update: counted from now
        self.advance(299)
        self.assertEqual(await self.remote_state(), "online")
        self.advance(2)
        self.assertEqual(await self.remote_state(), "unavailable")
        content = await p.get_content(REMOTE)
        self.assertEqual((content["status_msg"], content["last_active_ago"]), ("here", 301_000))
        self.advance(1800 - 301 - 1)
        self.assertEqual(await self.remote_state(), "unavailable")
        self.advance(1)
        self.assertEqual(await self.remote_state(), "offline")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_remote_offline_update_cancels_timer(self) -> None:
        await self.hs.presence.set_remote(REMOTE, "online", None, 0)
        await self.hs.presence.set_remote(REMOTE, "offline", None, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_remote_timer_rearmed_at_restart(self) -> None:
        await self.hs.presence.set_remote(REMOTE, "online", None, 0)
        await self.hs.close()
        self.advance(1000)
        self.hs = await self.make_server(self.path)
        self.advance(299)
        self.assertEqual(await self.remote_state(), "online", "counted from the restart")
        self.advance(2)
        self.assertEqual(await self.remote_state(), "unavailable")

    async def test_disabled(self) -> None:
        await self.hs.close()
        self.hs = await self.make_server(presence_timeout_remote_users=False)
        await self.hs.presence.set_remote(REMOTE, "online", None, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.advance(5000)
        self.assertEqual(await self.remote_state(), "online", "stays as their server said")
