"""GET /voip/turnServer and conduwuit's call protections (handlers/voip.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from tests.api.accounts import OPEN
from tests.api.rooms import V3, RoomsTestCase

TURN = V3 + "/voip/turnServer"
URIS = ["turn:turn.example.org?transport=udp", "turns:turn.example.org:443?transport=tcp"]


class TurnSecretTests(RoomsTestCase):
    """Time-limited credentials from turn_secret."""

    config_overrides = {
        **OPEN, "turn_uris": URIS, "turn_secret": "s3cret", "turn_ttl": 600,
        "allow_guest_registration": True,
    }

    async def test_needs_auth(self) -> None:
        self.assertMatrixError(await self.request("GET", TURN), 401, "M_MISSING_TOKEN")

    async def test_hmac_credentials(self) -> None:
        user_id, token = await self.user("alice")
        r = await self.request("GET", TURN, access_token=token)
        self.assertEqual(r.code, 200, r.body)
        body = r.json
        self.assertEqual(body["uris"], URIS)
        self.assertEqual(body["ttl"], 600)
        expiry, _, who = body["username"].partition(":")
        self.assertEqual(who, user_id)
        self.assertEqual(int(expiry), int(self.clock.now) + 600)
        expected = base64.b64encode(
            hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
        ).decode()
        self.assertEqual(body["password"], expected)

    async def test_guests_refused(self) -> None:
        r = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", TURN, access_token=r.json["access_token"])
        self.assertMatrixError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")


class TurnStaticTests(RoomsTestCase):
    """turn_username / turn_password; guests allowed."""

    config_overrides = {
        **OPEN, "turn_uris": URIS, "turn_username": "u", "turn_password": "p",
        "turn_allow_guests": True, "allow_guest_registration": True,
    }

    async def test_static_credentials_for_guest(self) -> None:
        r = await self.request("POST", V3 + "/register?kind=guest", {})
        self.assertEqual(r.code, 200, r.body)
        r = await self.request("GET", TURN, access_token=r.json["access_token"])
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json, {"username": "u", "password": "p", "uris": URIS, "ttl": 86400})


class NoTurnTests(RoomsTestCase):
    """Without TURN configured: 404, and the call protections."""

    async def test_not_configured(self) -> None:
        _, token = await self.user("alice")
        r = await self.request("GET", TURN, access_token=token)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_call_invite_refused_in_published_room(self) -> None:
        _, token = await self.user("alice")
        public = await self.create_room(token, visibility="public")
        private = await self.create_room(token)
        invite = {"call_id": "c", "lifetime": 60000, "version": "1", "party_id": "p",
                  "offer": {"type": "offer", "sdp": "v=0"}}
        r = await self.send(token, public, invite, event_type="m.call.invite")
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        r = await self.send(token, private, invite, event_type="m.call.invite")
        self.assertEqual(r.code, 200, r.body)

    async def test_public_room_call_events_need_moderator(self) -> None:
        _, token = await self.user("alice")
        bob, bob_token = await self.user("bob")
        public = await self.create_room(token, visibility="public")
        r = await self.get_state(token, public, "m.room.power_levels")
        events = r.json["events"]
        for t in ("m.call.invite", "org.matrix.msc3401.call", "org.matrix.msc3401.call.member"):
            self.assertEqual(events[t], 50)
        await self.join(bob_token, public)
        r = await self.put_state(bob_token, public, "org.matrix.msc3401.call.member", {}, bob)
        self.assertMatrixError(r, 403, "M_FORBIDDEN")
        private = await self.create_room(token, preset="public_chat")
        r = await self.get_state(token, private, "m.room.power_levels")
        self.assertNotIn("m.call.invite", r.json["events"])
