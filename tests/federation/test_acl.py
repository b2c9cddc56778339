"""Room server ACLs (conduit_tw/federation/acl.py), the m.room.server_acl algorithm."""

from __future__ import annotations

from twisted.trial import unittest

from conduit_tw.errors import MatrixError
from conduit_tw.federation.acl import check_server_acl, host_of, is_server_allowed


class ServerAclTests(unittest.TestCase):
    def test_no_acl_allows(self) -> None:
        self.assertTrue(is_server_allowed("anything.example", None))

    def test_missing_allow_denies_everyone(self) -> None:
        self.assertFalse(is_server_allowed("a.example", {}))
        self.assertFalse(is_server_allowed("a.example", {"deny": []}))

    def test_globs_case_insensitive_without_port(self) -> None:
        acl = {"allow": ["*.example.org", "matrix.org", "h?st.net"], "deny": ["evil.example.org"]}
        for name, allowed in [
            ("a.example.org", True),
            ("A.EXAMPLE.ORG:8448", True),
            ("example.org", False),  # "*." needs something before the dot
            ("matrix.org", True),
            ("matrix.org:1234", True),
            ("notmatrix.org", False),
            ("host.net", True),
            ("hoost.net", False),
            ("evil.example.org", False),
            ("Evil.Example.Org:443", False),
        ]:
            self.assertEqual(is_server_allowed(name, acl), allowed, name)

    def test_deny_wins_over_allow(self) -> None:
        self.assertFalse(is_server_allowed("bad.example", {"allow": ["*"], "deny": ["bad.*"]}))

    def test_ip_literals(self) -> None:
        allow_all = {"allow": ["*"]}
        for name in ("1.2.3.4", "1.2.3.4:8448", "[::1]", "[2001:db8::1]:8448"):
            self.assertTrue(is_server_allowed(name, allow_all), name)
            self.assertTrue(is_server_allowed(name, {**allow_all, "allow_ip_literals": True}))
            # anything but a boolean false means true
            self.assertTrue(is_server_allowed(name, {**allow_all, "allow_ip_literals": "no"}))
            self.assertFalse(is_server_allowed(name, {**allow_all, "allow_ip_literals": False}))
        # a hostname is not an IP literal
        self.assertTrue(is_server_allowed("1.2.3.4.example", {**allow_all, "allow_ip_literals": False}))
        # IP literals match globs too
        self.assertFalse(is_server_allowed("1.2.3.4", {"allow": ["*"], "deny": ["1.2.3.*"]}))

    def test_malformed_content_is_tolerated(self) -> None:
        self.assertFalse(is_server_allowed("a.example", {"allow": "*"}))
        self.assertTrue(is_server_allowed("a.example", {"allow": [1, None, "a.example"], "deny": {}}))

    def test_check_raises_forbidden(self) -> None:
        check_server_acl("ok.example", {"allow": ["*"]})
        with self.assertRaises(MatrixError) as e:
            check_server_acl("evil.example:8448", {"allow": ["*"], "deny": ["evil.example"]})
        self.assertEqual((e.exception.code, e.exception.errcode), (403, "M_FORBIDDEN"))

    def test_host_of(self) -> None:
        self.assertEqual(host_of("a.example:1"), "a.example")
        self.assertEqual(host_of("[::1]:8448"), "[::1]")
        self.assertEqual(host_of("[::1]"), "[::1]")
        self.assertEqual(host_of("a.example"), "a.example")
