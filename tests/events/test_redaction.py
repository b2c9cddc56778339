"""
Tests for L{conduit_tw.events.redaction}: each rule of rooms/fragments
v1-, v6-, v9-, v11-redactions and rooms/v8 "Redactions".
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS, get_room_version

ALL_VERSIONS = sorted(KNOWN_ROOM_VERSIONS, key=int)


def _redacted_content(version: str, etype: str, content: dict[str, Any]) -> dict[str, Any]:
    pdu = {"type": etype, "content": content, "sender": "@a:x", "room_id": "!r:x"}
    return redact_pdu(pdu, get_room_version(version))["content"]


def _versions(first: str, last: str = "12") -> list[str]:
    return [v for v in ALL_VERSIONS if int(first) <= int(v) <= int(last)]


class TopLevelTests(SynchronousTestCase):
    """Which top-level keys survive."""

    FULL = {
        "event_id": "$e:x",
        "type": "m.room.message",
        "room_id": "!r:x",
        "sender": "@a:x",
        "state_key": "",
        "content": {"body": "secret"},
        "hashes": {"sha256": "h"},
        "signatures": {"x": {"ed25519:a": "s"}},
        "depth": 3,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "x",
        "origin_server_ts": 5,
        "membership": "join",
        "unsigned": {"age": 1},
        "redacts": "$other",
        "age_ts": 7,
        "custom": True,
    }

    def test_v1_to_v10(self) -> None:
        """origin, membership and prev_state are kept before v11."""
        for v in _versions("1", "10"):
            out = redact_pdu(self.FULL, get_room_version(v))
            self.assertEqual(
                set(out),
                set(self.FULL) - {"unsigned", "redacts", "age_ts", "custom"},
                v,
            )
            self.assertEqual(out["content"], {})

    def test_v11_onwards(self) -> None:
        """v11 also strips origin, membership and prev_state."""
        for v in _versions("11"):
            out = redact_pdu(self.FULL, get_room_version(v))
            self.assertEqual(
                set(out),
                set(self.FULL)
                - {"unsigned", "redacts", "age_ts", "custom", "origin", "membership", "prev_state"},
                v,
            )

    def test_input_not_mutated(self) -> None:
        """Redaction returns a new dict and leaves the event alone."""
        before = copy.deepcopy(self.FULL)
        for v in ALL_VERSIONS:
            out = redact_pdu(self.FULL, get_room_version(v))
            self.assertIsNot(out, self.FULL)
            self.assertIsNot(out["content"], self.FULL["content"])
        self.assertEqual(self.FULL, before)

    def test_missing_or_bad_content(self) -> None:
        """No content stays absent; non-object content becomes empty."""
        rv = get_room_version("11")
        self.assertNotIn("content", redact_pdu({"type": "m.room.create"}, rv))
        self.assertEqual(
            redact_pdu({"type": "m.room.create", "content": [1]}, rv)["content"], {}
        )


class ContentTests(SynchronousTestCase):
    """Which content keys each event type keeps, version by version."""

    def test_member(self) -> None:
        """membership always; join_authorised_via_users_server from v9."""
        content = {
            "membership": "join",
            "join_authorised_via_users_server": "@b:y",
            "displayname": "A",
        }
        for v in _versions("1", "8"):
            self.assertEqual(
                _redacted_content(v, "m.room.member", content), {"membership": "join"}, v
            )
        for v in _versions("9"):
            self.assertEqual(
                _redacted_content(v, "m.room.member", content),
                {"membership": "join", "join_authorised_via_users_server": "@b:y"},
                v,
            )

    def test_member_third_party_invite(self) -> None:
        """v11 keeps only third_party_invite.signed; earlier drop it all."""
        content = {
            "membership": "invite",
            "third_party_invite": {"display_name": "x", "signed": {"token": "t"}},
        }
        self.assertEqual(
            _redacted_content("10", "m.room.member", content), {"membership": "invite"}
        )
        for v in _versions("11"):
            self.assertEqual(
                _redacted_content(v, "m.room.member", content),
                {"membership": "invite", "third_party_invite": {"signed": {"token": "t"}}},
            )
        # Without "signed" (or not an object) nothing of it is kept.
        for tpi in ({"display_name": "x"}, "junk"):
            self.assertEqual(
                _redacted_content(
                    "11", "m.room.member", {"membership": "invite", "third_party_invite": tpi}
                ),
                {"membership": "invite"},
            )

    def test_create(self) -> None:
        """creator only before v11; all of the content from v11."""
        content = {"creator": "@a:x", "room_version": "10", "m.federate": False}
        for v in _versions("1", "10"):
            self.assertEqual(
                _redacted_content(v, "m.room.create", content), {"creator": "@a:x"}, v
            )
        for v in _versions("11"):
            self.assertEqual(_redacted_content(v, "m.room.create", content), content, v)

    def test_join_rules(self) -> None:
        """join_rule always; allow from v8 (rooms/v8 "Redactions")."""
        content = {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1}
        for v in _versions("1", "7"):
            self.assertEqual(
                _redacted_content(v, "m.room.join_rules", content),
                {"join_rule": "restricted"},
                v,
            )
        for v in _versions("8"):
            self.assertEqual(
                _redacted_content(v, "m.room.join_rules", content),
                {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
                v,
            )

    def test_power_levels(self) -> None:
        """The listed power level keys; invite from v11; never notifications."""
        content = {
            "ban": 50,
            "events": {"m.room.name": 100},
            "events_default": 0,
            "kick": 50,
            "redact": 50,
            "state_default": 50,
            "users": {"@a:x": 100},
            "users_default": 0,
            "invite": 0,
            "notifications": {"room": 50},
            "historical": 100,
        }
        base = {k: v for k, v in content.items() if k not in ("invite", "notifications", "historical")}
        for v in _versions("1", "10"):
            self.assertEqual(_redacted_content(v, "m.room.power_levels", content), base, v)
        for v in _versions("11"):
            self.assertEqual(
                _redacted_content(v, "m.room.power_levels", content),
                {**base, "invite": 0},
                v,
            )

    def test_aliases(self) -> None:
        """m.room.aliases keeps aliases in v1-5 only."""
        content = {"aliases": ["#a:x"], "other": 1}
        for v in _versions("1", "5"):
            self.assertEqual(
                _redacted_content(v, "m.room.aliases", content), {"aliases": ["#a:x"]}, v
            )
        for v in _versions("6"):
            self.assertEqual(_redacted_content(v, "m.room.aliases", content), {}, v)

    def test_history_visibility(self) -> None:
        """history_visibility is kept in every version."""
        content = {"history_visibility": "shared", "x": 1}
        for v in ALL_VERSIONS:
            self.assertEqual(
                _redacted_content(v, "m.room.history_visibility", content),
                {"history_visibility": "shared"},
            )

    def test_redaction(self) -> None:
        """m.room.redaction keeps content.redacts from v11."""
        content = {"redacts": "$e", "reason": "spam"}
        for v in _versions("1", "10"):
            self.assertEqual(_redacted_content(v, "m.room.redaction", content), {}, v)
        for v in _versions("11"):
            self.assertEqual(
                _redacted_content(v, "m.room.redaction", content), {"redacts": "$e"}, v
            )

    def test_other_types(self) -> None:
        """Any other type, including state events, loses all content."""
        for v in ALL_VERSIONS:
            for etype in ("m.room.message", "m.room.name", "m.room.topic", "m.room.encryption"):
                self.assertEqual(_redacted_content(v, etype, {"name": "n", "body": "b"}), {})

    @given(
        st.sampled_from(ALL_VERSIONS),
        st.sampled_from(
            ["m.room.member", "m.room.create", "m.room.power_levels", "m.room.join_rules", "x"]
        ),
        st.dictionaries(
            st.sampled_from(
                ["membership", "creator", "allow", "join_rule", "ban", "invite", "third_party_invite", "z"]
            ),
            st.one_of(st.integers(), st.text(), st.dictionaries(st.sampled_from(["signed", "q"]), st.integers())),
        ),
    )
    def test_idempotent(self, v: str, etype: str, content: dict[str, Any]) -> None:
        """Redacting a redacted event changes nothing."""
        rv = get_room_version(v)
        once = redact_pdu({"type": etype, "content": content, "origin": "x"}, rv)
        self.assertEqual(redact_pdu(once, rv), once)
