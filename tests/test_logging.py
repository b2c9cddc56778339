"""The `log` key filters our events at the source; requests log at debug."""

from __future__ import annotations

from twisted.logger import LogLevel, globalLogPublisher

from conduit_tw import logging as clog
from tests.server import HomeserverTestCase


class RequestLogTests(HomeserverTestCase):
    """One debug line per request, shown only when the level allows it."""

    def _capture(self) -> list[dict]:
        events: list[dict] = []

        def observer(event: dict) -> None:
            if event.get("log_namespace") == "conduit_tw.api":
                events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.addCleanup(clog.configure, "info")
        return events

    async def test_debug_logs_requests(self) -> None:
        events = self._capture()
        clog.configure("debug")
        await self.request("GET", "/_matrix/client/versions")
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.debug)
        self.assertEqual(event["method"], "GET")
        self.assertEqual(event["path"], "/_matrix/client/versions")
        self.assertEqual(event["code"], 200)

    async def test_warn_hides_requests(self) -> None:
        events = self._capture()
        clog.configure("warn")
        await self.request("GET", "/_matrix/client/versions")
        self.assertEqual(events, [])

    async def test_namespace_override(self) -> None:
        events = self._capture()
        clog.configure("warn,api=debug")
        await self.request("GET", "/_matrix/client/versions")
        self.assertEqual(len(events), 1)

    def test_bad_level(self) -> None:
        self.assertRaises(ValueError, clog.configure, "loud")
