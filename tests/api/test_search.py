"""POST /search (handlers/search.py, storage/stores/search.py)."""

from __future__ import annotations

from typing import Any

from conduit_tw.storage.stores.search import tokenise
from tests.api.rooms import V3, RoomsTestCase, q


class TokeniseTests(RoomsTestCase):
    def test_unicode_casefold(self) -> None:
        self.assertEqual(
            tokenise("Héllo, WÖRLD! Straße snake_case 日本語 x2"),
            ["héllo", "wörld", "strasse", "snake", "case", "日本語", "x2"],
        )


class SearchTestCase(RoomsTestCase):
    async def search(
        self, token: str, criteria: dict[str, Any], expect: int = 200, next_batch: str | None = None
    ) -> Any:
        url = V3 + "/search"
        if next_batch is not None:
            url += "?next_batch=" + q(next_batch)
        r = await self.request(
            "POST", url, {"search_categories": {"room_events": criteria}}, access_token=token
        )
        self.assertEqual(r.code, expect, r.body)
        return r.json["search_categories"]["room_events"] if expect == 200 else r.json

    def ids(self, body: Any) -> list[str]:
        return [r["result"]["event_id"] for r in body["results"]]

    async def say(self, token: str, room: str, text: str) -> str:
        return await self.send_ok(token, room, {"msgtype": "m.text", "body": text})


class SearchTests(SearchTestCase):
    async def test_terms_keys_order_and_highlights(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at, name="Cake lovers", topic="All about CAKE")
        e1 = await self.say(at, room, "I like chocolate cake")
        e2 = await self.say(at, room, "cake cake cake, and more cake")
        await self.say(at, room, "nothing to see")
        e3 = await self.say(at, room, "Chocolate cakes are the best")
        body = await self.search(at, {"search_term": "cake", "keys": ["content.body"]})
        self.assertEqual(body["count"], 3)
        self.assertEqual(self.ids(body)[0], e2)  # most occurrences
        self.assertEqual(set(self.ids(body)), {e1, e2, e3})
        self.assertIn("cakes", body["highlights"])
        self.assertIn("cake", body["highlights"])
        body = await self.search(at, {"search_term": "cake", "keys": ["content.body"], "order_by": "recent"})
        self.assertEqual(self.ids(body), [e3, e2, e1])
        body = await self.search(at, {"search_term": "CHOCOLATE cake", "order_by": "recent"})
        self.assertEqual(self.ids(body), [e3, e1])
        body = await self.search(at, {"search_term": "cake", "keys": ["content.name"]})
        self.assertEqual([r["result"]["type"] for r in body["results"]], ["m.room.name"])
        body = await self.search(at, {"search_term": "cake", "keys": ["content.topic"]})
        self.assertEqual([r["result"]["type"] for r in body["results"]], ["m.room.topic"])
        body = await self.search(at, {"search_term": "zebra"})
        self.assertEqual((body["count"], body["results"]), (0, []))

    async def test_filter_pagination_groups_state_context(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room1 = await self.create_room(at, preset="public_chat")
        room2 = await self.create_room(at, preset="public_chat")
        await self.join(bt, room1)
        r = await self.request(
            "PUT", f"{V3}/profile/{q(bob)}/displayname", {"displayname": "Bobby"}, access_token=bt
        )
        self.assertEqual(r.code, 200, r.body)
        sent = []
        for i in range(5):
            sent.append(await self.say(at, room1, f"apple {i}"))
            sent.append(await self.say(bt, room1, f"apple from bob {i}"))
        other = await self.say(at, room2, "apple elsewhere")
        body = await self.search(at, {"search_term": "apple", "filter": {"senders": [bob]}})
        self.assertEqual(body["count"], 5)
        body = await self.search(at, {"search_term": "apple", "filter": {"rooms": [room2]}})
        self.assertEqual(self.ids(body), [other])
        body = await self.search(at, {"search_term": "apple", "filter": {"not_rooms": [room1]}})
        self.assertEqual(self.ids(body), [other])
        # pagination
        seen: list[str] = []
        nb = None
        pages = 0
        while True:
            body = await self.search(
                at, {"search_term": "apple", "order_by": "recent", "filter": {"limit": 4}},
                next_batch=nb,
            )
            seen += self.ids(body)
            pages += 1
            nb = body.get("next_batch")
            if nb is None:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [other] + list(reversed(sent)))
        # groups, state and context
        body = await self.search(at, {
            "search_term": "apple", "order_by": "recent", "include_state": True,
            "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
            "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
            "filter": {"limit": 3},
        })
        groups = body["groups"]
        self.assertEqual(groups["room_id"][room2]["results"], [other])
        self.assertEqual(groups["room_id"][room1]["results"], [sent[9], sent[8]])
        self.assertEqual(groups["sender"][bob]["results"], [sent[9]])
        self.assertEqual(set(body["state"]), {room1, room2})
        self.assertIn("m.room.create", [e["type"] for e in body["state"][room1]])
        ctx = body["results"][2]["context"]  # sent[8]
        self.assertEqual([e["event_id"] for e in ctx["events_before"]], [sent[7]])
        self.assertEqual([e["event_id"] for e in ctx["events_after"]], [sent[9]])
        self.assertEqual(body["results"][1]["context"]["events_after"], [])
        self.assertEqual(ctx["profile_info"][bob], {"displayname": "Bobby"})
        self.assertIn("start", ctx)
        self.assertIn("end", ctx)

    async def test_redaction_removes_from_index(self) -> None:
        alice, at = await self.user("alice")
        room = await self.create_room(at)
        e1 = await self.say(at, room, "secret plans")
        e2 = await self.say(at, room, "more plans")
        r = await self.request(
            "PUT", f"{V3}/rooms/{q(room)}/redact/{q(e1)}/{self.next_txn()}", {}, access_token=at
        )
        self.assertEqual(r.code, 200, r.body)
        body = await self.search(at, {"search_term": "plans"})
        self.assertEqual(self.ids(body), [e2])
        body = await self.search(at, {"search_term": "secret"})
        self.assertEqual(body["count"], 0)

    async def test_refusals(self) -> None:
        alice, at = await self.user("alice")
        r = await self.request("POST", V3 + "/search", {"search_categories": {}})
        self.assertEqual(r.code, 401)
        for bad in (
            {"search_term": 5},
            {},
            {"search_term": "x", "keys": ["content.sender"]},
            {"search_term": "x", "keys": []},
            {"search_term": "x", "order_by": "best"},
            {"search_term": "x", "filter": {"senders": "nope"}},
            {"search_term": "x", "event_context": {"before_limit": -1}},
            {"search_term": "x", "event_context": "yes"},
            {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}},
            {"search_term": "x", "include_state": "yes"},
        ):
            body = await self.search(at, bad, expect=400)
            self.assertIn(body["errcode"], ("M_BAD_JSON", "M_MISSING_PARAM", "M_INVALID_PARAM"), bad)
        body = await self.search(at, {"search_term": "x"}, expect=400, next_batch="abc")
        self.assertEqual(body["errcode"], "M_INVALID_PARAM")
        r = await self.request("POST", V3 + "/search", {"search_categories": 3}, access_token=at)
        self.assertEqual(r.code, 400)
        r = await self.request("POST", V3 + "/search", {"search_categories": {}}, access_token=at)
        self.assertEqual((r.code, r.json), (200, {"search_categories": {}}))


