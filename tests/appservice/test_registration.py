"""Parsing and validating registration YAML (conduit_tw/appservice/registration.py)."""

from __future__ import annotations

from twisted.trial import unittest

from conduit_tw.appservice.registration import RegistrationError, parse_registration

#: The spec's example (application-service-api "Registration"), with pushes.
EXAMPLE = """
id: "IRC Bridge"
url: "http://127.0.0.1:1234"
as_token: "30c05ae90a248a4188e620216fa72e349803310ec83e2a77b34fe90be6081f46"
hs_token: "312df522183efd404ec1cd22d2ffa4bbc76a8c1ccf541dd692eef281356bb74e"
sender_localpart: "_irc_bot"
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_bridge_.*"
  aliases:
    - exclusive: false
      regex: "#_irc_bridge_.*"
  rooms: []
"""


def make_yaml(**changes: object) -> str:
    """A registration with some top-level keys replaced (None values removed)."""
    import yaml

    doc = yaml.safe_load(EXAMPLE)
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return yaml.safe_dump(doc)


class ParseTests(unittest.TestCase):
    def test_spec_example(self) -> None:
        reg = parse_registration(EXAMPLE, "example.org")
        self.assertEqual(reg.id, "IRC Bridge")
        self.assertEqual(reg.sender, "@_irc_bot:example.org")
        self.assertTrue(reg.rate_limited)
        self.assertFalse(reg.receive_ephemeral)
        self.assertTrue(reg.is_user_in_namespace("@_irc_bridge_bob:example.org"))
        self.assertTrue(reg.is_user_in_namespace("@_irc_bridge_bob:example.org", exclusive_only=True))
        self.assertTrue(reg.is_user_in_namespace("@_irc_bot:example.org"))
        self.assertFalse(reg.is_user_in_namespace("@bob:example.org"))
        self.assertTrue(reg.is_alias_in_namespace("#_irc_bridge_x:example.org"))
        self.assertFalse(reg.is_alias_in_namespace("#_irc_bridge_x:example.org", exclusive_only=True))
        self.assertEqual(reg.yaml_text, EXAMPLE)

    def test_null_url_and_options(self) -> None:
        reg = parse_registration(
            make_yaml(url=None) + "url: null\nrate_limited: false\nprotocols: [irc]\n"
            "de.sorunome.msc2409.push_ephemeral: true\n",
            "example.org",
        )
        self.assertIsNone(reg.url)
        self.assertFalse(reg.rate_limited)
        self.assertEqual(reg.protocols, ("irc",))
        self.assertTrue(reg.receive_ephemeral)
        for key in ("receive_ephemeral", "push_ephemeral"):
            self.assertTrue(parse_registration(make_yaml(**{key: True}), "x").receive_ephemeral)

    def assertRefused(self, text: str, words: str) -> None:
        with self.assertRaises(RegistrationError) as cm:
            parse_registration(text, "example.org")
        self.assertIn(words, str(cm.exception))

    def test_errors(self) -> None:
        self.assertRefused(make_yaml(as_token=None), "missing key 'as_token'")
        self.assertRefused(make_yaml(url=None), "missing key 'url'")
        self.assertRefused(make_yaml(namespaces=None), "missing key 'namespaces'")
        self.assertRefused(make_yaml(hs_token=""), "'hs_token' must be a non-empty string")
        self.assertRefused(make_yaml(hs_token="30c05ae90a248a4188e620216fa72e349803310ec83e2a77b34fe90be6081f46"), "must differ")
        self.assertRefused(make_yaml(sender_localpart="Bad Name"), "sender_localpart")
        self.assertRefused(make_yaml(url="ftp://x"), "'url'")
        self.assertRefused(make_yaml(rate_limited="no"), "'rate_limited'")
        self.assertRefused(
            make_yaml(namespaces={"users": [{"exclusive": True, "regex": "@(unclosed"}]}),
            "'namespaces.users[0].regex' is not a valid regular expression",
        )
        self.assertRefused(make_yaml(namespaces={"people": []}), "unknown namespace kind")
        self.assertRefused(make_yaml(namespaces={"users": [{"exclusive": "yes", "regex": "@a"}]}), "exclusive")
        self.assertRefused("id: [unclosed", "not valid YAML")
        self.assertRefused("- a list", "mapping")
