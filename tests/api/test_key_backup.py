"""
Server-side key backups (client-server-api "Server-side key backups",
key_backup.yaml): versions, keys per backup / room / session, the
replacement rules, etag and count, refusals and isolation between users,
and a round trip of session keys encrypted as a client does for
C{m.megolm_backup.v1.curve25519-aes-sha2} (the server only sees opaque
JSON; the client side is tests/megolm_backup.py).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.trial import unittest

from conduit_tw.handlers.key_backup import keeps_existing, parse_version
from tests.api.accounts import OPEN, AccountsTestCase
from tests.megolm_backup import ALGORITHM as ALG
from tests.megolm_backup import BackupKey, backup_upload, megolm_session, restore

V = "/_matrix/client/v3/room_keys/version"
K = "/_matrix/client/v3/room_keys/keys"
ROOM = "!room:test"


def key(fmi: int = 0, fc: int = 0, verified: bool = False, tag: str = "x") -> dict[str, Any]:
    """A KeyBackupData with opaque session data marked C{tag}."""
    return {
        "first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
        "session_data": {"ephemeral": "e", "ciphertext": tag, "mac": "m"},
    }


class KeyBackupTestCase(AccountsTestCase):
    """Alice with a token; helpers for versions and keys."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]

    async def new_version(self, auth_data: dict[str, Any] | None = None, tok: str | None = None) -> str:
        body = {"algorithm": ALG, "auth_data": auth_data or {"public_key": "abc"}}
        r = await self.request("POST", V, body, access_token=tok or self.tok)
        self.assertEqual(r.code, 200, r.body)
        self.assertIsInstance(r.json["version"], str)
        return r.json["version"]

    async def put(self, path: str, body: Any, version: str, tok: str | None = None):
        return await self.request("PUT", f"{K}{path}?version={version}", body, access_token=tok or self.tok)

    async def get(self, path: str, version: str, tok: str | None = None):
        return await self.request("GET", f"{K}{path}?version={version}", access_token=tok or self.tok)

    async def stored(self, version: str, session: str = "s1") -> dict[str, Any]:
        r = await self.get(f"/{ROOM}/{session}", version)
        self.assertEqual(r.code, 200, r.body)
        return r.json


