"""The deprecated C{access_token} query parameter (client-server-api "Using access tokens")."""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher

from conduit_tw import logging as conduit_logging
from conduit_tw.handlers.auth import redact_uri
from tests.api.accounts import OPEN, AccountsTestCase

WHOAMI = "/_matrix/client/v3/account/whoami"


class QueryTokenTests(AccountsTestCase):
    """C{?access_token=} is accepted; the header wins; it is never logged."""

    async def test_query_parameter_authenticates(self) -> None:
        a = await self.register("alice")
        r = await self.request("GET", WHOAMI + "?access_token=" + a["access_token"])
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["user_id"], "@alice:test")

    async def test_bad_query_token(self) -> None:
        r = await self.request("GET", WHOAMI + "?access_token=nope")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_header_wins(self) -> None:
        a = await self.register("alice")
        b = await self.register("bob")
        r = await self.request(
            "GET", WHOAMI + "?access_token=" + b["access_token"], access_token=a["access_token"]
        )
        self.assertEqual(r.json["user_id"], "@alice:test")
        # An invalid header is not rescued by a valid query token.
        r = await self.request("GET", WHOAMI + "?access_token=" + b["access_token"], access_token="bad")
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_token_not_logged(self) -> None:
        a = await self.register("alice")
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        conduit_logging.configure("info,conduit_tw.api=debug")
        self.addCleanup(conduit_logging.configure, "info")
        r = await self.request("GET", WHOAMI + "?access_token=" + a["access_token"])
        self.assertEqual(r.code, 200)
        r = await self.request("GET", "/_matrix/client/v3/nowhere?access_token=" + a["access_token"])
        lines = [formatEvent(e) for e in events]
        self.assertTrue(any("whoami" in line for line in lines), lines)
        self.assertFalse(any(a["access_token"] in line for line in lines), lines)

    def test_redact_uri(self) -> None:
        self.assertEqual(
            redact_uri(b"/_matrix/client/v3/sync?since=s1&access_token=secret&timeout=0"),
            "/_matrix/client/v3/sync?since=s1&access_token=<redacted>&timeout=0",
        )
        self.assertEqual(redact_uri("/x?access_token=abc"), "/x?access_token=<redacted>")


class QueryTokenDisabledTests(AccountsTestCase):
    """C{allow_access_token_query_parameter = false} turns the query form off."""

    config_overrides = {**OPEN, "allow_access_token_query_parameter": False}

    async def test_query_parameter_ignored(self) -> None:
        a = await self.register("alice")
        r = await self.request("GET", WHOAMI + "?access_token=" + a["access_token"])
        self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
        r = await self.request("GET", WHOAMI, access_token=a["access_token"])
        self.assertEqual(r.code, 200)