class SearchVisibilityTests(SearchTestCase):
    async def test_joined_visibility_and_leaving(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        r = await self.put_state(at, room, "m.room.history_visibility", {"history_visibility": "joined"})
        self.assertEqual(r.code, 200, r.body)
        await self.say(at, room, "banana before")
        await self.join(bt, room)
        during = await self.say(at, room, "banana during")
        r = await self.member_action(bt, room, "leave")
        self.assertEqual(r.code, 200, r.body)
        await self.say(at, room, "banana after")
        body = await self.search(bt, {"search_term": "banana", "order_by": "recent"})
        self.assertEqual(self.ids(body), [during])
        self.assertEqual(body["count"], 1)
        body = await self.search(at, {"search_term": "banana"})
        self.assertEqual(body["count"], 3)

    async def test_strangers_find_nothing(self) -> None:
        alice, at = await self.user("alice")
        carol, ct = await self.user("carol")
        room = await self.create_room(at, preset="public_chat")
        await self.say(at, room, "private words")
        body = await self.search(ct, {"search_term": "private"})
        self.assertEqual(body["count"], 0)
        # Explicitly asking for the room does not help.
        body = await self.search(ct, {"search_term": "private", "filter": {"rooms": [room]}})
        self.assertEqual(body["count"], 0)

    async def test_shared_history_after_join(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        e1 = await self.say(at, room, "kiwi early")  # shared: visible once bob joins
        await self.join(bt, room)
        body = await self.search(bt, {"search_term": "kiwi"})
        self.assertEqual(self.ids(body), [e1])


class SearchLMDBTests(SearchTests):
    """The same index and queries on the LMDB backend (generic trees only)."""

    backend = "lmdb"
