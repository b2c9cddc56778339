"""Typing notifications (client-server-api "Typing Notifications")."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.handlers.typing import TypingHandler
from conduit_tw.notifier import Notifier
from tests.api.accounts import AccountsTestCase

ROOM = "!room:test"
T = f"/_matrix/client/v3/rooms/{ROOM}/typing/@alice:test"


class TypingApiTests(AccountsTestCase):
    """PUT /rooms/{roomId}/typing/{userId}."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]

    async def test_refused_until_rooms_register_a_membership_check(self) -> None:
        r = await self.request("PUT", T, {"typing": True, "timeout": 30000}, access_token=self.tok)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_typing(self) -> None:
        async def is_joined(user_id: str, room_id: str) -> bool:
            return room_id == ROOM

        self.hs.typing.is_joined = is_joined
        typing = self.hs.typing
        serial = typing.current_serial()
        self.assertIsNone(typing.event_if_changed(ROOM, serial))
        waiting = self.hs.notifier.wait("@bob:test", [ROOM], 30)
        r = await self.request("PUT", T, {"typing": True, "timeout": 30000}, access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        self.assertTrue(self.successResultOf(waiting))
        self.assertEqual(typing.event_if_changed(ROOM, serial),
                         {"type": "m.typing", "content": {"user_ids": ["@alice:test"]}})
        serial2 = typing.current_serial()
        self.assertIsNone(typing.event_if_changed(ROOM, serial2))
        r = await self.request("PUT", T, {"typing": True, "timeout": 30000}, access_token=self.tok)
        self.assertEqual(typing.current_serial(), serial2, "still typing: no change")
        r = await self.request("PUT", T, {"typing": False}, access_token=self.tok)
        self.assertEqual(typing.event_if_changed(ROOM, serial2),
                         {"type": "m.typing", "content": {"user_ids": []}})
        r = await self.request("PUT", f"/_matrix/client/v3/rooms/!other:test/typing/@alice:test",
                               {"typing": True}, access_token=self.tok)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")

    async def test_validation(self) -> None:
        async def yes(user_id: str, room_id: str) -> bool:
            return True

        self.hs.typing.is_joined = yes
        for body in ({}, {"typing": "yes"}, {"typing": True, "timeout": "30"}, {"typing": True, "timeout": 1.5}):
            r = await self.request("PUT", T, body, access_token=self.tok)
            self.assertMatrixError(r, 400, "M_BAD_JSON")
        bob = (await self.register("bob"))["access_token"]
        r = await self.request("PUT", T, {"typing": True}, access_token=bob)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")


class TypingTimeoutTests(SynchronousTestCase):
    """Expiry by callLater, clamped timeouts, serials."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.notifier = Notifier(self.clock)
        self.typing = TypingHandler(self.clock, self.notifier, lambda: int(self.clock.seconds() * 1000),
                                    min_timeout_s=15, max_timeout_s=45)

    def test_expiry_and_clamping(self) -> None:
        t = self.typing
        self.assertEqual(t.current_serial(), 1_000_000, "serial starts at the clock in ms")
        t.set_typing(ROOM, "@a:test", True, 1000)     # clamped up to 15 s
        t.set_typing(ROOM, "@b:test", True, 600_000)  # clamped down to 45 s
        t.set_typing(ROOM, "@c:test", True)           # no timeout: the maximum
        self.assertEqual(t.typing_users(ROOM), ["@a:test", "@b:test", "@c:test"])
        serial = t.current_serial()
        self.clock.advance(14.9)
        self.assertIsNone(t.event_if_changed(ROOM, serial))
        self.clock.advance(0.2)
        self.assertEqual(t.event_if_changed(ROOM, serial),
                         {"type": "m.typing", "content": {"user_ids": ["@b:test", "@c:test"]}})
        self.clock.advance(30)
        self.assertEqual(t.typing_users(ROOM), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_renewal_resets_the_timer(self) -> None:
        t = self.typing
        t.set_typing(ROOM, "@a:test", True, 20_000)
        self.clock.advance(15)
        t.set_typing(ROOM, "@a:test", True, 20_000)
        self.clock.advance(15)
        self.assertEqual(t.typing_users(ROOM), ["@a:test"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(5)
        self.assertEqual(t.typing_users(ROOM), [])

    def test_stop_typing_and_wakeups(self) -> None:
        t = self.typing
        d = self.notifier.wait("@x:test", [ROOM], 60)
        t.set_typing(ROOM, "@a:test", False)
        self.assertNoResult(d)
        t.set_typing(ROOM, "@a:test", True, 20_000)
        self.assertTrue(self.successResultOf(d))
        t.set_typing(ROOM, "@a:test", False)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(t.event("!none:test"), {"type": "m.typing", "content": {"user_ids": []}})
