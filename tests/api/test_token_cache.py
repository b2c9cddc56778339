"""
The in-memory cache of access tokens (C{TokenStore._live}): a token used
once is answered from memory, and every way a token is removed or replaced
refuses it at once, cached or not.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial import unittest

from conduit_tw.storage.database import open_database
from conduit_tw.storage.stores.tokens import TokenInfo, TokenStore, hash_token
from tests.api.accounts import AccountsTestCase

C = "/_matrix/client/v3"
WHOAMI = C + "/account/whoami"


class TokenCacheTests(AccountsTestCase):
    """Each removal path refuses a token that was cached a moment before."""

    async def _cached(self, token: str) -> None:
        """Use C{token} (200) and check it is now answered from memory."""
        r = await self.request("GET", WHOAMI, access_token=token)
        self.assertEqual(r.code, 200, r.body)
        self.assertIn(hash_token(token), self.hs.tokens._live)

    async def _refused(self, token: str) -> None:
        r = await self.request("GET", WHOAMI, access_token=token)
        self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")
        self.assertNotIn(hash_token(token), self.hs.tokens._live)

    async def _post(self, path: str, body: Any, token: str) -> Any:
        r = await self.request("POST", C + path, body, access_token=token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def test_reads_once(self) -> None:
        """A cached token is not read from the database again."""
        a = await self.register("alice")
        await self._cached(a["access_token"])
        reads = []
        tree = self.hs.tokens.info

        class Counting:
            def get(self, key: bytes) -> Any:
                reads.append(key)
                return tree.get(key)

        self.patch(self.hs.tokens, "info", Counting())
        r = await self.request("GET", WHOAMI, access_token=a["access_token"])
        self.assertEqual(r.json["user_id"], "@alice:test")
        self.assertEqual(reads, [])

    async def test_logout(self) -> None:
        a = await self.register("alice")
        await self._cached(a["access_token"])
        await self._post("/logout", {}, a["access_token"])
        await self._refused(a["access_token"])

    async def test_logout_all(self) -> None:
        a = await self.register("alice")
        b = (await self.login()).json
        await self._cached(a["access_token"])
        await self._cached(b["access_token"])
        await self._post("/logout/all", {}, b["access_token"])
        await self._refused(a["access_token"])
        await self._refused(b["access_token"])

    async def test_delete_device(self) -> None:
        a = await self.register("alice")
        b = (await self.login()).json
        await self._cached(b["access_token"])
        await self._post(
            "/delete_devices",
            {"devices": [b["device_id"]], "auth": self.password_auth("alice")},
            a["access_token"],
        )
        await self._refused(b["access_token"])

    async def test_password_change(self) -> None:
        a = await self.register("alice")
        b = (await self.login()).json
        await self._cached(b["access_token"])
        await self._post(
            "/account/password",
            {"new_password": "new pw", "auth": self.password_auth("alice")},
            a["access_token"],
        )
        await self._refused(b["access_token"])
        await self._cached(a["access_token"])

    async def test_deactivation(self) -> None:
        a = await self.register("alice")
        b = (await self.login()).json
        await self._cached(b["access_token"])
        await self._post(
            "/account/deactivate", {"auth": self.password_auth("alice")}, a["access_token"]
        )
        await self._refused(a["access_token"])
        await self._refused(b["access_token"])

    async def test_refresh(self) -> None:
        """A refresh replaces the access token: the old one, cached, is refused."""
        await self.register("alice")
        r = await self.login(refresh_token=True)
        self.assertEqual(r.code, 200, r.body)
        s = r.json
        await self._cached(s["access_token"])
        r = await self.request("POST", C + "/refresh", {"refresh_token": s["refresh_token"]})
        self.assertEqual(r.code, 200, r.body)
        await self._refused(s["access_token"])
        # The new token's first use rewrites its record (revoke_refresh
        # cleared), which drops it from memory; it stays usable and is
        # cached from the next use on.
        new = r.json["access_token"]
        r = await self.request("GET", WHOAMI, access_token=new)
        self.assertEqual(r.code, 200, r.body)
        self.assertNotIn(hash_token(new), self.hs.tokens._live)
        await self._cached(new)

    async def test_login_again_with_device_id(self) -> None:
        """Logging in again with the same device replaces its token."""
        a = await self.register("alice", device_id="D1")
        await self._cached(a["access_token"])
        r = await self.login(device_id="D1")
        self.assertEqual(r.code, 200, r.body)
        await self._refused(a["access_token"])
        await self._cached(r.json["access_token"])


class _SlowReads:
    """Wraps a tree: C{get} answers only when the test says so."""

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        self.waiting: list[tuple[Deferred[Any], Any]] = []

    def get(self, key: bytes) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append((d, self.tree.get(key)))
        return d

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d, inner in waiting:
            inner.chainDeferred(d)


class TokenStoreRaceTests(unittest.TestCase):
    """A lookup that read the tree around a change does not cache what it read."""

    async def _store(self) -> TokenStore:
        path = self.mktemp()
        db = open_database("sqlite", path)
        self.addCleanup(db.close)
        store = TokenStore(db)
        return store

    def test_read_before_removal(self) -> Deferred[None]:
        async def run() -> None:
            store = await self._store()
            info = TokenInfo("@a:test", "D1")
            await store.set_token("tok", info)
            slow = _SlowReads(store.info)
            store.info = slow  # type: ignore[assignment]
            # The read is made (and answered by the database) before the
            # removal, but delivered after it.
            d = Deferred.fromCoroutine(store.lookup("tok"))
            batch = store.db.batch()
            store.remove_device_in_batch(batch, "@a:test", "D1", hash_token("tok"))
            await store.write(batch)
            slow.release()
            self.assertEqual(await d, info)  # it was live when read
            self.assertNotIn(hash_token("tok"), store._live)
            store.info = slow.tree  # type: ignore[assignment]
            self.assertIsNone(await store.lookup("tok"))

        return Deferred.fromCoroutine(run())

    def test_replaced_record(self) -> Deferred[None]:
        """A rewritten record (the refresh note cleared) is read again."""

        async def run() -> None:
            store = await self._store()
            info = TokenInfo("@a:test", "D1", revoke_refresh="00")
            await store.set_token("tok", info)
            self.assertEqual(await store.lookup("tok"), info)
            await store.clear_revoke_refresh("tok", info)
            self.assertIsNone((await store.lookup("tok")).revoke_refresh)  # type: ignore[union-attr]

        return Deferred.fromCoroutine(run())
