"""
Rooms shared with a real Synapse on loopback (issue 12's interop
requirement): a Synapse user joins a room on our server and one of our
users joins a room on Synapse, in room versions 12 and 10; in both, messages,
a topic change, typing and a read receipt must reach the other side, each way.
Invites cross in both directions and are followed by a leave. Restricted
joins (room version 10) work both ways: each server authorises the other's
user, a member of its space, and the join carries both signatures.

Synapse takes 5-25 s to start, so one Synapse serves every test of the
module (started by the first test, stopped when the test process exits;
its log is C{server.log} in that test's directory under C{_trial_temp});
each test starts its own server of ours, whose name (C{localhost:<port>})
is new to that Synapse, and registers new Synapse users.
"""

from __future__ import annotations

import atexit
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.integration.federation import base_url, client_call, register, start_homeserver
from tests.integration.synapse import SynapseProcess, synapse_installed

V3 = "/_matrix/client/v3"
#: How long a change may take to reach the other server.
WAIT = 30.0

_synapse: SynapseProcess | None = None


def q(s: str) -> str:
    return quote(s, safe="")


def shared_synapse(workdir: str) -> SynapseProcess:
    """
    The module's Synapse, started on first use in C{workdir} (the first
    test's temporary directory, where its log stays; blocking: call it in
    a thread) and stopped when the process exits.
    """
    global _synapse
    if _synapse is None:
        if not synapse_installed():
            message = "Synapse is not installed; run `make synapse`"
            if os.environ.get("CI"):
                raise AssertionError(message)
            raise unittest.SkipTest(message)
        process = SynapseProcess(workdir)
        atexit.register(process.stop)
        process.start()
        _synapse = process
    return _synapse


@dataclass
class Side:
    """One user on one server, with that server's client API."""

    base: str
    user_id: str
    token: str
    #: The next incremental /sync (Synapse caches initial syncs a while).
    since: str | None = None
    #: What the syncs so far gave: ephemeral events per room, invites.
    ephemeral: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invites: set[str] = field(default_factory=set)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await client_call(self.base, method, path, body, self.token)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        code, answer = await self.call(method, path, body)
        assert code == 200, (method, path, code, answer)
        return answer

    async def sync(self) -> None:
        """One /sync (incremental after the first), remembering what it gave."""
        since = f"&since={q(self.since)}" if self.since else ""
        body = await self.ok("GET", f"{V3}/sync?timeout=0{since}")
        self.since = body["next_batch"]
        rooms = body.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            self.ephemeral.setdefault(room_id, []).extend(room.get("ephemeral", {}).get("events", []))
        self.invites.update(rooms.get("invite", {}))


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Call the async C{check} until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.3, lambda: None)


