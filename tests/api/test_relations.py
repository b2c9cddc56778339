"""
/relations, /threads and the bundled aggregations (handlers/relations.py,
storage/stores/relations.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.api.rooms import RoomsTestCase, q

V1 = "/_matrix/client/v1"


def edit(original: str, body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text", "body": "* " + body,
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }


def thread(root: str, body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text", "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }


def reaction(target: str, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


class RelationsTestCase(RoomsTestCase):
    async def relations(
        self, token: str, room: str, event_id: str, *path: str, expect: int = 200, **params: Any
    ) -> Any:
        url = f"{V1}/rooms/{q(room)}/relations/{q(event_id)}"
        for p in path:
            url += "/" + q(p)
        if params:
            url += "?" + urlencode(params)
        r = await self.request("GET", url, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def threads(self, token: str, room: str, expect: int = 200, **params: Any) -> Any:
        url = f"{V1}/rooms/{q(room)}/threads"
        if params:
            url += "?" + urlencode(params)
        r = await self.request("GET", url, access_token=token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def event_json(self, token: str, room: str, event_id: str) -> Any:
        r = await self.get_event(token, room, event_id)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def setup_room(self) -> tuple[str, str, str, str, str]:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        r = await self.join(bt, room)
        self.assertEqual(r.code, 200, r.body)
        return alice, at, bob, bt, room


class RelationsEndpointTests(RelationsTestCase):
    async def test_lists_children_in_both_directions(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        r1 = await self.send_ok(bt, room, reaction(root, "👍"), event_type="m.reaction")
        t1 = await self.send_ok(bt, room, thread(root, "one"))
        e1 = await self.send_ok(at, room, edit(root, "root!"))
        await self.send_ok(at, room, {"msgtype": "m.text", "body": "unrelated"})
        body = await self.relations(at, room, root)
        self.assertEqual([e["event_id"] for e in body["chunk"]], [e1, t1, r1])
        self.assertNotIn("next_batch", body)
        self.assertNotIn("recursion_depth", body)
        body = await self.relations(at, room, root, dir="f")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [r1, t1, e1])
        body = await self.relations(at, room, root, "m.thread")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [t1])
        body = await self.relations(at, room, root, "m.annotation", "m.reaction")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [r1])
        body = await self.relations(at, room, root, "m.annotation", "m.room.message")
        self.assertEqual(body["chunk"], [])

    async def test_pagination(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        replies = [await self.send_ok(bt, room, thread(root, str(i))) for i in range(7)]
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 3}
        pages = 0
        while True:
            body = await self.relations(at, room, root, "m.thread", **params)
            seen += [e["event_id"] for e in body["chunk"]]
            pages += 1
            if "next_batch" not in body:
                break
            params["from"] = body["next_batch"]
        self.assertEqual(seen, list(reversed(replies)))
        self.assertEqual(pages, 3)
        # forward, with "to" stopping the walk
        body = await self.relations(at, room, root, dir="f", limit=2)
        self.assertEqual([e["event_id"] for e in body["chunk"]], replies[:2])
        body2 = await self.relations(at, room, root, dir="f", limit=10, **{"from": body["next_batch"]})
        self.assertEqual([e["event_id"] for e in body2["chunk"]], replies[2:])
        self.assertEqual(body2["prev_batch"], body["next_batch"])

    async def test_recurse(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        t1 = await self.send_ok(bt, room, thread(root, "reply"))
        r1 = await self.send_ok(at, room, reaction(t1, "x"), event_type="m.reaction")
        e1 = await self.send_ok(bt, room, edit(t1, "reply!"))
        body = await self.relations(at, room, root, recurse="true")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [e1, r1, t1])
        self.assertEqual(body["recursion_depth"], 3)
        body = await self.relations(at, room, root, "m.annotation", recurse="true")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [r1])
        body = await self.relations(at, room, root, recurse="false")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [t1])
        self.assertEqual(body["recursion_depth"], 1)

    async def test_refusals(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        carol, ct = await self.user("carol")
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        body = await self.relations(ct, room, root, expect=403)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        body = await self.relations(at, room, "$nope", expect=404)
        self.assertEqual(body["errcode"], "M_NOT_FOUND")
        other = await self.create_room(at)
        body = await self.relations(at, other, root, expect=404)
        await self.relations(at, room, root, dir="x", expect=400)
        await self.relations(at, room, root, recurse="maybe", expect=400)
        await self.relations(at, room, root, expect=400, **{"from": "bogus"})
        r = await self.request("GET", f"{V1}/rooms/{q(room)}/relations/{q(root)}")
        self.assertEqual(r.code, 401)

    async def test_history_visibility(self) -> None:
        alice, at = await self.user("alice")
        bob, bt = await self.user("bob")
        room = await self.create_room(at, preset="public_chat")
        r = await self.put_state(at, room, "m.room.history_visibility", {"history_visibility": "joined"})
        self.assertEqual(r.code, 200, r.body)
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        before = await self.send_ok(at, room, thread(root, "before bob"))
        await self.join(bt, room)
        after = await self.send_ok(at, room, thread(root, "after bob"))
        # The parent is from before bob joined: 404.
        body = await self.relations(bt, room, root, expect=404)
        self.assertEqual(body["errcode"], "M_NOT_FOUND")
        body = await self.relations(at, room, root)
        self.assertEqual([e["event_id"] for e in body["chunk"]], [after, before])
        # A child bob may not see is not bundled either.
        ev = await self.event_json(bt, room, after)
        self.assertEqual(ev["event_id"], after)


class AggregationTests(RelationsTestCase):
    async def test_latest_valid_edit(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "cake"})
        e1 = await self.send_ok(at, room, edit(root, "chocolate cake"))
        self.clock.advance(1)
        e2 = await self.send_ok(at, room, edit(root, "lemon cake"))
        # Invalid edits: another sender, another type, no m.new_content.
        self.clock.advance(1)
        await self.send_ok(bt, room, edit(root, "bob's cake"))
        self.clock.advance(1)
        await self.send_ok(at, room, edit(root, "typed"), event_type="org.example.other")
        self.clock.advance(1)
        bad = edit(root, "x")
        del bad["m.new_content"]
        await self.send_ok(at, room, bad)
        ev = await self.event_json(bt, room, root)
        self.assertEqual(ev["content"]["body"], "cake")  # content left intact
        replace = ev["unsigned"]["m.relations"]["m.replace"]
        self.assertEqual(replace["event_id"], e2)
        self.assertEqual(replace["content"]["m.new_content"]["body"], "lemon cake")
        self.assertNotEqual(e1, e2)
        # An edit of an edit is not valid: the first edit has no m.replace bundle.
        await self.send_ok(at, room, edit(e2, "again"))
        ev = await self.event_json(at, room, e2)
        self.assertNotIn("m.replace", ev["unsigned"].get("m.relations", {}))
        # The same in /messages.
        r = await self.request(
            "GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=50", access_token=bt
        )
        by_id = {e["event_id"]: e for e in r.json["chunk"]}
        self.assertEqual(by_id[root]["unsigned"]["m.relations"]["m.replace"]["event_id"], e2)

    async def test_redacted_edit_and_original(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "cake"})
        e1 = await self.send_ok(at, room, edit(root, "one"))
        self.clock.advance(1)
        e2 = await self.send_ok(at, room, edit(root, "two"))
        r = await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(e2)}/{self.next_txn()}", {},
            access_token=at,
        )
        self.assertEqual(r.code, 200, r.body)
        ev = await self.event_json(bt, room, root)
        self.assertEqual(ev["unsigned"]["m.relations"]["m.replace"]["event_id"], e1)
        body = await self.relations(at, room, root, "m.replace")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [e1])
        r = await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(root)}/{self.next_txn()}", {},
            access_token=at,
        )
        self.assertEqual(r.code, 200, r.body)
        ev = await self.event_json(bt, room, root)
        self.assertNotIn("m.replace", ev["unsigned"].get("m.relations", {}))

    async def test_thread_and_reference(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        carol, ct = await self.user("carol")
        await self.join(ct, room)
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        await self.send_ok(bt, room, thread(root, "one"))
        t2 = await self.send_ok(bt, room, thread(root, "two"))
        te = await self.send_ok(bt, room, edit(t2, "two!"))
        ref = await self.send_ok(
            ct, room, {"msgtype": "m.text", "body": "see",
                       "m.relates_to": {"rel_type": "m.reference", "event_id": root}},
        )
        for token, participated in ((at, True), (bt, True), (ct, False)):
            ev = await self.event_json(token, room, root)
            rel = ev["unsigned"]["m.relations"]
            self.assertEqual(rel["m.thread"]["count"], 2)
            self.assertEqual(rel["m.thread"]["latest_event"]["event_id"], t2)
            self.assertEqual(rel["m.thread"]["current_user_participated"], participated)
            latest_rel = rel["m.thread"]["latest_event"]["unsigned"]["m.relations"]
            self.assertEqual(latest_rel["m.replace"]["event_id"], te)
            self.assertEqual(rel["m.reference"], {"chunk": [{"event_id": ref}]})
        # Redacting the latest reply moves the summary back.
        r = await self.request(
            "PUT", f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(t2)}/{self.next_txn()}", {},
            access_token=bt,
        )
        self.assertEqual(r.code, 200, r.body)
        ev = await self.event_json(at, room, root)
        self.assertEqual(ev["unsigned"]["m.relations"]["m.thread"]["count"], 1)

    async def test_thread_from_related_event_refused(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        t1 = await self.send_ok(bt, room, thread(root, "one"))
        r = await self.send(bt, room, thread(t1, "nested"))
        self.assertEqual(r.code, 400, r.body)
        self.assertEqual(r.json["errcode"], "M_UNKNOWN")
        r = await self.send(bt, room, thread("$unknown", "nowhere"))
        self.assertEqual(r.code, 400, r.body)

    async def test_sync_bundles(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        root = await self.send_ok(at, room, {"msgtype": "m.text", "body": "root"})
        e1 = await self.send_ok(at, room, edit(root, "root!"))
        r = await self.request("GET", "/_matrix/client/v3/sync", access_token=bt)
        self.assertEqual(r.code, 200, r.body)
        timeline = r.json["rooms"]["join"][room]["timeline"]["events"]
        by_id = {e["event_id"]: e for e in timeline}
        self.assertEqual(by_id[root]["unsigned"]["m.relations"]["m.replace"]["event_id"], e1)


class ThreadsTests(RelationsTestCase):
    async def test_list_by_activity_and_participation(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        roots = [await self.send_ok(at, room, {"msgtype": "m.text", "body": f"r{i}"}) for i in range(4)]
        await self.send_ok(bt, room, thread(roots[0], "a"))
        await self.send_ok(at, room, thread(roots[1], "b"))
        await self.send_ok(at, room, thread(roots[2], "c"))
        await self.send_ok(bt, room, thread(roots[0], "d"))  # roots[0] is now the newest
        body = await self.threads(at, room)
        self.assertEqual([e["event_id"] for e in body["chunk"]], [roots[0], roots[2], roots[1]])
        self.assertNotIn("next_batch", body)
        self.assertEqual(body["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"], 2)
        body = await self.threads(bt, room, include="participated")
        self.assertEqual([e["event_id"] for e in body["chunk"]], [roots[0]])
        # pagination
        body = await self.threads(at, room, limit=2)
        self.assertEqual([e["event_id"] for e in body["chunk"]], [roots[0], roots[2]])
        body = await self.threads(at, room, limit=2, **{"from": body["next_batch"]})
        self.assertEqual([e["event_id"] for e in body["chunk"]], [roots[1]])
        self.assertNotIn("next_batch", body)

    async def test_refusals(self) -> None:
        alice, at, bob, bt, room = await self.setup_room()
        carol, ct = await self.user("carol")
        body = await self.threads(ct, room, expect=403)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        await self.threads(at, room, include="mine", expect=400)
        await self.threads(at, room, expect=400, **{"from": "zzz"})


class AggregationLMDBTests(AggregationTests):
    """The relation indexes on the LMDB backend."""

    backend = "lmdb"
