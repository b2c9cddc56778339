"""
History of a room joined over federation, between two of our servers
(server-server-api "Backfilling and retrieving missing events"; issue 12:
"outliers never served as timeline events", "backfilled events visible in
/messages").

After Bob's server B joins Alice's room on A, B holds the room's state and
auth chain as outliers: they are not timeline events for B's clients
(C{/event}, C{/context}, the C{/sync} timeline), only state. Paginating
C{/messages} backwards backfills the history from A; the events B held as
outliers then take their place in the timeline too, so B's history is
A's, event for event.
"""

from __future__ import annotations

from typing import Any

from tests.api.rooms import V3, q
from tests.integration.test_federation_membership import Server
from tests.integration.test_federation_rooms import TwoServers


class HistoryTests(TwoServers):

    async def all_messages(self, server: Server, token: str, room: str) -> list[dict[str, Any]]:
        """Every event of C{/messages}, paginating backwards to the start, oldest first."""
        events: list[dict[str, Any]] = []
        token_from: str | None = None
        for _ in range(30):
            page = await self.messages(server, token, room, limit=7, **({"from": token_from} if token_from else {}))
            events[:0] = list(reversed(page["chunk"]))
            if "end" not in page:
                return events
            token_from = page["end"]
        self.fail("/messages never ended")

    async def test_outliers_then_backfilled_history(self) -> None:
        room = await self.create_room(preset="public_chat", room_alias_name="story", name="Story")
        r = await self.a.request(
            "PUT", V3 + "/rooms/%s/state/m.room.history_visibility/" % q(room),
            {"history_visibility": "shared"}, self.at,
        )
        self.assertEqual(r.code, 200, r.body)
        for i in range(3):
            await self.send(self.a, self.at, room, "before %d" % i)
        self.assertEqual(await self.join_by_alias("#story:" + self.a.name), room)

        create = await self.b.hs.event_store.current_state_event(room, "m.room.create", "")
        name = await self.b.hs.event_store.current_state_event(room, "m.room.name", "")
        # Outliers on B: state, not timeline.
        for event in (create, name):
            self.assertFalse(event.in_timeline)
            r = await self.b.request("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(event.event_id)), token=self.bt)
            self.assertEqual(r.code, 404, r.body)
            r = await self.b.request("GET", V3 + "/rooms/%s/context/%s" % (q(room), q(event.event_id)), token=self.bt)
            self.assertEqual(r.code, 404, r.body)
        synced = (await self.b.sync(self.bt))["rooms"]["join"][room]
        timeline_ids = [e["event_id"] for e in synced["timeline"]["events"]]
        self.assertNotIn(create.event_id, timeline_ids)
        self.assertNotIn(name.event_id, timeline_ids)
        self.assertIn(name.event_id, [e["event_id"] for e in synced["state"]["events"]] + timeline_ids)

        # Backfilled: B's history is A's, the room's creation included.
        on_a = await self.all_messages(self.a, self.at, room)
        on_b = await self.all_messages(self.b, self.bt, room)
        self.assertEqual(on_a[0]["type"], "m.room.create")
        self.assertEqual([e["event_id"] for e in on_b], [e["event_id"] for e in on_a])
        self.assertEqual([e.get("content", {}).get("body") for e in on_b if e["type"] == "m.room.message"],
                         ["before 0", "before 1", "before 2"])
        # Now timeline events on B as well.
        for event in (create, name):
            r = await self.b.request("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(event.event_id)), token=self.bt)
            self.assertEqual(r.code, 200, r.body)
            self.assertEqual(r.json["content"], event.content)
        r = await self.b.request("GET", V3 + "/rooms/%s/context/%s" % (q(room), q(name.event_id)), token=self.bt)
        self.assertEqual(r.code, 200, r.body)
        # The room's state on B is unchanged by the backfill.
        self.assertEqual(
            (await self.b.hs.event_store.current_state_event(room, "m.room.name", "")).event_id, name.event_id
        )