class VersionTests(KeyBackupTestCase):
    """POST/GET/PUT/DELETE /room_keys/version[/{version}]."""

    async def test_lifecycle(self) -> None:
        r = await self.request("GET", V, access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        v1 = await self.new_version({"public_key": "one"})
        r = await self.request("GET", V, access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual(
            {k: r.json[k] for k in ("algorithm", "auth_data", "count", "version")},
            {"algorithm": ALG, "auth_data": {"public_key": "one"}, "count": 0, "version": v1},
        )
        self.assertIsInstance(r.json["etag"], str)
        v2 = await self.new_version({"public_key": "two"})
        self.assertNotEqual(v1, v2)
        r = await self.request("GET", V, access_token=self.tok)
        self.assertEqual((r.json["version"], r.json["auth_data"]), (v2, {"public_key": "two"}))
        r = await self.request("GET", f"{V}/{v1}", access_token=self.tok)
        self.assertEqual((r.code, r.json["auth_data"]), (200, {"public_key": "one"}))

        # Update: only auth_data changes; algorithm and body version must match.
        r = await self.request(
            "PUT", f"{V}/{v1}", {"algorithm": ALG, "auth_data": {"public_key": "one", "signatures": {}},
                                 "version": v1}, access_token=self.tok,
        )
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", f"{V}/{v1}", access_token=self.tok)
        self.assertEqual(r.json["auth_data"], {"public_key": "one", "signatures": {}})
        r = await self.request("PUT", f"{V}/{v1}", {"algorithm": "other", "auth_data": {}}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request(
            "PUT", f"{V}/{v1}", {"algorithm": ALG, "auth_data": {}, "version": v2}, access_token=self.tok
        )
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("PUT", f"{V}/99", {"algorithm": ALG, "auth_data": {}}, access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

        # Delete: the newest live version becomes current again; deleting twice is fine.
        r = await self.request("DELETE", f"{V}/{v2}", access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("DELETE", f"{V}/{v2}", access_token=self.tok)
        self.assertEqual((r.code, r.json), (200, {}))
        r = await self.request("GET", f"{V}/{v2}", access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("PUT", f"{V}/{v2}", {"algorithm": ALG, "auth_data": {}}, access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", V, access_token=self.tok)
        self.assertEqual(r.json["version"], v1)
        # A deleted version's id is never given out again.
        v3 = await self.new_version()
        self.assertNotIn(v3, (v1, v2))
        self.assertGreater(int(v3), int(v2))

    async def test_unknown_versions(self) -> None:
        await self.new_version()
        for version in ("99", "0", "abc", "01", "-1", "1.0", str(2**64), "%20"):
            r = await self.request("GET", f"{V}/{version}", access_token=self.tok)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")
            r = await self.request("DELETE", f"{V}/{version}", access_token=self.tok)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")
            r = await self.get("", version)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_body_validation(self) -> None:
        for body, errcode in (
            ({"auth_data": {}}, "M_MISSING_PARAM"),
            ({"algorithm": ALG}, "M_MISSING_PARAM"),
            ({"algorithm": 1, "auth_data": {}}, "M_BAD_JSON"),
            ({"algorithm": ALG, "auth_data": "x"}, "M_BAD_JSON"),
            ({"algorithm": ALG, "auth_data": []}, "M_BAD_JSON"),
        ):
            r = await self.request("POST", V, body, access_token=self.tok)
            self.assertMatrixError(r, 400, errcode)
        r = await self.request("POST", V, [ALG], access_token=self.tok)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("POST", V, raw_body=b"{not json", access_token=self.tok)
        self.assertMatrixError(r, 400, "M_NOT_JSON")
        v = await self.new_version()
        r = await self.request(
            "PUT", f"{V}/{v}", {"algorithm": ALG, "auth_data": {}, "version": 1}, access_token=self.tok
        )
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.request("PUT", f"{V}/{v}", {"algorithm": ALG}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_MISSING_PARAM")

    async def test_auth_required(self) -> None:
        v = await self.new_version()
        for method, path in (
            ("POST", V), ("GET", V), ("GET", f"{V}/{v}"), ("PUT", f"{V}/{v}"), ("DELETE", f"{V}/{v}"),
            ("GET", f"{K}?version={v}"), ("PUT", f"{K}?version={v}"), ("DELETE", f"{K}?version={v}"),
            ("GET", f"{K}/{ROOM}?version={v}"), ("PUT", f"{K}/{ROOM}/s?version={v}"),
        ):
            r = await self.request(method, path, {} if method in ("POST", "PUT") else None)
            self.assertMatrixError(r, 401, "M_MISSING_TOKEN")
            r = await self.request(method, path, {} if method in ("POST", "PUT") else None, access_token="nope")
            self.assertMatrixError(r, 401, "M_UNKNOWN_TOKEN")

    async def test_r0_paths(self) -> None:
        r = await self.request(
            "POST", "/_matrix/client/r0/room_keys/version", {"algorithm": ALG, "auth_data": {}},
            access_token=self.tok,
        )
        self.assertEqual(r.code, 200)


class KeyTests(KeyBackupTestCase):
    """GET/PUT/DELETE /room_keys/keys[/{roomId}[/{sessionId}]]."""

    async def test_put_get_delete_each_level(self) -> None:
        v = await self.new_version()
        r = await self.put(f"/{ROOM}/s1", key(tag="a"), v)
        self.assertEqual((r.code, r.json["count"]), (200, 1))
        self.assertIsInstance(r.json["etag"], str)
        r = await self.put(f"/{ROOM}", {"sessions": {"s2": key(tag="b"), "s3": key(tag="c")}}, v)
        self.assertEqual(r.json["count"], 3)
        r = await self.put("", {"rooms": {"!other:test": {"sessions": {"s1": key(tag="d")}}}}, v)
        self.assertEqual(r.json["count"], 4)

        self.assertEqual(await self.stored(v), key(tag="a"))
        r = await self.get(f"/{ROOM}", v)
        self.assertEqual(r.json, {"sessions": {"s1": key(tag="a"), "s2": key(tag="b"), "s3": key(tag="c")}})
        r = await self.get("", v)
        self.assertEqual(r.json, {"rooms": {
            ROOM: {"sessions": {"s1": key(tag="a"), "s2": key(tag="b"), "s3": key(tag="c")}},
            "!other:test": {"sessions": {"s1": key(tag="d")}},
        }})

        r = await self.request("DELETE", f"{K}/{ROOM}/s2?version={v}", access_token=self.tok)
        self.assertEqual((r.code, r.json["count"]), (200, 3))
        r = await self.get(f"/{ROOM}/s2", v)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("DELETE", f"{K}/{ROOM}?version={v}", access_token=self.tok)
        self.assertEqual(r.json["count"], 1)
        r = await self.get(f"/{ROOM}", v)
        self.assertEqual((r.code, r.json), (200, {"sessions": {}}))
        r = await self.request("DELETE", f"{K}?version={v}", access_token=self.tok)
        self.assertEqual(r.json["count"], 0)
        r = await self.get("", v)
        self.assertEqual((r.code, r.json), (200, {"rooms": {}}))
        r = await self.request("GET", f"{V}/{v}", access_token=self.tok)
        self.assertEqual(r.json["count"], 0)

    async def test_absent_keys(self) -> None:
        v = await self.new_version()
        r = await self.get(f"/{ROOM}/nope", v)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get(f"/{ROOM}", v)
        self.assertEqual((r.code, r.json), (200, {"sessions": {}}))
        r = await self.get("", v)
        self.assertEqual((r.code, r.json), (200, {"rooms": {}}))
        r = await self.request("DELETE", f"{K}/{ROOM}/nope?version={v}", access_token=self.tok)
        self.assertEqual((r.code, r.json["count"]), (200, 0))

    async def test_version_param_required(self) -> None:
        await self.new_version()
        for method in ("GET", "PUT", "DELETE"):
            for path in ("", f"/{ROOM}", f"/{ROOM}/s1"):
                body = key() if path.endswith("s1") else {"sessions": {}} if path else {"rooms": {}}
                r = await self.request(method, f"{K}{path}", body if method == "PUT" else None,
                                       access_token=self.tok)
                self.assertMatrixError(r, 400, "M_MISSING_PARAM")

    async def test_wrong_version(self) -> None:
        # No backup at all: 404.
        r = await self.put(f"/{ROOM}/s1", key(), "1")
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        v1 = await self.new_version()
        v2 = await self.new_version()
        for path, body in (
            (f"/{ROOM}/s1", key()), (f"/{ROOM}", {"sessions": {"s1": key()}}),
            ("", {"rooms": {ROOM: {"sessions": {"s1": key()}}}}),
        ):
            for version in (v1, "99", "junk"):
                r = await self.put(path, body, version)
                self.assertMatrixError(r, 403, "M_WRONG_ROOM_KEYS_VERSION")
                self.assertEqual(r.json["current_version"], v2)
        # The old version stays readable and deletable.
        r = await self.get("", v1)
        self.assertEqual((r.code, r.json), (200, {"rooms": {}}))
        r = await self.request("DELETE", f"{K}?version={v1}", access_token=self.tok)
        self.assertEqual(r.code, 200)
        # Once v2 is deleted, v1 is current again.
        await self.request("DELETE", f"{V}/{v2}", access_token=self.tok)
        r = await self.put(f"/{ROOM}/s1", key(), v2)
        self.assertMatrixError(r, 403, "M_WRONG_ROOM_KEYS_VERSION")
        self.assertEqual(r.json["current_version"], v1)
        r = await self.put(f"/{ROOM}/s1", key(), v1)
        self.assertEqual(r.code, 200)
        for method in ("GET", "DELETE"):
            r = await self.request(method, f"{K}?version={v2}", access_token=self.tok)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_delete_version_deletes_keys(self) -> None:
        v1 = await self.new_version()
        await self.put("", {"rooms": {ROOM: {"sessions": {"s1": key(), "s2": key()}}}}, v1)
        await self.request("DELETE", f"{V}/{v1}", access_token=self.tok)
        self.assertEqual(await self.hs.key_backup.store.get_sessions("@alice:test", int(v1)), [])
        v2 = await self.new_version()
        r = await self.get("", v2)
        self.assertEqual(r.json, {"rooms": {}})
        r = await self.request("GET", V, access_token=self.tok)
        self.assertEqual(r.json["count"], 0)

    async def test_body_validation(self) -> None:
        v = await self.new_version()
        good = key()
        for field, bad in (
            ("first_message_index", "1"), ("first_message_index", 1.5), ("first_message_index", True),
            ("forwarded_count", "0"), ("forwarded_count", [0]), ("is_verified", 1),
            ("is_verified", "true"), ("session_data", "opaque"), ("session_data", [1]),
        ):
            body = dict(good, **{field: bad})
            r = await self.put(f"/{ROOM}/s1", body, v)
            self.assertMatrixError(r, 400, "M_BAD_JSON")
            r = await self.put(f"/{ROOM}", {"sessions": {"s1": body}}, v)
            self.assertMatrixError(r, 400, "M_BAD_JSON")
            r = await self.put("", {"rooms": {ROOM: {"sessions": {"ok": good, "s1": body}}}}, v)
            self.assertMatrixError(r, 400, "M_BAD_JSON")
        for field in good:
            body = {k: val for k, val in good.items() if k != field}
            r = await self.put(f"/{ROOM}/s1", body, v)
            self.assertMatrixError(r, 400, "M_MISSING_PARAM")
        for body in (dict(good, first_message_index=-1), dict(good, forwarded_count=-2)):
            r = await self.put(f"/{ROOM}/s1", body, v)
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        for path, body, errcode in (
            (f"/{ROOM}", {}, "M_MISSING_PARAM"),
            (f"/{ROOM}", {"sessions": []}, "M_BAD_JSON"),
            (f"/{ROOM}", {"sessions": {"s1": "x"}}, "M_BAD_JSON"),
            ("", {}, "M_MISSING_PARAM"),
            ("", {"rooms": [1]}, "M_BAD_JSON"),
            ("", {"rooms": {ROOM: []}}, "M_BAD_JSON"),
            ("", {"rooms": {ROOM: {}}}, "M_MISSING_PARAM"),
            ("", {"rooms": {"not-a-room": {"sessions": {}}}}, "M_INVALID_PARAM"),
            ("/not-a-room/s1", good, "M_INVALID_PARAM"),
            (f"/{ROOM}/s1", [good], "M_BAD_JSON"),
        ):
            r = await self.put(path, body, v)
            self.assertMatrixError(r, 400, errcode)
        # Nothing of the refused bodies was stored, even the valid parts.
        r = await self.get("", v)
        self.assertEqual(r.json, {"rooms": {}})

    async def test_long_ids(self) -> None:
        """Room and session IDs of any length are stored (keys hold their hashes)."""
        v = await self.new_version()
        room = "!" + "r" * 600 + ":test"
        session = "s" * 2000
        r = await self.put(f"/{room}/{session}", key(tag="long"), v)
        self.assertEqual(r.code, 200, r.body)
        r = await self.get("", v)
        self.assertEqual(r.json, {"rooms": {room: {"sessions": {session: key(tag="long")}}}})

    async def test_ids_with_reserved_characters(self) -> None:
        v = await self.new_version()
        session = "a/b+c=d"
        r = await self.put(f"/{ROOM}/a%2Fb%2Bc%3Dd", key(tag="enc"), v)
        self.assertEqual(r.code, 200, r.body)
        r = await self.get(f"/{ROOM}", v)
        self.assertEqual(list(r.json["sessions"]), [session])

    async def test_isolation_between_users(self) -> None:
        bob = (await self.register("bob"))["access_token"]
        va = await self.new_version({"public_key": "alice"})
        await self.put(f"/{ROOM}/s1", key(tag="alice's"), va)
        # Bob has no backup, whatever version he names.
        r = await self.request("GET", V, access_token=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", f"{V}/{va}", access_token=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.get(f"/{ROOM}/s1", va, tok=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("DELETE", f"{V}/{va}", access_token=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("PUT", f"{V}/{va}", {"algorithm": ALG, "auth_data": {}}, access_token=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        # His own version 1 is his, with its own keys.
        vb = await self.new_version({"public_key": "bob"}, tok=bob)
        self.assertEqual(vb, va, "versions are numbered per user")
        r = await self.get("", vb, tok=bob)
        self.assertEqual(r.json, {"rooms": {}})
        await self.put(f"/{ROOM}/s1", key(tag="bob's"), vb, tok=bob)
        r = await self.request("DELETE", f"{K}?version={vb}", access_token=bob)
        self.assertEqual(r.json["count"], 0)
        self.assertEqual(await self.stored(va), key(tag="alice's"))
        r = await self.request("GET", V, access_token=self.tok)
        self.assertEqual((r.json["auth_data"], r.json["count"]), ({"public_key": "alice"}, 1))

    async def test_deactivation_deletes_backups(self) -> None:
        v = await self.new_version()
        await self.put(f"/{ROOM}/s1", key(), v)
        r = await self.request(
            "POST", "/_matrix/client/v3/account/deactivate",
            {"auth": self.password_auth("@alice:test")}, access_token=self.tok,
        )
        self.assertEqual(r.code, 200, r.body)
        store = self.hs.key_backup.store
        self.assertIsNone(await store.latest_version("@alice:test"))
        self.assertFalse(await store.was_deleted("@alice:test", int(v)))
        self.assertEqual(await store.get_sessions("@alice:test", int(v)), [])


class GuestTests(KeyBackupTestCase):
    """Guests have no key backup."""

    config_overrides = {**OPEN, "allow_guest_registration": True}

    async def test_guests_refused(self) -> None:
        """Key backup is not among the endpoints guests may use (module "Guest Access")."""
        r = await self.request("POST", "/_matrix/client/v3/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("POST", V, {"algorithm": ALG, "auth_data": {}}, access_token=r.json["access_token"])
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")


class ReplacementTests(KeyBackupTestCase):
    """The spec's rules for a key uploaded for a session already stored, and etag/count."""

    async def _replace(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        v = await self.new_version()
        await self.put(f"/{ROOM}/s1", dict(old, session_data={"tag": "old"}), v)
        await self.put(f"/{ROOM}/s1", dict(new, session_data={"tag": "new"}), v)
        return (await self.stored(v))["session_data"] == {"tag": "new"}

    async def test_rules(self) -> None:
        cases = [
            # is_verified first, whatever the other fields say
            (key(5, 5, False), key(9, 9, True), True),
            (key(0, 0, True), key(0, 0, False), False),
            # then the lower first_message_index
            (key(5, 0), key(3, 9), True),
            (key(3, 0), key(5, 0), False),
            (key(3, 0, True), key(2, 7, True), True),
            # then the lower forwarded_count
            (key(3, 2), key(3, 1), True),
            (key(3, 1), key(3, 2), False),
            # a full tie keeps the stored key
            (key(3, 1, True), key(3, 1, True), False),
        ]
        for old, new, replaced in cases:
            self.assertEqual(await self._replace(old, new), replaced, (old, new))
            self.assertEqual(keeps_existing(old, new), not replaced)

    async def test_etag_and_count(self) -> None:
        v = await self.new_version()
        info = (await self.request("GET", V, access_token=self.tok)).json
        etags = {info["etag"]}
        r = await self.put(f"/{ROOM}/s1", key(5), v)
        self.assertEqual(r.json["count"], 1)
        self.assertNotIn(r.json["etag"], etags)
        etags.add(r.json["etag"])
        # A key the rules refuse changes nothing: same etag, same count.
        r = await self.put(f"/{ROOM}/s1", key(9), v)
        self.assertEqual((r.json["count"], r.json["etag"]), (1, max(etags, key=int)))
        # A better key replaces: new etag, same count.
        r = await self.put(f"/{ROOM}/s1", key(1), v)
        self.assertEqual(r.json["count"], 1)
        self.assertNotIn(r.json["etag"], etags)
        etags.add(r.json["etag"])
        # GET version reports what the last update returned.
        info = (await self.request("GET", f"{V}/{v}", access_token=self.tok)).json
        self.assertEqual((info["etag"], info["count"]), (r.json["etag"], 1))
        # Deleting nothing changes nothing; deleting something changes the etag.
        r = await self.request("DELETE", f"{K}/{ROOM}/absent?version={v}", access_token=self.tok)
        self.assertEqual((r.json["count"], r.json["etag"]), (1, info["etag"]))
        r = await self.request("DELETE", f"{K}/{ROOM}/s1?version={v}", access_token=self.tok)
        self.assertEqual(r.json["count"], 0)
        self.assertNotIn(r.json["etag"], etags)
        etags.add(r.json["etag"])
        # Putting the same key back gives yet another etag.
        r = await self.put(f"/{ROOM}/s1", key(5), v)
        self.assertNotIn(r.json["etag"], etags)

    async def test_large_put_one_batch(self) -> None:
        """Many sessions in one PUT: stored together, counted once each."""
        v = await self.new_version()
        rooms = {
            f"!r{i}:test": {"sessions": {f"s{j}": key(j, tag=f"{i}-{j}") for j in range(50)}}
            for i in range(20)
        }
        writes = []
        real_write = self.hs.db.write
        self.patch(self.hs.db, "write", lambda batch: (writes.append(len(batch)), real_write(batch))[1])
        r = await self.put("", {"rooms": rooms}, v)
        self.assertEqual((r.code, r.json["count"]), (200, 1000))
        self.assertEqual(writes, [1001], "1000 sessions and the version record, one batch")
        r = await self.get("", v)
        self.assertEqual(r.json, {"rooms": rooms})
        # Re-uploading half of them better and half worse: only the better ones change.
        for i in range(20):
            for j in range(50):
                rooms[f"!r{i}:test"]["sessions"][f"s{j}"] = key(j - 1 if j % 2 else j + 1, tag="again")
        rooms["!r0:test"]["sessions"]["s0"] = key(0, tag="again")  # tie: kept
        writes.clear()
        r = await self.put("", {"rooms": rooms}, v)
        self.assertEqual(r.json["count"], 1000)
        self.assertEqual(writes, [501])
        got = (await self.get("/!r3:test", v)).json["sessions"]
        self.assertEqual(got["s1"]["session_data"]["ciphertext"], "again")
        self.assertEqual(got["s2"]["session_data"]["ciphertext"], "3-2")


class ConcurrencyTests(KeyBackupTestCase):
    """Changes of one user's backups are serialised: counts and versions stay right."""

    def slow_reads(self) -> None:
        """Make the store's reads take a reactor turn, as a network backend's would."""
        store = self.hs.key_backup.store
        for name in ("get_many", "latest_version", "create_version"):
            real = getattr(store, name)

            async def slow(*args: Any, _real: Any = real) -> Any:
                await deferLater(reactor, 0, lambda: None)
                return await _real(*args)

            self.patch(store, name, slow)

    async def test_concurrent_puts_and_creates(self) -> None:
        v = await self.new_version()
        self.slow_reads()
        puts = [
            self.request("PUT", f"{K}/{ROOM}/s{i}?version={v}", key(), access_token=self.tok)
            for i in range(10)
        ]
        answers = await gatherResults(puts)
        self.assertEqual([r.code for r in answers], [200] * 10)
        self.assertEqual(sorted(r.json["count"] for r in answers), list(range(1, 11)))
        self.assertEqual(len({r.json["etag"] for r in answers}), 10)
        creates = [
            self.request("POST", V, {"algorithm": ALG, "auth_data": {}}, access_token=self.tok)
            for _ in range(5)
        ]
        versions = [r.json["version"] for r in await gatherResults(creates)]
        self.assertEqual(len(set(versions) | {v}), 6)


class LMDBKeyTests(KeyTests):
    """The same on the LMDB backend."""

    backend = "lmdb"


class LMDBReplacementTests(ReplacementTests):
    """The same on the LMDB backend."""

    backend = "lmdb"


class MegolmBackupRoundTrip(KeyBackupTestCase):
    """
    A client's whole backup flow with real C{m.megolm_backup.v1.curve25519-aes-sha2}
    data: one device creates the backup and uploads encrypted session keys;
    a new device finds the backup, downloads the keys and decrypts them
    with the backup's private key.
    """

    async def test_round_trip(self) -> None:
        backup_key = BackupKey()
        auth_data = {
            "public_key": backup_key.public_b64,
            "signatures": {"@alice:test": {"ed25519:DEV1": "sig"}},
        }
        version = await self.new_version(auth_data)
        sessions = {
            (room, session_id): megolm_session()
            for room, session_id in (("!a:test", "SESSA1"), ("!a:test", "SESSA2"), ("!b:test", "SESSB1"))
        }
        r = await self.put("", backup_upload(backup_key.public_b64, sessions), version)
        self.assertEqual((r.code, r.json["count"]), (200, 3))

        # A new device of Alice's: discovers the backup, trusts its key, restores.
        second = (await self.login("alice")).json["access_token"]
        info = (await self.request("GET", V, access_token=second)).json
        self.assertEqual(
            (info["version"], info["algorithm"], info["auth_data"]["public_key"], info["count"]),
            (version, ALG, backup_key.public_b64, 3),
        )
        got = (await self.get("", info["version"], tok=second)).json
        self.assertEqual(restore(backup_key, got), sessions)
        one = (await self.get("/!b:test/SESSB1", version, tok=second)).json
        self.assertEqual(backup_key.decrypt(one["session_data"]), sessions[("!b:test", "SESSB1")])


class ParseVersionTests(unittest.SynchronousTestCase):
    """Version ids are the decimal numbers the server gave out, nothing else."""

    def test_parse_version(self) -> None:
        self.assertEqual(parse_version("1"), 1)
        self.assertEqual(parse_version(str(2**64 - 1)), 2**64 - 1)
        for bad in ("", "0", "01", "+1", "-1", " 1", "1.0", "\u0661", str(2**64), "abc"):
            self.assertIsNone(parse_version(bad), bad)
