"""Room server ACLs (federation/server_acl.py) and their use on /send."""

from __future__ import annotations

from twisted.trial import unittest

from conduit_tw.federation.server_acl import server_allowed
from tests.federation.test_transactions import BOB, FederationTestCase, receipt_edu, typing_edu


class ServerAllowedTests(unittest.SynchronousTestCase):
    """The evaluation order of the m.room.server_acl event."""

    def test_no_acl(self) -> None:
        self.assertTrue(server_allowed("anything.example", None))

    def test_spec_example(self) -> None:
        acl = {"allow": ["*"], "allow_ip_literals": False, "deny": ["*.evil.com", "evil.com"]}
        self.assertTrue(server_allowed("good.example:8448", acl))
        for name in ("evil.com", "EVIL.com:8448", "a.b.evil.com", "1.2.3.4", "1.2.3.4:8448", "[::1]:8448"):
            self.assertFalse(server_allowed(name, acl), name)
        self.assertTrue(server_allowed("notevil.com", acl))

    def test_allow_list_and_defaults(self) -> None:
        self.assertFalse(server_allowed("a.example", {}))  # no allow: nobody
        acl = {"allow": ["?.example", 3], "allow_ip_literals": "no"}
        self.assertTrue(server_allowed("a.example", acl))
        self.assertFalse(server_allowed("ab.example", acl))
        self.assertFalse(server_allowed("1.2.3.4", acl))  # not allowed by a glob
        self.assertTrue(server_allowed("1.2.3.4", {"allow": ["*"], "allow_ip_literals": "no"}))
        self.assertFalse(server_allowed("x.example", {"allow": ["*"], "deny": ["x.*"]}))


class AclOnSendTests(FederationTestCase):
    """A denied server's typing, receipts and PDUs are ignored."""

    async def test_denied(self) -> None:
        event_id = await self.send_ok(self.tok, self.room)
        r = await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{self.room}/state/m.room.server_acl/",
            {"allow": ["*"], "deny": ["remote.example"]}, access_token=self.tok,
        )
        self.assertEqual(r.code, 200, r.body)
        pdu = {"room_id": self.room, "event_id": "$x:remote.example", "type": "m.room.message"}
        response = await self.transaction(
            [typing_edu(BOB, self.room), receipt_edu(BOB, self.room, event_id)], [pdu]
        )
        self.assertEqual(self.hs.typing.typing_users(self.room), [])
        receipts = await self.hs.receipts.store.user_receipts(BOB, (await self.hs.event_store.get_room(self.room)).short)
        self.assertEqual(receipts, ())
        [result] = response["pdus"].values()
        self.assertIn("ACL", result["error"])
        # Allowed again: accepted.
        await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{self.room}/state/m.room.server_acl/",
            {"allow": ["*"]}, access_token=self.tok,
        )
        await self.transaction([typing_edu(BOB, self.room)])
        self.assertEqual(self.hs.typing.typing_users(self.room), [BOB])