class SynapseRoomsTests(unittest.TestCase):
    timeout = 400

    async def _start(self) -> None:
        self.synapse = await deferToThread(shared_synapse, self.mktemp())
        self.hs = await start_homeserver(self)
        tag = secrets.token_hex(3)
        alice = await deferToThread(self.synapse.register, f"alice{tag}")
        self.syn = Side(self.synapse.base_url, alice["user_id"], alice["access_token"])
        bob, token = await register(self.hs, "bob")
        self.ours = Side(base_url(self.hs), bob, token)

    async def create_room(self, side: Side, version: str, **extra: Any) -> str:
        body = {
            "preset": "public_chat", "room_version": version,
            # Anyone joined may change the topic (a state change both ways).
            "power_level_content_override": {"events": {"m.room.topic": 0}},
            **extra,
        }
        return (await side.ok("POST", f"{V3}/createRoom", body))["room_id"]

    async def exchange(self, room: str, a: Side, b: Side) -> None:
        """Messages, topics, typing and receipts both ways between C{a} and C{b}."""
        for sender, reader in ((a, b), (b, a)):
            text = f"hello from {sender.user_id}"
            sent = await sender.ok("PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/{secrets.token_hex(4)}", {
                "msgtype": "m.text", "body": text,
            })
            event_id = sent["event_id"]
            await eventually(lambda: self.has_message(reader, room, event_id, text), f"{text} at {reader.user_id}")
            topic = f"topic by {sender.user_id}"
            await sender.ok("PUT", f"{V3}/rooms/{q(room)}/state/m.room.topic", {"topic": topic})
            await eventually(lambda: self.topic_is(reader, room, topic), f"{topic} at {reader.user_id}")
            await sender.ok("PUT", f"{V3}/rooms/{q(room)}/typing/{q(sender.user_id)}", {
                "typing": True, "timeout": 30000,
            })
            await eventually(
                lambda: self.typing(reader, room, sender.user_id), f"{sender.user_id} typing at {reader.user_id}"
            )
            # The reader reads the message: the sender sees the receipt.
            await reader.ok("POST", f"{V3}/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
            await eventually(
                lambda: self.receipt(sender, room, event_id, reader.user_id),
                f"{reader.user_id}'s receipt at {sender.user_id}",
            )

    async def has_message(self, side: Side, room: str, event_id: str, text: str) -> bool:
        code, body = await side.call("GET", f"{V3}/rooms/{q(room)}/messages?dir=b&limit=50")
        if code != 200:
            return False
        return any(e["event_id"] == event_id and e["content"].get("body") == text for e in body["chunk"])

    async def topic_is(self, side: Side, room: str, topic: str) -> bool:
        code, body = await side.call("GET", f"{V3}/rooms/{q(room)}/state/m.room.topic")
        return code == 200 and body.get("topic") == topic

    async def ephemeral(self, side: Side, room: str) -> list[dict[str, Any]]:
        await side.sync()
        return side.ephemeral.get(room, [])

    async def typing(self, side: Side, room: str, user_id: str) -> bool:
        return any(
            e["type"] == "m.typing" and user_id in e["content"]["user_ids"]
            for e in await self.ephemeral(side, room)
        )

    async def receipt(self, side: Side, room: str, event_id: str, user_id: str) -> bool:
        return any(
            e["type"] == "m.receipt" and user_id in e["content"].get(event_id, {}).get("m.read", {})
            for e in await self.ephemeral(side, room)
        )

    async def members(self, side: Side, room: str) -> dict[str, str]:
        body = await side.ok("GET", f"{V3}/rooms/{q(room)}/members")
        return {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}

    async def membership_is(self, side: Side, room: str, user_id: str, membership: str) -> bool:
        code, body = await side.call("GET", f"{V3}/rooms/{q(room)}/state/m.room.member/{q(user_id)}")
        return code == 200 and body.get("membership") == membership

    # -- a Synapse user joins our room

    async def synapse_joins_ours(self, version: str, by_alias: bool) -> None:
        await self._start()
        room = await self.create_room(self.ours, version, room_alias_name="meet")
        # History from before the join: Synapse backfills it from us.
        early = await self.ours.ok("PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/early", {
            "msgtype": "m.text", "body": "before you came",
        })
        if by_alias:
            target = q(f"#meet:{self.hs.server_name}")
        else:
            target = f"{q(room)}?server_name={q(self.hs.server_name)}"
        body = await self.syn.ok("POST", f"{V3}/join/{target}", {})
        self.assertEqual(body["room_id"], room)
        await eventually(
            lambda: self.membership_is(self.ours, room, self.syn.user_id, "join"), "the join at ours"
        )
        self.assertEqual(
            await self.members(self.syn, room), {self.syn.user_id: "join", self.ours.user_id: "join"}
        )
        await eventually(
            lambda: self.has_message(self.syn, room, early["event_id"], "before you came"), "history at Synapse"
        )
        await self.exchange(room, self.ours, self.syn)

    async def test_synapse_user_joins_our_v12_room(self) -> None:
        await self.synapse_joins_ours("12", by_alias=False)

    async def test_synapse_user_joins_our_v10_room_by_alias(self) -> None:
        await self.synapse_joins_ours("10", by_alias=True)

    # -- our user joins a Synapse room

    async def ours_joins_synapse(self, version: str) -> None:
        await self._start()
        room = await self.create_room(self.syn, version)
        body = await self.ours.ok("POST", f"{V3}/join/{q(room)}?via={q(self.synapse.server_name)}", {})
        self.assertEqual(body["room_id"], room)
        await eventually(
            lambda: self.membership_is(self.syn, room, self.ours.user_id, "join"), "the join at Synapse"
        )
        self.assertEqual(
            await self.members(self.ours, room), {self.syn.user_id: "join", self.ours.user_id: "join"}
        )
        await self.exchange(room, self.syn, self.ours)

    async def test_our_user_joins_synapse_v12_room(self) -> None:
        await self.ours_joins_synapse("12")

    async def test_our_user_joins_synapse_v10_room(self) -> None:
        await self.ours_joins_synapse("10")

    # -- invites both ways, then leaves

    async def invited(self, side: Side, room: str) -> bool:
        await side.sync()
        return room in side.invites

    async def test_invites_both_ways_and_leave(self) -> None:
        await self._start()
        for inviter, invitee, version in ((self.ours, self.syn, "12"), (self.syn, self.ours, "10")):
            room = await self.create_room(inviter, version, preset="private_chat")
            await inviter.ok("POST", f"{V3}/rooms/{q(room)}/invite", {"user_id": invitee.user_id})
            await eventually(lambda: self.invited(invitee, room), f"the invite at {invitee.user_id}")
            await invitee.ok("POST", f"{V3}/join/{q(room)}", {})
            await eventually(
                lambda: self.membership_is(inviter, room, invitee.user_id, "join"), "the join at the inviter"
            )
            sent = await invitee.ok("PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/m1", {
                "msgtype": "m.text", "body": "thanks",
            })
            await eventually(
                lambda: self.has_message(inviter, room, sent["event_id"], "thanks"), "the message at the inviter"
            )
            await invitee.ok("POST", f"{V3}/rooms/{q(room)}/leave", {})
            await eventually(
                lambda: self.membership_is(inviter, room, invitee.user_id, "leave"), "the leave at the inviter"
            )
        # A rejected invite, each way: the inviter sees the leave.
        for inviter, invitee in ((self.ours, self.syn), (self.syn, self.ours)):
            room = await self.create_room(inviter, "12", preset="private_chat")
            await inviter.ok("POST", f"{V3}/rooms/{q(room)}/invite", {"user_id": invitee.user_id})
            await eventually(lambda: self.invited(invitee, room), f"the invite at {invitee.user_id}")
            await invitee.ok("POST", f"{V3}/rooms/{q(room)}/leave", {})
            await eventually(
                lambda: self.membership_is(inviter, room, invitee.user_id, "leave"), "the rejection at the inviter"
            )

    # -- restricted joins both ways (room version 10: a room that lets the
    # members of a space join; the resident server authorises the join)

    async def restricted_room(self, side: Side, space: str) -> str:
        return await self.create_room(side, "10", preset="private_chat", initial_state=[{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]},
        }])

    async def restricted_join(self, resident: Side, joiner: Side, resident_server: str) -> None:
        """
        C{joiner} (of the other server) is in C{resident}'s space, not
        invited to its restricted room, and joins it: the join names
        C{resident} in C{join_authorised_via_users_server} and carries both
        servers' signatures on our side; messages then flow both ways.
        """
        space = await self.create_room(resident, "10")
        room = await self.restricted_room(resident, space)
        code, body = await joiner.call("POST", f"{V3}/join/{q(room)}?via={q(resident_server)}", {})
        self.assertEqual(code, 403, body)  # not in the space yet
        await joiner.ok("POST", f"{V3}/join/{q(space)}?via={q(resident_server)}", {})
        body = await joiner.ok("POST", f"{V3}/join/{q(room)}?via={q(resident_server)}", {})
        self.assertEqual(body["room_id"], room)
        await eventually(
            lambda: self.membership_is(resident, room, joiner.user_id, "join"), "the join at the resident"
        )
        for side in (resident, joiner):
            state = await side.ok("GET", f"{V3}/rooms/{q(room)}/state")
            (join,) = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == joiner.user_id]
            self.assertEqual(join["content"]["join_authorised_via_users_server"], resident.user_id)
        ours = await self.hs.event_store.current_state_event(room, "m.room.member", joiner.user_id)
        self.assertEqual(set(ours.pdu["signatures"]), {self.hs.server_name, self.synapse.server_name})
        await self.exchange(room, resident, joiner)

    async def test_synapse_user_joins_our_restricted_room(self) -> None:
        await self._start()
        await self.restricted_join(self.ours, self.syn, self.hs.server_name)

    async def test_our_user_joins_synapse_restricted_room(self) -> None:
        await self._start()
        await self.restricted_join(self.syn, self.ours, self.synapse.server_name)
