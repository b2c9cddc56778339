"""util/hooks.run_hooks: a failing hook is logged, the others run, the change stands."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from conduit_tw.util.hooks import run_hooks
from tests.api.accounts import AccountsTestCase
from tests.api.rooms import RoomsTestCase


class RunHooksTests(unittest.TestCase):
    """The helper itself."""

    async def test_failure_isolated(self) -> None:
        """A raising hook is logged; the hooks after it still run, in order."""
        calls: list[Any] = []

        def first(x: int) -> None:
            calls.append(("first", x))

        def broken(x: int) -> None:
            raise RuntimeError("boom")

        async def third(x: int) -> None:
            calls.append(("third", x))

        await run_hooks([first, broken, third], 7, what="on_test")
        self.assertEqual(calls, [("first", 7), ("third", 7)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    async def test_async_failure_isolated(self) -> None:
        """An awaitable that fails is isolated the same way."""
        calls: list[str] = []

        async def broken() -> None:
            raise ValueError("late boom")

        await run_hooks([broken, lambda: calls.append("after")], what="on_test")
        self.assertEqual(calls, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class HookFailureThroughAPITests(AccountsTestCase):
    """A failing after-commit hook does not turn a committed change into a 500."""

    async def test_profile_change_survives_failing_hook(self) -> None:
        tok = (await self.register("alice"))["access_token"]
        seen: list[Any] = []

        def broken(*args: Any) -> None:
            raise RuntimeError("hook failure")

        self.hs.profile.on_profile_changed.insert(0, broken)
        self.hs.profile.on_profile_changed.append(lambda *a: seen.append(a))
        path = "/_matrix/client/v3/profile/@alice:test/displayname"
        r = await self.request("PUT", path, {"displayname": "Al"}, access_token=tok)
        self.assertEqual(r.code, 200)
        self.assertEqual(seen, [("@alice:test", "displayname", "Al")])
        r = await self.request("GET", path)
        self.assertEqual(r.json, {"displayname": "Al"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class CloseOrderTests(RoomsTestCase):
    """HomeServer.close() writes pending data before the database closes."""

    async def test_pending_last_seen_survives_close(self) -> None:
        tok = (await self.register("alice"))["access_token"]
        whoami = "/_matrix/client/v3/account/whoami"
        await self.request("GET", whoami, access_token=tok)
        self.clock.advance(5)
        # Same device, same IP, inside the flush window: held in memory.
        await self.request("GET", whoami, access_token=tok)
        expected = self.hs.clock_ms()
        await self.restart()
        devices = await self.hs.device_store.list("@alice:test")
        self.assertEqual([d.last_seen_ts for d in devices], [expected])
