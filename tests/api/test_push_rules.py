"""Push rules API (client-server-api "Push Rules: API")."""

from __future__ import annotations

from typing import Any

from conduit_tw.handlers.push_rules import PushContext, evaluate
from tests.api.accounts import AccountsTestCase

P = "/_matrix/client/v3/pushrules"


class PushRulesApiTests(AccountsTestCase):
    """Reading and changing rules."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.tok = (await self.register("alice"))["access_token"]

    async def put(self, path: str, body: Any, **kw: Any) -> Any:
        return await self.request("PUT", P + path, body, access_token=self.tok, **kw)

    async def ids(self, kind: str) -> list[str]:
        r = await self.request("GET", P + "/global/", access_token=self.tok)
        return [rule["rule_id"] for rule in r.json[kind]]

    async def test_get_all(self) -> None:
        r = await self.request("GET", P + "/", access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual(set(r.json), {"global"})
        self.assertEqual(set(r.json["global"]), {"override", "content", "room", "sender", "underride"})
        r2 = await self.request("GET", P + "/global/", access_token=self.tok)
        self.assertEqual(r2.json, r.json["global"])
        r = await self.request("GET", P + "/global/override/.m.rule.master", access_token=self.tok)
        self.assertEqual(r.json, {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                                  "conditions": [], "actions": []})
        r = await self.request("GET", P + "/global/override/.m.rule.master/enabled", access_token=self.tok)
        self.assertEqual(r.json, {"enabled": False})
        r = await self.request("GET", P + "/global/underride/.m.rule.call/actions", access_token=self.tok)
        self.assertEqual(r.json, {"actions": ["notify", {"set_tweak": "sound", "value": "ring"}]})
        for path in ("/global/override/nope", "/global/underride/.m.rule.master", "/global/room/!r:test/enabled"):
            r = await self.request("GET", P + path, access_token=self.tok)
            self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", P + "/device/override/.m.rule.master", access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.request("GET", P + "/global/nonsense/x", access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")

    async def test_create_order_update_delete(self) -> None:
        cake = {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}]}
        self.assertEqual((await self.put("/global/content/cake", cake)).code, 200)
        r = await self.put("/global/content/lie", {"pattern": "cake*lie", "actions": ["notify"]}, )
        self.assertEqual(await self.ids("content"), ["lie", "cake"], "new rules go first")
        await self.put("/global/content/tea", {"pattern": "tea", "actions": []}, )
        r = await self.request("PUT", P + "/global/content/tea?after=cake", {"pattern": "tea", "actions": []}, access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual(await self.ids("content"), ["lie", "cake", "tea"])
        r = await self.request("PUT", P + "/global/content/tea?before=lie", {"pattern": "tea", "actions": []}, access_token=self.tok)
        self.assertEqual(await self.ids("content"), ["tea", "lie", "cake"])
        r = await self.request("PUT", P + "/global/content/x?before=nope", {"pattern": "x", "actions": []}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_UNKNOWN")
        r = await self.request("PUT", P + "/global/override/x?after=.m.rule.master", {"actions": []}, access_token=self.tok)
        self.assertMatrixError(r, 400, "M_UNKNOWN")

        # Update in place keeps position and the enabled state.
        r = await self.put("/global/content/lie/enabled", {"enabled": False})
        self.assertEqual(r.code, 200)
        await self.put("/global/content/lie", {"pattern": "cake*a*lie", "actions": ["notify"]})
        self.assertEqual(await self.ids("content"), ["tea", "lie", "cake"])
        r = await self.request("GET", P + "/global/content/lie", access_token=self.tok)
        self.assertEqual(r.json, {"rule_id": "lie", "default": False, "enabled": False,
                                  "pattern": "cake*a*lie", "actions": ["notify"]})
        r = await self.request("DELETE", P + "/global/content/lie", access_token=self.tok)
        self.assertEqual(r.code, 200)
        self.assertEqual(await self.ids("content"), ["tea", "cake"])
        r = await self.request("DELETE", P + "/global/content/lie", access_token=self.tok)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_override_room_sender_rules(self) -> None:
        beer = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "beer"},
                               {"kind": "room_member_count", "is": "<=10"}],
                "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}]}
        self.assertEqual((await self.put("/global/override/beer", beer)).code, 200)
        self.assertEqual(await self.ids("override"), [".m.rule.master", "beer", ".m.rule.suppress_notices",
                                                        ".m.rule.invite_for_me", ".m.rule.member_event",
                                                        ".m.rule.is_user_mention", ".m.rule.is_room_mention",
                                                        ".m.rule.tombstone", ".m.rule.reaction",
                                                        ".m.rule.room.server_acl", ".m.rule.suppress_edits"])
        self.assertEqual((await self.put("/global/room/%21dj234r78wl45Gh4D%3Amatrix.org", {"actions": []})).code, 200)
        self.assertEqual((await self.put("/global/sender/%40spambot%3Amatrix.org", {"actions": ["dont_notify"]})).code, 200)
        r = await self.request("GET", P + "/global/sender/@spambot:matrix.org", access_token=self.tok)
        self.assertEqual(r.json, {"rule_id": "@spambot:matrix.org", "default": False, "enabled": True, "actions": []})
        self.assertEqual(await self.ids("room"), ["!dj234r78wl45Gh4D:matrix.org"])

    async def test_validation(self) -> None:
        cases = [
            ("/global/override/.mine", {"actions": []}, "M_INVALID_PARAM"),
            ("/global/override/a%2Fb", {"actions": []}, "M_INVALID_PARAM"),
            ("/global/override/a%5Cb", {"actions": []}, "M_INVALID_PARAM"),
            ("/global/override/.m.rule.master", {"actions": []}, "M_INVALID_PARAM"),
            ("/global/override/x", {}, "M_MISSING_PARAM"),
            ("/global/override/x", {"actions": "notify"}, "M_BAD_JSON"),
            ("/global/override/x", {"actions": ["explode"]}, "M_BAD_JSON"),
            ("/global/override/x", {"actions": [{"value": 1}]}, "M_BAD_JSON"),
            ("/global/override/x", {"actions": [], "conditions": {}}, "M_BAD_JSON"),
            ("/global/override/x", {"actions": [], "conditions": [{"key": "type"}]}, "M_BAD_JSON"),
            ("/global/content/x", {"actions": []}, "M_MISSING_PARAM"),
            ("/global/override/.m.rule.master/enabled", {"enabled": "yes"}, "M_BAD_JSON"),
            ("/global/override/.m.rule.master/enabled", {}, "M_MISSING_PARAM"),
            ("/global/override/.m.rule.master/actions", {"actions": [3]}, "M_BAD_JSON"),
        ]
        for path, body, errcode in cases:
            r = await self.put(path, body)
            self.assertMatrixError(r, 400, errcode)
        r = await self.request("DELETE", P + "/global/override/.m.rule.master", access_token=self.tok)
        self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        r = await self.put("/global/override/nope/enabled", {"enabled": True})
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.put("/global/content/.m.rule.master/actions", {"actions": []})
        self.assertMatrixError(r, 404, "M_NOT_FOUND")

    async def test_pattern_limits(self) -> None:
        """
        Globs are capped at upload (256 characters, 20 C{*}): every event is
        matched against them for every member.
        """
        cond = {"kind": "event_match", "key": "content.body"}
        too_big = ["x" * 257, "*a" * 21, "*" * 21]
        for pattern in too_big:
            r = await self.put("/global/content/big", {"pattern": pattern, "actions": []})
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")
            r = await self.put("/global/override/big", {"actions": [], "conditions": [dict(cond, pattern=pattern)]})
            self.assertMatrixError(r, 400, "M_INVALID_PARAM")
        self.assertNotIn("big", await self.ids("content"))
        self.assertNotIn("big", await self.ids("override"))
        for pattern in ["x" * 256, "*a" * 20 + "b" * 216]:
            r = await self.put("/global/content/big", {"pattern": pattern, "actions": []})
            self.assertEqual(r.code, 200, r.body)
            r = await self.put("/global/override/big", {"actions": [], "conditions": [dict(cond, pattern=pattern)]})
            self.assertEqual(r.code, 200, r.body)

    async def test_defaults_changes_reach_account_data_and_evaluator(self) -> None:
        before = await self.hs.globals.next_position()
        compiled = await self.hs.push_rules.compiled("@alice:test")
        self.assertIs(await self.hs.push_rules.compiled("@alice:test"), compiled, "cached")
        event = {"type": "m.room.message", "sender": "@bob:test", "room_id": "!r:test",
                 "content": {"msgtype": "m.text", "body": "hi"}}
        result = evaluate(compiled, event, PushContext("@alice:test", member_count=3))
        assert result is not None
        self.assertEqual(result.rule_id, ".m.rule.message")

        waiting = self.hs.notifier.wait("@alice:test", [], 30)
        r = await self.put("/global/underride/.m.rule.message/actions",
                           {"actions": ["notify", {"set_tweak": "highlight"}]})
        self.assertEqual(r.code, 200)
        self.assertTrue(self.successResultOf(waiting))
        r = await self.put("/global/override/.m.rule.master/enabled", {"enabled": True})
        r = await self.request("GET", P + "/global/override/.m.rule.master", access_token=self.tok)
        self.assertTrue(r.json["enabled"])
        self.assertTrue(r.json["default"])

        changes = await self.hs.account_data.changes_since("@alice:test", before)
        self.assertEqual([e["type"] for e in changes.global_events], ["m.push_rules"])
        rules: dict[str, Any] = changes.global_events[0]["content"]["global"]
        self.assertTrue(rules["override"][0]["enabled"])
        self.assertEqual(rules["underride"][3]["actions"], ["notify", {"set_tweak": "highlight"}])

        compiled = await self.hs.push_rules.compiled("@alice:test")
        result = evaluate(compiled, event, PushContext("@alice:test", member_count=3))
        assert result is not None
        self.assertEqual((result.rule_id, result.notify), (".m.rule.master", False))
        await self.put("/global/override/.m.rule.master/enabled", {"enabled": False})
        result = evaluate(await self.hs.push_rules.compiled("@alice:test"), event,
                          PushContext("@alice:test", member_count=3))
        assert result is not None
        self.assertEqual((result.rule_id, result.highlight), (".m.rule.message", True))

    async def test_rules_are_per_user(self) -> None:
        bob = (await self.register("bob"))["access_token"]
        await self.put("/global/content/cake", {"pattern": "cake", "actions": ["notify"]})
        r = await self.request("GET", P + "/global/content/cake", access_token=bob)
        self.assertMatrixError(r, 404, "M_NOT_FOUND")
        r = await self.request("GET", P + "/global/override/.m.rule.invite_for_me", access_token=bob)
        self.assertEqual(r.json["conditions"][2]["pattern"], "@bob:test")
