"""
The push rule evaluator (client-server-api "Push Rules"): every condition
kind, and every server-default rule with an event that triggers it and
one that does not.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.handlers import push_rules_default as defaults
from conduit_tw.handlers.push_rules import (
    PushContext,
    compile_condition,
    compile_ruleset,
    evaluate,
    glob_matcher,
    parse_path,
    prepare_event,
    render_ruleset,
)
from conduit_tw.storage.stores.push_rules import empty_delta

ME = "@alice:test"


def msg(body: str = "hello", sender: str = "@bob:test", **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message", "sender": sender, "room_id": "!r:test", "event_id": "$e",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def ctx(**kw: Any) -> PushContext:
    kw.setdefault("member_count", 5)
    return PushContext(user_id=ME, **kw)


class ConditionTests(SynchronousTestCase):
    """Each condition kind on its own."""

    def check(self, condition: dict[str, Any], event: dict[str, Any], context: PushContext | None = None) -> bool:
        return compile_condition(condition)(prepare_event(event), context or ctx())

    def test_paths(self) -> None:
        self.assertEqual(parse_path("content.body"), ("content", "body"))
        self.assertEqual(parse_path("content.m\\.relates_to"), ("content", "m.relates_to"))
        self.assertEqual(parse_path("content.m\\\\foo"), ("content", "m\\foo"))
        self.assertEqual(parse_path("content.a\\x"), ("content", "a\\x"))

    def test_event_match_spec_example(self) -> None:
        cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}

        def topic(value: Any) -> dict[str, Any]:
            return {"type": "m.room.topic", "state_key": "", "sender": "@b:t", "content": {"topic": value}}

        self.assertTrue(self.check(cond, topic("Lunch plans")))
        self.assertTrue(self.check(cond, topic("LUNCH")))
        self.assertFalse(self.check(cond, topic(" lunch")))
        self.assertFalse(self.check(cond, topic("lunc")))
        self.assertFalse(self.check(cond, topic(None)))
        self.assertFalse(self.check({"kind": "event_match", "key": "content.nope", "pattern": "*"}, topic("x")))
        self.assertFalse(self.check({"kind": "event_match", "key": "content", "pattern": "*"}, topic("x")))

    def test_event_match_literal_is_case_insensitive_and_whole(self) -> None:
        cond = {"kind": "event_match", "key": "type", "pattern": "m.room.message"}
        self.assertTrue(self.check(cond, msg()))
        self.assertTrue(self.check(cond, dict(msg(), type="M.Room.Message")))
        self.assertFalse(self.check(cond, dict(msg(), type="m.room.message.x")))

    def test_event_match_body_word_boundaries(self) -> None:
        cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
        self.assertTrue(self.check(cond, msg("An example event.")))
        self.assertTrue(self.check(cond, msg("exple")))
        self.assertTrue(self.check(cond, msg("An exciting triple-whammy")))
        self.assertFalse(self.check(cond, msg("examples")))
        self.assertFalse(self.check(cond, msg("nexample")))
        cake = {"kind": "event_match", "key": "content.body", "pattern": "cake"}
        self.assertTrue(self.check(cake, msg("It's CAKE time")))
        self.assertTrue(self.check(cake, msg("cake\nand tea")))
        self.assertFalse(self.check(cake, msg("cakes")))
        self.assertFalse(self.check(cake, msg("my_cake")))
        # Other keys match the whole value.
        self.assertFalse(self.check({"kind": "event_match", "key": "content.msgtype", "pattern": "text"}, msg()))

    def test_glob_question_mark_and_regex_metacharacters(self) -> None:
        self.assertTrue(glob_matcher("a?c")("abc"))
        self.assertFalse(glob_matcher("a?c")("ac"))
        self.assertTrue(glob_matcher("a.b+(c)")("A.B+(C)"))
        self.assertFalse(glob_matcher("a.b")("axb"))

    def test_glob_agrees_with_backtracking_reference(self) -> None:
        """
        On every short pattern and value over a small alphabet, the linear
        matcher gives what the textbook regex translation gives (whole value,
        and word-bounded substring for C{content.body}).
        """
        word = "A-Za-z0-9_"

        patterns = ["".join(p) for n in range(5) for p in itertools.product("a*?-", repeat=n)]
        values = ["".join(v) for n in range(6) for v in itertools.product("aA-", repeat=n)]
        for pattern in patterns:
            body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
            whole = re.compile(body, re.I | re.S).fullmatch
            bounded = re.compile(f"(?<![{word}])(?:{body})(?![{word}])", re.I | re.S).search
            match, match_bounded = glob_matcher(pattern), glob_matcher(pattern, True)
            for value in values:
                self.assertEqual(match(value), whole(value) is not None, (pattern, value))
                self.assertEqual(match_bounded(value), bounded(value) is not None, (pattern, value))

    def test_glob_cannot_backtrack_exponentially(self) -> None:
        """
        Patterns with many C{*} used to compile to regexes that backtrack
        super-linearly (C{*a*a*a*a*!} on 250 characters took ~10 s): a 2000-
        and a 65000-character value now take well under a second.
        """
        cases = [("*a*a*a*a*!", "a" * 250), ("*a*a*a*a*a*a*!", "a" * 2000),
                 ("*a*a*a*a*a*a*!", "a" * 65000), ("*a?a*a*a?*a*a*!", "a " * 1000)]
        for pattern, value in cases:
            for key in ("content.body", "content.topic"):
                cond = {"kind": "event_match", "key": key, "pattern": pattern}
                event = msg(value, topic=value)
                started = time.monotonic()
                self.assertFalse(self.check(cond, event))
                self.assertTrue(self.check(dict(cond, pattern=pattern[:-1]), event))
                self.assertLess(time.monotonic() - started, 1.0, (pattern, len(value), key))

    def test_event_property_is(self) -> None:
        create = {
            "type": "m.room.create", "state_key": "", "sender": "@b:t",
            "content": {"m.federate": True, "room_version": "1", "n": 3, "none": None},
        }
        self.assertTrue(self.check({"kind": "event_property_is", "key": "content.m\\.federate", "value": True}, create))
        self.assertFalse(self.check({"kind": "event_property_is", "key": "content.m\\.federate", "value": "true"}, create))
        self.assertFalse(self.check({"kind": "event_property_is", "key": "content.m\\.federate", "value": 1}, create))
        self.assertTrue(self.check({"kind": "event_property_is", "key": "content.n", "value": 3}, create))
        self.assertFalse(self.check({"kind": "event_property_is", "key": "content.n", "value": True}, create))
        self.assertTrue(self.check({"kind": "event_property_is", "key": "content.none", "value": None}, create))
        self.assertFalse(self.check({"kind": "event_property_is", "key": "content.absent", "value": None}, create))
        self.assertFalse(self.check({"kind": "event_property_is", "key": "content", "value": None}, create))
        self.assertFalse(self.check({"kind": "event_property_is", "key": "content.n"}, create))

    def test_event_property_contains(self) -> None:
        alias = {
            "type": "m.room.canonical_alias", "state_key": "", "sender": "@b:t",
            "content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com", 1, {"x": 1}]},
        }
        cond = {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#myroom:example.com"}
        self.assertTrue(self.check(cond, alias))
        cond["value"] = ":example.com"
        self.assertFalse(self.check(cond, alias))
        self.assertTrue(self.check(dict(cond, value=1), alias))
        self.assertFalse(self.check(dict(cond, value=True), alias))
        self.assertFalse(self.check(dict(cond, key="content.nope"), alias))
        self.assertFalse(
            self.check(dict(cond, key="type", value="m.room.canonical_alias"), alias),
            "a string is not an array",
        )

    def test_contains_display_name(self) -> None:
        cond = {"kind": "contains_display_name"}
        self.assertTrue(self.check(cond, msg("hi Alice Liddell!"), ctx(display_name="alice liddell")))
        self.assertFalse(self.check(cond, msg("hi Alicette"), ctx(display_name="Alice")))
        self.assertFalse(self.check(cond, msg("hi Alice"), ctx(display_name=None)))
        self.assertFalse(self.check(cond, msg("hi"), ctx(display_name="")))
        self.assertTrue(self.check(cond, msg("ping [bot]"), ctx(display_name="[bot]")))

    def test_contains_display_name_bounded(self) -> None:
        """
        A per-room display name (an m.room.member event, up to 64 KiB) longer
        than profile names may be is never searched for: a literal search
        costs message length x name length. Names up to the cap still match.
        """
        cond = {"kind": "contains_display_name"}
        long_name = "n" * 257
        self.assertFalse(self.check(cond, msg("hi " + long_name + " !"), ctx(display_name=long_name)))
        name = "n" * 256
        self.assertTrue(self.check(cond, msg("hi " + name + " !"), ctx(display_name=name)))

    def test_room_member_count(self) -> None:
        cases = [
            ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<10", 9, True), ("<10", 10, False),
            (">3", 4, True), (">3", 3, False), ("<=10", 10, True), ("<=10", 11, False),
            (">=3", 3, True), (">=3", 2, False), ("two", 2, False), ("=2", 2, False), ("", 0, False),
        ]
        for spec, count, expected in cases:
            with self.subTest(spec=spec, count=count):
                self.assertEqual(
                    self.check({"kind": "room_member_count", "is": spec}, msg(), ctx(member_count=count)),
                    expected,
                )

    def test_sender_notification_permission(self) -> None:
        cond = {"kind": "sender_notification_permission", "key": "room"}
        self.assertTrue(self.check(cond, msg(), ctx(sender_power_level=50)))
        self.assertFalse(self.check(cond, msg(), ctx(sender_power_level=49)))
        self.assertTrue(
            self.check(cond, msg(), ctx(sender_power_level=10, notification_levels={"room": 10}))
        )
        self.assertFalse(
            self.check(cond, msg(), ctx(sender_power_level=10, notification_levels={"room": "20"}))
        )

    def test_unknown_and_malformed_conditions_never_match(self) -> None:
        for cond in (
            {"kind": "org.example.future"}, {"kind": "event_match", "key": "type"},
            {"kind": "event_match", "pattern": "*"}, {"nokind": 1}, "event_match",
        ):
            with self.subTest(cond=cond):
                self.assertFalse(self.check(cond, msg()))  # type: ignore[arg-type]


class DefaultRuleTests(SynchronousTestCase):
    """Each server-default rule: one event that triggers it, one that does not."""

    def setUp(self) -> None:
        self.rules = compile_ruleset(ME, render_ruleset(ME, empty_delta()))

    def rule_for(self, event: dict[str, Any], **kw: Any) -> str | None:
        result = evaluate(self.rules, event, ctx(**kw))
        return result.rule_id if result is not None else None

    def test_order_and_completeness(self) -> None:
        ruleset = render_ruleset(ME, empty_delta())
        self.assertEqual(
            [r["rule_id"] for r in ruleset["override"]],
            [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
             ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention",
             ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
             ".m.rule.suppress_edits"],
        )
        self.assertEqual(
            [r["rule_id"] for r in ruleset["underride"]],
            [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
             ".m.rule.message", ".m.rule.encrypted"],
        )
        self.assertEqual((ruleset["content"], ruleset["room"], ruleset["sender"]), ([], [], []))
        for kind in ruleset:
            for r in ruleset[kind]:
                self.assertTrue(r["default"])
        invite = ruleset["override"][2]
        self.assertEqual(invite["conditions"][2]["pattern"], ME)
        mention = ruleset["override"][4]
        self.assertEqual(mention["conditions"][0]["value"], ME)
        self.assertNotIn(ME, repr(defaults.OVERRIDE), "definitions are not mutated")

    def test_master(self) -> None:
        self.assertEqual(self.rule_for(msg()), ".m.rule.message")
        delta = empty_delta()
        delta["defaults"][".m.rule.master"] = {"enabled": True}
        delta["user"]["override"] = [{"rule_id": "mine", "enabled": True, "conditions": [], "actions": ["notify"]}]
        rules = compile_ruleset(ME, render_ruleset(ME, delta))
        result = evaluate(rules, msg(), ctx())
        assert result is not None
        self.assertEqual((result.rule_id, result.notify), (".m.rule.master", False))

    def test_suppress_notices(self) -> None:
        self.assertEqual(self.rule_for(msg(msgtype="m.notice")), ".m.rule.suppress_notices")
        result = evaluate(self.rules, msg(msgtype="m.notice"), ctx())
        assert result is not None
        self.assertFalse(result.notify)
        self.assertEqual(self.rule_for(msg(msgtype="m.emote")), ".m.rule.message")

    def member(self, target: str, membership: str) -> dict[str, Any]:
        return {"type": "m.room.member", "state_key": target, "sender": "@bob:test",
                "room_id": "!r:test", "content": {"membership": membership}}

    def test_invite_for_me(self) -> None:
        result = evaluate(self.rules, self.member(ME, "invite"), ctx())
        assert result is not None
        self.assertEqual((result.rule_id, result.notify, result.sound, result.highlight),
                         (".m.rule.invite_for_me", True, "default", False))
        self.assertEqual(self.rule_for(self.member("@carol:test", "invite")), ".m.rule.member_event")

    def test_member_event(self) -> None:
        self.assertEqual(self.rule_for(self.member("@carol:test", "join")), ".m.rule.member_event")
        self.assertIsNone(self.rule_for({"type": "m.room.membership", "sender": "@b:t", "content": {}}))

    def test_is_user_mention(self) -> None:
        event = msg("hey", **{"m.mentions": {"user_ids": [ME]}})
        result = evaluate(self.rules, event, ctx())
        assert result is not None
        self.assertEqual((result.rule_id, result.highlight, result.sound),
                         (".m.rule.is_user_mention", True, "default"))
        other = msg("hey", **{"m.mentions": {"user_ids": ["@carol:test"]}})
        self.assertEqual(self.rule_for(other), ".m.rule.message")

    def test_is_room_mention(self) -> None:
        event = msg("all", **{"m.mentions": {"room": True}})
        result = evaluate(self.rules, event, ctx(sender_power_level=50))
        assert result is not None
        self.assertEqual((result.rule_id, result.highlight), (".m.rule.is_room_mention", True))
        self.assertEqual(self.rule_for(event, sender_power_level=0), ".m.rule.message")
        self.assertEqual(self.rule_for(msg("all", **{"m.mentions": {"room": "true"}}), sender_power_level=100),
                         ".m.rule.message")

    def test_tombstone(self) -> None:
        tomb = {"type": "m.room.tombstone", "state_key": "", "sender": "@b:t", "content": {}}
        result = evaluate(self.rules, tomb, ctx())
        assert result is not None
        self.assertEqual((result.rule_id, result.highlight), (".m.rule.tombstone", True))
        self.assertIsNone(self.rule_for({"type": "m.room.tombstone", "sender": "@b:t", "content": {}}))

    def test_reaction(self) -> None:
        react = {"type": "m.reaction", "sender": "@b:t", "content": {}}
        self.assertEqual(self.rule_for(react), ".m.rule.reaction")
        self.assertIsNone(self.rule_for({"type": "m.sticker", "sender": "@b:t", "content": {}}))

    def test_server_acl(self) -> None:
        acl = {"type": "m.room.server_acl", "state_key": "", "sender": "@b:t", "content": {}}
        self.assertEqual(self.rule_for(acl), ".m.rule.room.server_acl")
        self.assertIsNone(self.rule_for({"type": "m.room.server_acl", "sender": "@b:t", "content": {}}))

    def test_suppress_edits(self) -> None:
        edit = msg("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
        self.assertEqual(self.rule_for(edit), ".m.rule.suppress_edits")
        thread = msg("reply", **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$x"}})
        self.assertEqual(self.rule_for(thread), ".m.rule.message")

    def test_call(self) -> None:
        result = evaluate(self.rules, {"type": "m.call.invite", "sender": "@b:t", "content": {}}, ctx())
        assert result is not None
        self.assertEqual((result.rule_id, result.sound), (".m.rule.call", "ring"))
        self.assertIsNone(self.rule_for({"type": "m.call.answer", "sender": "@b:t", "content": {}}))

    def test_encrypted_room_one_to_one(self) -> None:
        enc = {"type": "m.room.encrypted", "sender": "@b:t", "content": {"ciphertext": "x"}}
        result = evaluate(self.rules, enc, ctx(member_count=2))
        assert result is not None
        self.assertEqual((result.rule_id, result.sound), (".m.rule.encrypted_room_one_to_one", "default"))
        self.assertEqual(self.rule_for(enc, member_count=3), ".m.rule.encrypted")

    def test_room_one_to_one(self) -> None:
        result = evaluate(self.rules, msg(), ctx(member_count=2))
        assert result is not None
        self.assertEqual((result.rule_id, result.sound), (".m.rule.room_one_to_one", "default"))
        self.assertEqual(self.rule_for(msg(), member_count=3), ".m.rule.message")

    def test_message(self) -> None:
        result = evaluate(self.rules, msg(), ctx())
        assert result is not None
        self.assertEqual((result.rule_id, result.notify, result.highlight, result.sound),
                         (".m.rule.message", True, False, None))
        self.assertIsNone(self.rule_for({"type": "m.room.topic", "state_key": "", "sender": "@b:t", "content": {}}))

    def test_encrypted(self) -> None:
        enc = {"type": "m.room.encrypted", "sender": "@b:t", "content": {}}
        result = evaluate(self.rules, enc, ctx(member_count=10))
        assert result is not None
        self.assertEqual((result.rule_id, result.notify), (".m.rule.encrypted", True))
        self.assertIsNone(self.rule_for({"type": "m.room.encrypted.x", "sender": "@b:t", "content": {}}))

    def test_own_events_never_notify(self) -> None:
        self.assertIsNone(evaluate(self.rules, msg(sender=ME), ctx(member_count=2)))


class UserRuleTests(SynchronousTestCase):
    """User rules of each kind, priorities, disabled rules and actions."""

    def rules(self, **user: list[dict[str, Any]]) -> Any:
        delta = empty_delta()
        delta["user"] = user
        return compile_ruleset(ME, render_ruleset(ME, delta))

    def test_kinds_in_priority_order(self) -> None:
        rules = self.rules(
            content=[{"rule_id": "cake", "enabled": True, "pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}]}],
            room=[{"rule_id": "!r:test", "enabled": True, "actions": []}],
            sender=[{"rule_id": "@bob:test", "enabled": True, "actions": ["notify", {"set_tweak": "highlight", "value": False}]}],
        )
        r = evaluate(rules, msg("cake please"), ctx())
        assert r is not None
        self.assertEqual((r.rule_id, r.sound), ("cake", "cakealarm.wav"))
        r = evaluate(rules, msg("tea"), ctx())
        assert r is not None
        self.assertEqual((r.rule_id, r.notify), ("!r:test", False))
        r = evaluate(rules, dict(msg("tea"), room_id="!other:test"), ctx())
        assert r is not None
        self.assertEqual((r.rule_id, r.highlight), ("@bob:test", False))
        r = evaluate(rules, dict(msg("tea"), room_id="!other:test", sender="@carol:test"), ctx())
        assert r is not None
        self.assertEqual(r.rule_id, ".m.rule.message")

    def test_user_override_beats_default_override_but_not_master(self) -> None:
        rules = self.rules(override=[
            {"rule_id": "notices", "enabled": True, "actions": ["notify"],
             "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}]},
        ])
        r = evaluate(rules, msg(msgtype="m.notice"), ctx())
        assert r is not None
        self.assertEqual((r.rule_id, r.notify), ("notices", True))

    def test_disabled_rules_and_historical_actions(self) -> None:
        rules = self.rules(underride=[
            {"rule_id": "off", "enabled": False, "conditions": [], "actions": ["notify"]},
            {"rule_id": "old", "enabled": True, "conditions": [], "actions": ["dont_notify", "coalesce"]},
        ])
        r = evaluate(rules, {"type": "x.custom", "sender": "@b:t", "content": {}}, ctx())
        assert r is not None
        self.assertEqual((r.rule_id, r.actions, r.notify), ("old", (), False))

    def test_unknown_condition_disables_rule(self) -> None:
        rules = self.rules(override=[
            {"rule_id": "future", "enabled": True, "actions": ["notify"],
             "conditions": [{"kind": "org.example.future"}]},
        ])
        r = evaluate(rules, msg(msgtype="m.notice"), ctx())
        assert r is not None
        self.assertEqual(r.rule_id, ".m.rule.suppress_notices")

    def test_prepared_event_shared_between_users(self) -> None:
        rules = compile_ruleset(ME, render_ruleset(ME, empty_delta()))
        bob_rules = compile_ruleset("@carol:test", render_ruleset("@carol:test", empty_delta()))
        event = prepare_event(msg("hi", **{"m.mentions": {"user_ids": [ME]}}))
        a = evaluate(rules, event, ctx())
        b = evaluate(bob_rules, event, PushContext("@carol:test", member_count=5))
        assert a is not None and b is not None
        self.assertEqual((a.rule_id, b.rule_id), (".m.rule.is_user_mention", ".m.rule.message"))
