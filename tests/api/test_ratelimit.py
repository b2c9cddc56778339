"""Token-bucket rate limiting of registration, login, messages and every repeatable write; size caps on stored user JSON."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.errors import MatrixError
from conduit_tw.handlers.auth import Requester
from conduit_tw.handlers.ratelimit import RateLimiter
from tests.api.accounts import OPEN, AccountsTestCase
from tests.api.rooms import V3, RoomsTestCase, q
from tests.server import Response


class BucketTests(SynchronousTestCase):
    """L{RateLimiter} on its own."""

    def setUp(self) -> None:
        self.now = 1_000_000
        self.limiter = RateLimiter(0.5, 2, lambda: self.now)

    def test_burst_then_refill(self) -> None:
        self.limiter.check("k")
        self.limiter.check("k")
        e = self.assertRaises(MatrixError, self.limiter.check, "k")
        self.assertEqual((e.code, e.errcode), (429, "M_LIMIT_EXCEEDED"))
        self.assertEqual(e.extra["retry_after_ms"], 2000)
        self.assertEqual(e.headers["Retry-After"], "2")
        self.limiter.check("other")
        self.now += 1000
        e = self.assertRaises(MatrixError, self.limiter.check, "k")
        self.assertEqual(e.extra["retry_after_ms"], 1000)
        self.now += 1000
        self.limiter.check("k")

    def test_refill_caps_at_burst(self) -> None:
        self.limiter.check("k")
        self.now += 3_600_000
        self.limiter.check("k")
        self.limiter.check("k")
        self.assertRaises(MatrixError, self.limiter.check, "k")

    def test_peek_and_take(self) -> None:
        for _ in range(5):
            self.limiter.check("k", update=False)
        self.limiter.take("k")
        self.limiter.take("k")
        self.limiter.take("k")
        self.assertRaises(MatrixError, self.limiter.check, "k", update=False)

    def test_disabled(self) -> None:
        limiter = RateLimiter(0, 1, lambda: self.now)
        for _ in range(100):
            limiter.check("k")


class LoginLimitTests(AccountsTestCase):
    """rc_login_*: per client IP."""

    config_overrides = {**OPEN, "rc_login_per_second": 0.1, "rc_login_burst_count": 3}

    async def test_login_limited_per_ip(self) -> None:
        await self.register("alice")
        await self.register("bob")
        for _ in range(3):
            r = await self.login("bob")
            self.assertEqual(r.code, 200)
        r = await self.login()
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertEqual(r.json["retry_after_ms"], 10000)
        self.assertEqual(r.header("retry-after"), "10")
        r = await self.request(
            "POST", "/_matrix/client/v3/login",
            {"type": "m.login.password", "user": "alice", "password": "secret pw"},
            client_ip="10.9.9.9",
        )
        self.assertEqual(r.code, 200)
        self.clock.advance(10)
        self.assertEqual((await self.login()).code, 200)

    async def test_failed_logins_limited_per_account(self) -> None:
        await self.register("alice")
        await self.register("bob")
        for i in range(3):
            r = await self.request(
                "POST", "/_matrix/client/v3/login",
                {"type": "m.login.password", "user": "alice", "password": "wrong"},
                client_ip=f"10.0.0.{i}",
            )
            self.assertMatrixError(r, 403, "M_FORBIDDEN")
        # From yet another address: this account is locked for a while ...
        r = await self.login(client_ip="10.0.0.99")
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        # ... but not other accounts.
        r = await self.login("bob", client_ip="10.0.0.99")
        self.assertEqual(r.code, 200)
        self.clock.advance(10)
        r = await self.login(client_ip="10.0.0.98")
        self.assertEqual(r.code, 200)


class RegistrationLimitTests(AccountsTestCase):
    """rc_registration_*: per IP, counting created accounts only."""

    config_overrides = {**OPEN, "rc_registration_per_second": 0.01, "rc_registration_burst_count": 2}

    async def test_registration_limited(self) -> None:
        # UIA round trips do not use up the allowance.
        for _ in range(5):
            r = await self.request("POST", "/_matrix/client/v3/register", {"username": "x"})
            self.assertEqual(r.code, 401)
        await self.register("a1")
        await self.register("a2")
        r = await self.request(
            "POST", "/_matrix/client/v3/register", {"username": "a3", "auth": {"type": "m.login.dummy"}}
        )
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertIn("retry_after_ms", r.json)
        self.assertFalse(await self.hs.users.exists("@a3:test"))

    async def test_checks_limited(self) -> None:
        for _ in range(2):
            r = await self.request("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
            self.assertEqual(r.code, 200)
        r = await self.request("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")


class RequesterLimitTests(AccountsTestCase):
    """check_requester: per user, admins and appservices exempt."""

    config_overrides = {**OPEN, "rc_message_per_second": 0.01, "rc_message_burst_count": 1}

    async def test_exemptions(self) -> None:
        await self.register("admin")  # first user: admin
        await self.register("bob")
        limits = self.hs.ratelimit
        admin = Requester("@admin:test", "D")
        bob = Requester("@bob:test", "D")
        # Appservices registered with rate_limited: false are exempt.
        await self.hs.appservices.register(
            "id: irc\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: bridge\n"
            "namespaces: {}\nrate_limited: false\n"
        )
        appservice = Requester("@bridge:test", None, appservice_id="irc")
        for _ in range(5):
            await limits.check_requester(limits.message, admin)
            await limits.check_requester(limits.message, appservice)
        await limits.check_requester(limits.message, bob)
        with self.assertRaises(MatrixError) as cm:
            await limits.check_requester(limits.message, bob)
        self.assertEqual(cm.exception.code, 429)


#: The per-user limiters of repeatable writes (config key stem -> attribute).
WRITE_LIMITERS = (
    "joins", "invites", "profile", "account_data", "room_aliases", "directory", "pushers", "keys",
)
BURST = 2


class WriteLimitTests(RoomsTestCase):
    """
    Every repeatable write: C{BURST} requests pass, the next one gets 429
    C{M_LIMIT_EXCEEDED} with C{retry_after_ms} and C{Retry-After}; the
    bucket refills with time, and other users have their own.
    """

    config_overrides = {
        **OPEN,
        **{f"rc_{k}_per_second": 0.01 for k in WRITE_LIMITERS},
        **{f"rc_{k}_burst_count": BURST for k in WRITE_LIMITERS},
    }

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        # The first user is an admin (exempt); it owns the shared rooms.
        self.admin, self.admin_tok = await self.user("admin")
        self.room = await self.create_room(self.admin_tok, preset="public_chat")
        self._n = 0

    async def fresh(self) -> tuple[str, str]:
        """A new ordinary user (a full bucket)."""
        self._n += 1
        return await self.user(f"u{self._n}")

    async def assert_limited(
        self, make: Callable[[str, int], Awaitable[Response]], setup_tok: str | None = None
    ) -> None:
        """C{make(token, i)} passes C{BURST} times, then is refused."""
        uid, tok = await self.fresh()
        if setup_tok is not None:
            tok = setup_tok
        for i in range(BURST):
            r = await make(tok, i)
            self.assertEqual(r.code, 200, r.body)
        r = await make(tok, BURST)
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertEqual(r.json["retry_after_ms"], 100_000)
        self.assertEqual(r.header("retry-after"), "100")
        # Another user is not affected.
        _, other = await self.fresh()
        r = await make(other, BURST + 1)
        self.assertNotEqual(r.code, 429, r.body)
        self.clock.advance(100)
        r = await make(tok, BURST + 2)
        self.assertEqual(r.code, 200, r.body)

    def put(self, path: str, body: Any, tok: str) -> Awaitable[Response]:
        return self.request("PUT", V3 + path, body, access_token=tok)

    def post(self, path: str, body: Any, tok: str) -> Awaitable[Response]:
        return self.request("POST", V3 + path, body, access_token=tok)

    async def test_joins(self) -> None:
        rooms = [await self.create_room(self.admin_tok, preset="public_chat") for _ in range(5)]
        await self.assert_limited(lambda tok, i: self.post(f"/join/{q(rooms[i])}", {}, tok))
        await self.assert_limited(lambda tok, i: self.post(f"/rooms/{q(rooms[i])}/join", {}, tok))

    async def test_knock_shares_join_limit(self) -> None:
        uid, tok = await self.fresh()
        for i in range(BURST):
            room = await self.create_room(self.admin_tok, preset="public_chat")
            self.assertEqual((await self.post(f"/join/{q(room)}", {}, tok)).code, 200)
        room = await self.create_room(self.admin_tok, room_version="10")
        r = await self.post(f"/knock/{q(room)}", {}, tok)
        self.assertMatrixError(r, 429, "M_LIMIT_EXCEEDED")
        # With tokens left a knock goes through (and takes one).
        _, tok2 = await self.fresh()
        state = {"join_rule": "knock"}
        await self.put_state(self.admin_tok, room, "m.room.join_rules", state)
        self.assertEqual((await self.post(f"/knock/{q(room)}", {}, tok2)).code, 200)

    async def test_invites(self) -> None:
        invitees = [(await self.fresh())[0] for _ in range(6)]
        uid, tok = await self.fresh()
        room = await self.create_room(tok)
        await self.assert_limited(
            lambda t, i: self.post(f"/rooms/{q(room)}/invite", {"user_id": invitees[i]}, t),
            setup_tok=tok,
        )

    async def test_profile(self) -> None:
        async def make(tok: str, i: int) -> Response:
            uid = (await self.request("GET", V3 + "/account/whoami", access_token=tok)).json["user_id"]
            if i % 2:
                return await self.request("DELETE", f"{V3}/profile/{q(uid)}/avatar_url", access_token=tok)
            return await self.put(f"/profile/{q(uid)}/displayname", {"displayname": f"N{i}"}, tok)

        await self.assert_limited(make)

    async def whoami(self, tok: str) -> str:
        return (await self.request("GET", V3 + "/account/whoami", access_token=tok)).json["user_id"]

    async def test_account_data(self) -> None:
        async def global_(tok: str, i: int) -> Response:
            return await self.put(f"/user/{q(await self.whoami(tok))}/account_data/x.y", {"i": i}, tok)

        async def room(tok: str, i: int) -> Response:
            uid = await self.whoami(tok)
            return await self.put(f"/user/{q(uid)}/rooms/{q(self.room)}/account_data/x.y", {"i": i}, tok)

        await self.assert_limited(global_)
        await self.assert_limited(room)

    async def test_tags(self) -> None:
        async def put_tag(tok: str, i: int) -> Response:
            uid = await self.whoami(tok)
            return await self.put(f"/user/{q(uid)}/rooms/{q(self.room)}/tags/t{i}", {}, tok)

        async def delete_tag(tok: str, i: int) -> Response:
            uid = await self.whoami(tok)
            return await self.request(
                "DELETE", f"{V3}/user/{q(uid)}/rooms/{q(self.room)}/tags/t{i}", access_token=tok
            )

        await self.assert_limited(put_tag)
        await self.assert_limited(delete_tag)

    async def test_push_rules(self) -> None:
        rule = "/pushrules/global/override/r"

        async def put(tok: str, i: int) -> Response:
            return await self.put(f"{rule}{i}", {"actions": ["notify"], "conditions": []}, tok)

        async def enable(tok: str, i: int) -> Response:
            return await self.put("/pushrules/global/override/.m.rule.master/enabled", {"enabled": bool(i % 2)}, tok)

        await self.assert_limited(put)
        await self.assert_limited(enable)
        uid, tok = await self.fresh()
        for i in range(5):
            self.clock.advance(100)
            self.assertEqual((await put(tok, i)).code, 200)
        self.clock.advance(200)
        await self.assert_limited(
            lambda t, i: self.request("DELETE", f"{V3}{rule}{i}", access_token=t), setup_tok=tok
        )

    async def test_filters(self) -> None:
        async def make(tok: str, i: int) -> Response:
            return await self.post(f"/user/{q(await self.whoami(tok))}/filter", {"room": {"timeline": {"limit": i + 1}}}, tok)

        await self.assert_limited(make)

    async def test_read_markers(self) -> None:
        uid, tok = await self.fresh()
        room = await self.create_room(tok)
        event_id = await self.send_ok(tok, room)
        await self.assert_limited(
            lambda t, i: self.post(f"/rooms/{q(room)}/read_markers", {"m.fully_read": event_id}, t),
            setup_tok=tok,
        )

    async def test_aliases(self) -> None:
        uid, tok = await self.fresh()
        room = await self.create_room(tok)
        await self.assert_limited(
            lambda t, i: self.put(f"/directory/room/{q(f'#a{i}:test')}", {"room_id": room}, t),
            setup_tok=tok,
        )
        uid, tok = await self.fresh()
        room = await self.create_room(tok)
        for i in range(5):
            self.clock.advance(100)
            r = await self.put(f"/directory/room/{q(f'#d{i}:test')}", {"room_id": room}, tok)
            self.assertEqual(r.code, 200, r.body)
        self.clock.advance(200)
        await self.assert_limited(
            lambda t, i: self.request("DELETE", f"{V3}/directory/room/{q(f'#d{i}:test')}", access_token=t),
            setup_tok=tok,
        )

    async def test_directory_visibility(self) -> None:
        uid, tok = await self.fresh()
        room = await self.create_room(tok)
        await self.assert_limited(
            lambda t, i: self.put(
                f"/directory/list/room/{q(room)}", {"visibility": ("public", "private")[i % 2]}, t
            ),
            setup_tok=tok,
        )

    async def test_pushers(self) -> None:
        await self.assert_limited(
            lambda t, i: self.post(
                "/pushers/set", {"kind": None, "app_id": "a", "pushkey": f"k{i}"}, t
            )
        )

    async def test_device_updates(self) -> None:
        async def make(tok: str, i: int) -> Response:
            r = await self.request("GET", V3 + "/account/whoami", access_token=tok)
            return await self.put(f"/devices/{q(r.json['device_id'])}", {"display_name": f"d{i}"}, tok)

        await self.assert_limited(make)

    async def test_admin_exempt(self) -> None:
        for i in range(BURST + 3):
            r = await self.put(
                f"/user/{q(self.admin)}/account_data/x.y", {"i": i}, self.admin_tok
            )
            self.assertEqual(r.code, 200, r.body)


class WriteLimitsDisabledTests(WriteLimitTests):
    """C{rc_*_per_second = 0} turns each limiter off."""

    config_overrides = {
        **OPEN,
        **{f"rc_{k}_per_second": 0 for k in WRITE_LIMITERS},
        **{f"rc_{k}_burst_count": 1 for k in WRITE_LIMITERS},
    }

    async def assert_limited(
        self, make: Callable[[str, int], Awaitable[Response]], setup_tok: str | None = None
    ) -> None:
        """With the limit off, C{BURST + 3} requests in a row all pass."""
        uid, tok = await self.fresh()
        if setup_tok is not None:
            tok = setup_tok
        for i in range(BURST + 3):
            r = await make(tok, i)
            self.assertEqual(r.code, 200, r.body)

    async def test_limiters_disabled(self) -> None:
        limits = self.hs.ratelimit
        for name in WRITE_LIMITERS:
            self.assertFalse(getattr(limits, name).enabled, name)

    async def test_knock_shares_join_limit(self) -> None:
        """Knocks after many joins still go through."""
        uid, tok = await self.fresh()
        for i in range(BURST + 3):
            room = await self.create_room(self.admin_tok, preset="public_chat")
            self.assertEqual((await self.post(f"/join/{q(room)}", {}, tok)).code, 200)
        room = await self.create_room(self.admin_tok, room_version="10")
        await self.put_state(self.admin_tok, room, "m.room.join_rules", {"join_rule": "knock"})
        self.assertEqual((await self.post(f"/knock/{q(room)}", {}, tok)).code, 200)


class SizeCapTests(RoomsTestCase):
    """Stored user JSON above C{max_account_data_size}: 413 C{M_TOO_LARGE}."""

    config_overrides = {**OPEN, "max_account_data_size": 1024}

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.uid, self.tok = await self.user("alice")
        self.room = await self.create_room(self.tok)

    async def test_account_data(self) -> None:
        for path in (
            f"/user/{q(self.uid)}/account_data/x.y",
            f"/user/{q(self.uid)}/rooms/{q(self.room)}/account_data/x.y",
        ):
            r = await self.request("PUT", V3 + path, {"v": "x" * 2000}, access_token=self.tok)
            self.assertMatrixError(r, 413, "M_TOO_LARGE")
            r = await self.request("GET", V3 + path, access_token=self.tok)
            self.assertEqual(r.code, 404)
            r = await self.request("PUT", V3 + path, {"v": "x" * 900}, access_token=self.tok)
            self.assertEqual(r.code, 200, r.body)

    async def test_push_rule_set(self) -> None:
        """The user's whole rule set is capped, so many small rules cannot add up."""
        base = f"{V3}/pushrules/global/content/"
        codes = []
        for i in range(8):
            r = await self.request(
                "PUT", base + f"rule{i}", {"pattern": "p" * 200, "actions": ["notify"]},
                access_token=self.tok,
            )
            codes.append(r.code)
            if r.code != 200:
                self.assertMatrixError(r, 413, "M_TOO_LARGE")
        self.assertIn(413, codes)
        self.assertEqual(codes[0], 200)
        refused = codes.index(413)
        r = await self.request("GET", base + f"rule{refused}", access_token=self.tok)
        self.assertEqual(r.code, 404)

    async def test_multibyte_counts_bytes(self) -> None:
        path = f"{V3}/user/{q(self.uid)}/account_data/x.y"
        r = await self.request("PUT", path, {"v": "\u00e9" * 600}, access_token=self.tok)
        self.assertMatrixError(r, 413, "M_TOO_LARGE")

    async def test_tag_set(self) -> None:
        base = f"{V3}/user/{q(self.uid)}/rooms/{q(self.room)}/tags"
        for i in range(3):
            r = await self.request("PUT", f"{base}/{'t%d' % i + 'x' * 250}", {}, access_token=self.tok)
            self.assertEqual(r.code, 200, r.body)
        # The fourth tag makes the set too large, though the request is small.
        r = await self.request("PUT", f"{base}/{'t3' + 'x' * 250}", {}, access_token=self.tok)
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
        r = await self.request("GET", base, access_token=self.tok)
        self.assertEqual(len(r.json["tags"]), 3)

    async def test_filter(self) -> None:
        body = {"event_fields": ["content.f%d" % i for i in range(200)]}
        r = await self.request("POST", f"{V3}/user/{q(self.uid)}/filter", body, access_token=self.tok)
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
        body = {"event_fields": ["content.f%d" % i for i in range(20)]}
        r = await self.request("POST", f"{V3}/user/{q(self.uid)}/filter", body, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)

    async def test_pusher(self) -> None:
        body = {
            "kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A",
            "device_display_name": "D", "lang": "en",
            "data": {"url": "https://push.example.com/_matrix/push/v1/notify", "x": "y" * 2000},
        }
        r = await self.request("POST", V3 + "/pushers/set", body, access_token=self.tok)
        self.assertMatrixError(r, 413, "M_TOO_LARGE")
        r = await self.request("GET", V3 + "/pushers", access_token=self.tok)
        self.assertEqual(r.json["pushers"], [])
        body["data"]["x"] = "y"
        r = await self.request("POST", V3 + "/pushers/set", body, access_token=self.tok)
        self.assertEqual(r.code, 200, r.body)
