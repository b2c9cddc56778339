"""The server ACL matcher (federation/server_acl.py) against the m.room.server_acl rules."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.federation.acl import host_of, is_ip_literal, is_server_allowed as server_allowed


class ServerAclTests(SynchronousTestCase):
    def test_no_acl_allows(self) -> None:
        self.assertTrue(server_allowed("evil.com", None))

    def test_empty_allow_denies_everyone(self) -> None:
        self.assertFalse(server_allowed("good.com", {}))
        self.assertFalse(server_allowed("good.com", {"deny": []}))

    def test_deny_before_allow(self) -> None:
        acl = {"allow": ["*"], "deny": ["evil.com", "*.evil.com"]}
        self.assertFalse(server_allowed("evil.com", acl))
        self.assertFalse(server_allowed("a.b.evil.com", acl))
        self.assertTrue(server_allowed("notevil.com", acl))
        self.assertTrue(server_allowed("good.com", acl))

    def test_port_not_considered(self) -> None:
        acl = {"allow": ["*"], "deny": ["evil.com"]}
        for name in ("evil.com", "evil.com:8448", "evil.com:1234"):
            self.assertFalse(server_allowed(name, acl), name)

    def test_globs(self) -> None:
        acl = {"allow": ["matrix.?.org", "*.example"]}
        self.assertTrue(server_allowed("matrix.a.org", acl))
        self.assertFalse(server_allowed("matrix.ab.org", acl))
        self.assertTrue(server_allowed("x.y.example", acl))
        self.assertFalse(server_allowed("example", acl))
        # Regex metacharacters are literal.
        self.assertFalse(server_allowed("matrixxaxorg", acl))
        self.assertTrue(server_allowed("A.EXAMPLE", acl))

    def test_ip_literals(self) -> None:
        acl = {"allow": ["*"], "allow_ip_literals": False}
        self.assertFalse(server_allowed("1.2.3.4", acl))
        self.assertFalse(server_allowed("1.2.3.4:8448", acl))
        self.assertFalse(server_allowed("[::1]:8448", acl))
        self.assertTrue(server_allowed("one.example", acl))
        self.assertTrue(server_allowed("1.2.3.4", {"allow": ["*"]}))
        # Not a boolean: the default (true).
        self.assertTrue(server_allowed("1.2.3.4", {"allow": ["*"], "allow_ip_literals": "no"}))

    def test_malformed_lists_ignored(self) -> None:
        self.assertFalse(server_allowed("a.com", {"allow": "*"}))
        self.assertTrue(server_allowed("a.com", {"allow": [1, "*"], "deny": {"a.com": 1}}))

    def test_helpers(self) -> None:
        self.assertEqual(host_of("[::1]:80"), "[::1]")
        self.assertEqual(host_of("a.com:80"), "a.com")
        self.assertTrue(is_ip_literal("[::1]"))
        self.assertFalse(is_ip_literal("a.com"))
