"""
Tests for L{conduit_tw.events.auth_rules}: each rule allowed and refused,
in the room versions where it differs.
"""

from __future__ import annotations

import math
from typing import Any

from nacl.signing import SigningKey
from signedjson.key import get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64
from twisted.trial import unittest

from conduit_tw.events.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events_selection,
    creators,
    get_named_level,
    get_send_level,
    get_user_power_level,
    is_valid_user_id,
    parse_power_level,
)
from conduit_tw.events.event import Event
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.events.dag import ALICE, BOB, CHARLIE, DAVE, Room

V = {int(k): v for k, v in KNOWN_ROOM_VERSIONS.items()}
ALL = [V[i] for i in range(1, 13)]
M = "m.room.member"


def make_room(
    version: RoomVersion,
    users: dict[str, int] | None = None,
    join_rule: str | None = "public",
    members: dict[str, str] | None = None,
    power_levels: bool = True,
    **pl: Any,
) -> Room:
    """
    A room where Alice created and joined, then (unless disabled) power
    levels and join rules, then the given memberships (unchecked).
    """
    room = Room(version)
    room.join(ALICE)
    if power_levels:
        levels = dict(users if users is not None else {BOB: 50})
        if not version.privileged_creators:
            levels.setdefault(ALICE, 100)
        room.send("m.room.power_levels", ALICE, "", {"users": levels, **pl})
    if join_rule is not None:
        room.send("m.room.join_rules", ALICE, "", {"join_rule": join_rule})
    for user, membership in (members if members is not None else {BOB: "join"}).items():
        room.send(M, user, user, {"membership": membership}, check=False)
    return room


def attempt(room: Room, etype: str, sender: str, state_key: str | None = None,
            content: dict[str, Any] | None = None, **kw: Any) -> Event:
    """Build an event on the room's current state (not checked)."""
    return room.add(room.state, [room.last], etype, sender, state_key, content, check=False, **kw)


def state_of(room: Room) -> dict[tuple[str, str], Event]:
    return {k: room.events[v] for k, v in room.state.items()}


class AuthCase(unittest.TestCase):
    def allowed(self, room: Room, *args: Any, **kw: Any) -> None:
        event = attempt(room, *args, **kw)
        try:
            check_auth(event, state_of(room))
        except AuthError as e:
            self.fail("refused in v%s: %s" % (room.version.identifier, e))

    def refused(self, room: Room, *args: Any, **kw: Any) -> None:
        event = attempt(room, *args, **kw)
        self.assertRaises(AuthError, check_auth, event, state_of(room))


class CreateTests(AuthCase):
    def _create(self, version: RoomVersion, content: dict[str, Any], **pdu: Any) -> Event:
        base: dict[str, Any] = {
            "type": "m.room.create", "sender": ALICE, "state_key": "",
            "content": content, "prev_events": [], "auth_events": [], "depth": 1,
        }
        if not version.room_id_from_create_event:
            base["room_id"] = "!r:a.example"
        base.update(pdu)
        return Event(base, "$c", version)

    def _ok(self, version: RoomVersion) -> dict[str, Any]:
        return {} if version.implicit_room_creator else {"creator": ALICE}

    def test_allowed(self) -> None:
        for v in ALL:
            check_auth(self._create(v, self._ok(v)), {})

    def test_prev_events(self) -> None:
        for v in ALL:
            ev = self._create(v, self._ok(v), prev_events=["$x"] if not v.event_id_in_event else [["$x:a", {}]])
            self.assertRaises(AuthError, check_auth, ev, {})

    def test_room_id_domain(self) -> None:
        for v in ALL[:11]:
            self.assertRaises(AuthError, check_auth, self._create(v, self._ok(v), room_id="!r:b.example"), {})

    def test_v12_room_id_present(self) -> None:
        self.assertRaises(AuthError, check_auth, self._create(V[12], {}, room_id="!r:a.example"), {})

    def test_room_version(self) -> None:
        for v in ALL:
            check_auth(self._create(v, {**self._ok(v), "room_version": "9"}), {})
            self.assertRaises(AuthError, check_auth, self._create(v, {**self._ok(v), "room_version": "99"}), {})

    def test_creator_required_before_v11(self) -> None:
        for v in ALL:
            ev = self._create(v, {})
            if v.implicit_room_creator:
                check_auth(ev, {})
            else:
                self.assertRaises(AuthError, check_auth, ev, {})

    def test_additional_creators(self) -> None:
        check_auth(self._create(V[12], {"additional_creators": [BOB]}), {})
        for bad in ("@bob:b", ["bob"], [1], [BOB, "@x"]):
            self.assertRaises(AuthError, check_auth, self._create(V[12], {"additional_creators": bad}), {})
        # Not a rule before v12.
        check_auth(self._create(V[11], {"additional_creators": "junk"}), {})


class RoomAndFederationTests(AuthCase):
    def test_v12_room_id_must_name_create_event(self) -> None:
        room = make_room(V[12])
        self.allowed(room, "m.room.message", BOB, None, {})
        self.refused(room, "m.room.message", BOB, None, {}, extra={"room_id": "!other"})
        room.create.rejected = True
        self.refused(room, "m.room.message", BOB, None, {})

    def test_no_create_event(self) -> None:
        room = make_room(V[10])
        ev = attempt(room, "m.room.message", BOB, None, {})
        st = state_of(room)
        del st[("m.room.create", "")]
        self.assertRaises(AuthError, check_auth, ev, st)

    def test_m_federate(self) -> None:
        for v in (V[1], V[10], V[12]):
            room = Room(v)
            content = room.create.pdu["content"]
            content["m.federate"] = False
            room.join(ALICE)
            room.send("m.room.join_rules", ALICE, "", {"join_rule": "public"})
            self.refused(room, M, BOB, BOB, {"membership": "join"})
            self.allowed(room, M, "@eve:a.example", "@eve:a.example", {"membership": "join"})


class AliasesTests(AuthCase):
    def test_v1_to_v5_special_case(self) -> None:
        for v in ALL[:5]:
            room = make_room(v, members={})
            # Bob is not even in the room: the server may set its aliases.
            self.allowed(room, "m.room.aliases", BOB, "b.example", {"aliases": []})
            self.refused(room, "m.room.aliases", BOB, "a.example", {"aliases": []})

    def test_v6_normal_rules(self) -> None:
        for v in ALL[5:]:
            room = make_room(v, members={})
            self.refused(room, "m.room.aliases", BOB, "b.example", {"aliases": []})
            room = make_room(v, members={BOB: "join"}, state_default=50)
            self.allowed(room, "m.room.aliases", BOB, "b.example", {"aliases": []})
            room = make_room(v, users={BOB: 0}, members={BOB: "join"})
            self.refused(room, "m.room.aliases", BOB, "b.example", {"aliases": []})


class JoinTests(AuthCase):
    def test_creator_first_join(self) -> None:
        for v in ALL:
            room = Room(v)
            self.allowed(room, M, ALICE, ALICE, {"membership": "join"})
            self.refused(room, M, BOB, BOB, {"membership": "join"})

    def test_v11_creator_is_sender(self) -> None:
        for v in (V[10], V[11]):
            room = Room(v, creator=ALICE)
            room.create.pdu["content"]["creator"] = BOB
            if v.implicit_room_creator:
                self.allowed(room, M, ALICE, ALICE, {"membership": "join"})
                self.refused(room, M, BOB, BOB, {"membership": "join"})
            else:
                self.allowed(room, M, BOB, BOB, {"membership": "join"})
                self.refused(room, M, ALICE, ALICE, {"membership": "join"})

    def test_public(self) -> None:
        for v in ALL:
            room = make_room(v, members={})
            self.allowed(room, M, BOB, BOB, {"membership": "join"})
            self.refused(room, M, ALICE, BOB, {"membership": "join"})

    def test_banned(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "ban"})
            self.refused(room, M, BOB, BOB, {"membership": "join"})

    def test_invite_rule(self) -> None:
        for v in ALL:
            room = make_room(v, join_rule="invite", members={BOB: "invite"})
            self.allowed(room, M, BOB, BOB, {"membership": "join"})
            self.refused(room, M, CHARLIE, CHARLIE, {"membership": "join"})

    def test_no_join_rules_is_invite(self) -> None:
        room = make_room(V[10], join_rule=None, members={BOB: "invite"})
        self.allowed(room, M, BOB, BOB, {"membership": "join"})
        self.refused(room, M, CHARLIE, CHARLIE, {"membership": "join"})

    def test_knock_rule(self) -> None:
        for v in ALL:
            room = make_room(v, join_rule="knock", members={BOB: "invite"})
            if v.knocking:
                self.allowed(room, M, BOB, BOB, {"membership": "join"})
            else:
                self.refused(room, M, BOB, BOB, {"membership": "join"})
            self.refused(room, M, CHARLIE, CHARLIE, {"membership": "join"})

    def _restricted(self, v: RoomVersion, rule: str, authoriser: str = ALICE, **kw: Any) -> tuple[Room, dict, dict]:
        room = make_room(v, join_rule=rule, **kw)
        content = {"membership": "join", "join_authorised_via_users_server": authoriser}
        server = authoriser.split(":", 1)[1]
        sigs = {"signatures": {server: {"ed25519:k": "sig"}, "c.example": {"ed25519:k": "sig"}}}
        return room, content, sigs

    def test_restricted(self) -> None:
        for v in ALL:
            room, content, sigs = self._restricted(v, "restricted")
            if v.restricted_joins:
                self.allowed(room, M, CHARLIE, CHARLIE, content, extra=sigs)
                # Without a signature from the authorising server.
                self.refused(room, M, CHARLIE, CHARLIE, content)
                # Without an authorising user.
                self.refused(room, M, CHARLIE, CHARLIE, {"membership": "join"})
            else:
                self.refused(room, M, CHARLIE, CHARLIE, content, extra=sigs)

    def test_restricted_invited_needs_no_authoriser(self) -> None:
        room = make_room(V[9], join_rule="restricted", members={CHARLIE: "invite"})
        self.allowed(room, M, CHARLIE, CHARLIE, {"membership": "join"})

    def test_restricted_authoriser_must_be_joined_with_invite_power(self) -> None:
        v = V[9]
        room, content, sigs = self._restricted(v, "restricted", authoriser=BOB, members={BOB: "leave"})
        self.refused(room, M, CHARLIE, CHARLIE, content, extra=sigs)
        room, content, sigs = self._restricted(v, "restricted", authoriser=BOB, invite=60)
        self.refused(room, M, CHARLIE, CHARLIE, content, extra=sigs)
        room, content, sigs = self._restricted(v, "restricted", authoriser=BOB, invite=50)
        self.allowed(room, M, CHARLIE, CHARLIE, content, extra=sigs)

    def test_knock_restricted(self) -> None:
        for v in ALL:
            room, content, sigs = self._restricted(v, "knock_restricted")
            if v.knock_restricted:
                self.allowed(room, M, CHARLIE, CHARLIE, content, extra=sigs)
            else:
                self.refused(room, M, CHARLIE, CHARLIE, content, extra=sigs)
            room = make_room(v, join_rule="knock_restricted", members={CHARLIE: "invite"})
            if v.knock_restricted:
                self.allowed(room, M, CHARLIE, CHARLIE, {"membership": "join"})
            else:
                self.refused(room, M, CHARLIE, CHARLIE, {"membership": "join"})

    def test_v12_authoriser_creator(self) -> None:
        room, content, sigs = self._restricted(V[12], "restricted", invite=100)
        self.allowed(room, M, CHARLIE, CHARLIE, content, extra=sigs)


class InviteTests(AuthCase):
    def test_invite(self) -> None:
        for v in ALL:
            room = make_room(v)
            self.allowed(room, M, BOB, CHARLIE, {"membership": "invite"})
            self.refused(room, M, CHARLIE, DAVE, {"membership": "invite"})  # not joined

    def test_target_joined_or_banned(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "join", CHARLIE: "join", DAVE: "ban"})
            self.refused(room, M, BOB, CHARLIE, {"membership": "invite"})
            self.refused(room, M, BOB, DAVE, {"membership": "invite"})

    def test_invite_level(self) -> None:
        for v in ALL:
            room = make_room(v, invite=60)
            self.refused(room, M, BOB, CHARLIE, {"membership": "invite"})
            self.allowed(room, M, ALICE, CHARLIE, {"membership": "invite"})


class ThirdPartyInviteTests(AuthCase):
    def setUp(self) -> None:
        self.key = SigningKey.generate()
        self.key.alg = "ed25519"
        self.key.version = "0"
        self.public = encode_base64(get_verify_key(self.key).encode())

    def _room(self, v: RoomVersion, content: dict[str, Any] | None = None, sender: str = BOB,
              **kw: Any) -> Room:
        room = make_room(v, **kw)
        room.send("m.room.third_party_invite", sender, "tok",
                  content if content is not None else {"public_key": self.public, "display_name": "c"},
                  check=False)
        return room

    def _content(self, mxid: str = CHARLIE, key: SigningKey | None = None, token: str = "tok") -> dict:
        signed = sign_json({"mxid": mxid, "token": token}, "id.example", key or self.key)
        return {"membership": "invite", "third_party_invite": {"display_name": "c", "signed": signed}}

    def test_allowed(self) -> None:
        for v in ALL:
            room = self._room(v)
            self.allowed(room, M, BOB, CHARLIE, self._content())

    def test_public_keys_list(self) -> None:
        room = self._room(V[10], {"public_keys": [{"public_key": "AAAA"}, {"public_key": self.public}]})
        self.allowed(room, M, BOB, CHARLIE, self._content())

    def test_wrong_key(self) -> None:
        other = SigningKey.generate()
        other.alg, other.version = "ed25519", "0"
        room = self._room(V[10])
        self.refused(room, M, BOB, CHARLIE, self._content(key=other))

    def test_mxid_mismatch(self) -> None:
        room = self._room(V[10])
        self.refused(room, M, BOB, DAVE, self._content(mxid=CHARLIE))

    def test_no_invite_event_for_token(self) -> None:
        room = self._room(V[10])
        self.refused(room, M, BOB, CHARLIE, self._content(token="other"))

    def test_sender_must_match(self) -> None:
        room = self._room(V[10], sender=ALICE)
        self.refused(room, M, BOB, CHARLIE, self._content())

    def test_target_banned(self) -> None:
        room = self._room(V[10], members={BOB: "join", CHARLIE: "ban"})
        self.refused(room, M, BOB, CHARLIE, self._content())

    def test_malformed(self) -> None:
        room = self._room(V[10])
        self.refused(room, M, BOB, CHARLIE, {"membership": "invite", "third_party_invite": {}})
        self.refused(room, M, BOB, CHARLIE, {"membership": "invite",
                                             "third_party_invite": {"signed": {"mxid": CHARLIE}}})


class LeaveBanTests(AuthCase):
    def test_self_leave(self) -> None:
        for v in ALL:
            for membership, ok in (("join", True), ("invite", True), ("leave", False), ("ban", False)):
                room = make_room(v, members={BOB: membership})
                (self.allowed if ok else self.refused)(room, M, BOB, BOB, {"membership": "leave"})

    def test_leave_from_knock(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "knock"})
            (self.allowed if v.knocking else self.refused)(room, M, BOB, BOB, {"membership": "leave"})

    def test_kick(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "join", CHARLIE: "join"})
            self.allowed(room, M, ALICE, BOB, {"membership": "leave"})
            self.refused(room, M, BOB, ALICE, {"membership": "leave"})  # higher target
            self.refused(room, M, CHARLIE, BOB, {"membership": "leave"})  # below kick level
            room = make_room(v, members={BOB: "join", CHARLIE: "invite"})
            self.refused(room, M, CHARLIE, BOB, {"membership": "leave"})  # not joined

    def test_unban(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "join", CHARLIE: "ban"}, kick=40, ban=60)
            self.refused(room, M, BOB, CHARLIE, {"membership": "leave"})
            self.allowed(room, M, ALICE, CHARLIE, {"membership": "leave"})

    def test_ban(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "join", CHARLIE: "join"})
            self.allowed(room, M, BOB, CHARLIE, {"membership": "ban"})
            self.allowed(room, M, BOB, DAVE, {"membership": "ban"})  # not in room
            self.refused(room, M, BOB, ALICE, {"membership": "ban"})
            self.refused(room, M, CHARLIE, BOB, {"membership": "ban"})
            room = make_room(v, members={BOB: "leave"})
            self.refused(room, M, BOB, CHARLIE, {"membership": "ban"})

    def test_v12_creators_cannot_be_banned(self) -> None:
        room = make_room(V[12], users={BOB: 100}, members={BOB: "join", CHARLIE: "join"})
        self.refused(room, M, BOB, ALICE, {"membership": "ban"})
        self.allowed(room, M, ALICE, BOB, {"membership": "ban"})
        # An additional creator is equal to the creator: neither can ban.
        room = Room(V[12])
        room.create.pdu["content"]["additional_creators"] = [BOB]
        room.join(ALICE)
        room.send(M, BOB, BOB, {"membership": "join"}, check=False)
        self.refused(room, M, ALICE, BOB, {"membership": "ban"})
        self.refused(room, M, BOB, ALICE, {"membership": "ban"})
        self.allowed(room, M, BOB, CHARLIE, {"membership": "ban"})


class KnockTests(AuthCase):
    def test_knock(self) -> None:
        for v in ALL:
            room = make_room(v, join_rule="knock", members={})
            (self.allowed if v.knocking else self.refused)(room, M, BOB, BOB, {"membership": "knock"})

    def test_knock_rules(self) -> None:
        v = V[7]
        room = make_room(v, join_rule="public", members={})
        self.refused(room, M, BOB, BOB, {"membership": "knock"})
        room = make_room(v, join_rule="knock", members={})
        self.refused(room, M, ALICE, BOB, {"membership": "knock"})
        for membership in ("ban", "invite", "join"):
            room = make_room(v, join_rule="knock", members={BOB: membership})
            self.refused(room, M, BOB, BOB, {"membership": "knock"})
        room = make_room(v, join_rule="knock", members={BOB: "leave"})
        self.allowed(room, M, BOB, BOB, {"membership": "knock"})

    def test_knock_restricted(self) -> None:
        for v in ALL[6:]:
            room = make_room(v, join_rule="knock_restricted", members={})
            (self.allowed if v.knock_restricted else self.refused)(room, M, BOB, BOB, {"membership": "knock"})

    def test_unknown_membership(self) -> None:
        for v in ALL:
            room = make_room(v)
            self.refused(room, M, BOB, BOB, {"membership": "dance"})
            self.refused(room, M, BOB, BOB, {})


class SendTests(AuthCase):
    def test_sender_must_be_joined(self) -> None:
        for v in ALL:
            room = make_room(v, members={BOB: "join", CHARLIE: "invite"})
            self.allowed(room, "m.room.message", BOB, None, {"body": "x"})
            self.refused(room, "m.room.message", CHARLIE, None, {"body": "x"})

    def test_third_party_invite_event(self) -> None:
        for v in ALL:
            room = make_room(v, users={BOB: 10}, invite=20)
            self.refused(room, "m.room.third_party_invite", BOB, "t", {})
            room = make_room(v, users={BOB: 20}, invite=20, state_default=100)
            self.allowed(room, "m.room.third_party_invite", BOB, "t", {})

    def test_required_power_level(self) -> None:
        for v in ALL:
            room = make_room(v, events={"m.room.topic": 60}, events_default=10, state_default=40)
            self.refused(room, "m.room.topic", BOB, "", {"topic": "t"})
            self.allowed(room, "m.room.name", BOB, "", {"name": "n"})
            self.allowed(room, "m.room.message", BOB, None, {})
            room = make_room(v, users={BOB: 5}, events_default=10)
            self.refused(room, "m.room.message", BOB, None, {})

    def test_user_state_keys(self) -> None:
        for v in ALL:
            room = make_room(v, state_default=0)
            self.allowed(room, "org.example.state", BOB, BOB, {})
            self.refused(room, "org.example.state", BOB, ALICE, {})
            self.refused(room, "org.example.state", ALICE, BOB, {})


class PowerLevelsTests(AuthCase):
    def _pl(self, v: RoomVersion, content: dict[str, Any], sender: str = ALICE, ok: bool = True,
            **room_kw: Any) -> None:
        room = make_room(v, **room_kw)
        (self.allowed if ok else self.refused)(room, "m.room.power_levels", sender, "", content)

    def test_first_power_levels(self) -> None:
        for v in ALL:
            room = make_room(v, power_levels=False)
            # The creator has 100 without power levels.
            self.allowed(room, "m.room.power_levels", ALICE, "", {"users": {BOB: 100}, "ban": 100})
            room = make_room(v, power_levels=False)
            self.refused(room, "m.room.power_levels", BOB, "", {"users": {BOB: 100}})

    def test_string_values(self) -> None:
        for v in ALL:
            content = {"users": {BOB: "40"}, "ban": " 50 ", "events": {"m.room.name": "+10"}}
            if not v.privileged_creators:
                content["users"][ALICE] = 100
            self._pl(v, content, ok=not v.integer_power_levels)

    def test_v10_integer_checks(self) -> None:
        for v in (V[9], V[10]):
            ok = not v.integer_power_levels
            self._pl(v, {"users": {ALICE: 100}, "kick": "50"}, ok=ok)
            self._pl(v, {"users": {ALICE: 100}, "events": {"m.room.name": "50"}}, ok=ok)
            self._pl(v, {"users": {ALICE: 100}, "notifications": {"room": "50"}}, ok=ok)
            self._pl(v, {"users": {ALICE: 100}, "events": []}, ok=ok)
            self._pl(v, {"users": {ALICE: 100}, "events": {"m.room.name": 50}})

    def test_users_must_be_valid(self) -> None:
        for v in (V[1], V[10]):
            self._pl(v, {"users": {ALICE: 100, "bob": 50}}, ok=False)
            self._pl(v, {"users": {ALICE: 100, BOB: "x"}}, ok=False)
            self._pl(v, {"users": {ALICE: 100, BOB: True}}, ok=False)
            self._pl(v, {"users": [ALICE]}, ok=False)

    def test_top_level_changes(self) -> None:
        for v in ALL:
            users = {BOB: 50} if v.privileged_creators else {ALICE: 100, BOB: 50}
            pl = {"events": {"m.room.power_levels": 50}}
            self._pl(v, {"users": users, "ban": 50, **pl}, BOB, ban=50, **pl)
            self._pl(v, {"users": users, "ban": 40, **pl}, BOB, ban=50, **pl)
            self._pl(v, {"users": users, "ban": 60, **pl}, BOB, ok=False, ban=50, **pl)
            self._pl(v, {"users": users, "ban": 40, **pl}, BOB, ok=False, ban=60, **pl)
            self._pl(v, {"users": users, **pl}, BOB, ok=False, ban=60, **pl)  # removed

    def test_events_changes(self) -> None:
        for v in ALL:
            users = {BOB: 50} if v.privileged_creators else {ALICE: 100, BOB: 50}
            ev = {"m.room.power_levels": 50}
            self._pl(v, {"users": users, "events": {**ev, "m.x": 50}}, BOB, events=ev)
            self._pl(v, {"users": users, "events": {**ev, "m.x": 51}}, BOB, ok=False, events=ev)
            self._pl(v, {"users": users, "events": ev}, BOB, ok=False, events={**ev, "m.x": 60})

    def test_notifications_v6(self) -> None:
        for v in ALL:
            users = {BOB: 50} if v.privileged_creators else {ALICE: 100, BOB: 50}
            ev = {"events": {"m.room.power_levels": 50}}
            self._pl(v, {"users": users, "notifications": {"room": 100}, **ev}, BOB,
                     ok=not v.limit_notifications_power_levels, **ev)
            self._pl(v, {"users": users, **ev}, BOB, ok=not v.limit_notifications_power_levels,
                     notifications={"room": 100}, **ev)
            self._pl(v, {"users": users, "notifications": {"room": 50}, **ev}, BOB, **ev)

    def test_users_changes(self) -> None:
        for v in ALL:
            me = {} if v.privileged_creators else {ALICE: 100}
            ev = {"events": {"m.room.power_levels": 50}}
            base = {**me, BOB: 50, CHARLIE: 20}
            room_kw = dict(users=base, **ev)
            # Bob (50) may raise Charlie to 50, not to 51.
            self._pl(v, {"users": {**base, CHARLIE: 50}, **ev}, BOB, **room_kw)
            self._pl(v, {"users": {**base, CHARLIE: 51}, **ev}, BOB, ok=False, **room_kw)
            # May lower himself, not an equal.
            self._pl(v, {"users": {**base, BOB: 10}, **ev}, BOB, **room_kw)
            eq = {**base, DAVE: 50}
            self._pl(v, {"users": {**eq, DAVE: 10}, **ev}, BOB, ok=False, users=eq, **ev)
            self._pl(v, {"users": {k: l for k, l in eq.items() if k != DAVE}, **ev}, BOB, ok=False,
                     users=eq, **ev)
            # Removing a lower entry is fine.
            self._pl(v, {"users": {k: l for k, l in base.items() if k != CHARLIE}, **ev}, BOB, **room_kw)

    def test_v12_creators_not_in_users(self) -> None:
        self._pl(V[12], {"users": {ALICE: 100}}, ok=False)
        self._pl(V[12], {"users": {BOB: 100}})
        room = Room(V[12])
        room.create.pdu["content"]["additional_creators"] = [BOB]
        room.join(ALICE)
        self.refused(room, "m.room.power_levels", ALICE, "", {"users": {BOB: 10}})
        self.allowed(room, "m.room.power_levels", ALICE, "", {"users": {CHARLIE: 10}})
        # Not a rule in v11: there the creator is listed as usual.
        self._pl(V[11], {"users": {ALICE: 100}})

    def test_v12_creator_unlimited(self) -> None:
        self._pl(V[12], {"users": {BOB: 10**9}, "ban": 10**9, "events": {"x": 10**9}})


class RedactionTests(AuthCase):
    def test_v1_v2_domain_check(self) -> None:
        for v in (V[1], V[2]):
            room = make_room(v, members={"@bob:a.example": "join"})
            bob = "@bob:a.example"
            self.allowed(room, "m.room.redaction", bob, None, {}, extra={"redacts": "$x:a.example"})
            self.refused(room, "m.room.redaction", bob, None, {}, extra={"redacts": "$x:b.example"})
            self.allowed(room, "m.room.redaction", ALICE, None, {}, extra={"redacts": "$x:b.example"})

    def test_v3_not_checked(self) -> None:
        for v in ALL[2:]:
            room = make_room(v)
            self.allowed(room, "m.room.redaction", BOB, None, {"redacts": "$x"}, extra={"redacts": "$x"})
            room = make_room(v, events={"m.room.redaction": 60})
            self.refused(room, "m.room.redaction", BOB, None, {"redacts": "$x"}, extra={"redacts": "$x"})


class PowerHelperTests(unittest.TestCase):
    def test_defaults_without_power_levels(self) -> None:
        for v in ALL:
            room = make_room(v, power_levels=False)
            st = state_of(room)
            expected = math.inf if v.privileged_creators else 100
            self.assertEqual(get_user_power_level(ALICE, st), expected)
            self.assertEqual(get_user_power_level(BOB, st), 0)
            self.assertEqual(get_named_level(st, "ban"), 50)
            self.assertEqual(get_named_level(st, "invite"), 0)
            self.assertEqual(get_send_level(st, "m.room.topic", ""), 50)
            self.assertEqual(get_send_level(st, "m.room.message", None), 0)

    def test_creators(self) -> None:
        room = Room(V[10], creator=ALICE)
        self.assertEqual(creators(room.create), {ALICE})
        room = Room(V[11])
        self.assertEqual(creators(room.create), {ALICE})
        room = Room(V[12])
        room.create.pdu["content"]["additional_creators"] = [BOB]
        self.assertEqual(creators(state_of(room)), {ALICE, BOB})
        self.assertEqual(creators({}), frozenset())

    def test_users_default(self) -> None:
        room = make_room(V[10], users={BOB: 7}, users_default=3)
        st = state_of(room)
        self.assertEqual(get_user_power_level(BOB, st), 7)
        self.assertEqual(get_user_power_level(CHARLIE, st), 3)

    def test_parse_power_level(self) -> None:
        v5, v10 = V[5], V[10]
        for raw, value in ((" +100 ", 100), ("-5", -5), ("007", 7), (50.7, 50), (-1.5, -1), (3, 3)):
            self.assertEqual(parse_power_level(raw, v5), value)
        for raw in ("1_000", "1.5", "", "+-1", "١٢", math.inf, math.nan, True, None, [1]):
            self.assertIsNone(parse_power_level(raw, v5), raw)
        self.assertIsNone(parse_power_level("5", v10))
        self.assertIsNone(parse_power_level(5.0, v10))

    def test_user_ids(self) -> None:
        for ok in (ALICE, "@:a.example", "@Ünï:a.example:8448", "@a:[::1]:80", "@a:1.2.3.4"):
            self.assertTrue(is_valid_user_id(ok), ok)
        for bad in ("alice", "@alice", "@alice:", "@a:b c", "@a\x00:b", 5, "@a:" + "x" * 260):
            self.assertFalse(is_valid_user_id(bad), bad)


class AuthEventsSelectionTests(unittest.TestCase):
    def test_auth_types(self) -> None:
        for v in ALL:
            create = {("m.room.create", "")} if v.create_event_in_auth_events else set()
            base = {("m.room.power_levels", ""), (M, BOB)} | create
            self.assertEqual(auth_types_for_event(v, "m.room.create", ALICE, "", {}), set())
            self.assertEqual(auth_types_for_event(v, "m.room.message", BOB, None, {}), base)
            self.assertEqual(
                auth_types_for_event(v, M, BOB, CHARLIE, {"membership": "invite"}),
                base | {(M, CHARLIE), ("m.room.join_rules", "")},
            )
            self.assertEqual(
                auth_types_for_event(v, M, BOB, CHARLIE, {"membership": "ban"}), base | {(M, CHARLIE)}
            )
            tpi = {"membership": "invite", "third_party_invite": {"signed": {"token": "t"}}}
            self.assertIn(("m.room.third_party_invite", "t"), auth_types_for_event(v, M, BOB, CHARLIE, tpi))
            restricted = {"membership": "join", "join_authorised_via_users_server": DAVE}
            keys = auth_types_for_event(v, M, BOB, BOB, restricted)
            self.assertEqual((M, DAVE) in keys, v.restricted_joins)

    def test_selection(self) -> None:
        for v in (V[3], V[11], V[12]):
            room = make_room(v)
            ev = attempt(room, "m.room.message", BOB, None, {})
            auth = [room.events[i] for i in ev.auth_event_ids()]
            check_auth_events_selection(ev, auth)
            self.assertEqual(any(a.type == "m.room.create" for a in auth), v.create_event_in_auth_events)
            # Unexpected entry (the join rules).
            jr = room.events[room.state[("m.room.join_rules", "")]]
            bad = attempt(room, "m.room.message", BOB, None, {},
                          extra={"auth_events": ev.auth_event_ids() + [jr.event_id]})
            self.assertRaises(AuthError, check_auth_events_selection, bad, auth + [jr])
            # Rejected auth event.
            auth[0].rejected = True
            self.assertRaises(AuthError, check_auth_events_selection, ev, auth)
            auth[0].rejected = False

    def test_duplicates_missing_create_and_room(self) -> None:
        v = V[10]
        room = make_room(v)
        ev = attempt(room, "m.room.message", BOB, None, {})
        auth = [room.events[i] for i in ev.auth_event_ids()]
        pl = room.events[room.state[("m.room.power_levels", "")]]
        pl2 = room.send("m.room.power_levels", ALICE, "", dict(pl.content))
        dup = attempt(room, "m.room.message", BOB, None, {},
                      extra={"auth_events": ev.auth_event_ids() + [pl2.event_id]})
        self.assertRaises(AuthError, check_auth_events_selection, dup, auth + [pl2])
        no_create = [a for a in auth if a.type != "m.room.create"]
        ev2 = attempt(room, "m.room.message", BOB, None, {},
                      extra={"auth_events": [a.event_id for a in no_create]})
        self.assertRaises(AuthError, check_auth_events_selection, ev2, no_create)
        ev3 = attempt(room, "m.room.message", BOB, None, {}, extra={"room_id": "!other:a.example"})
        self.assertRaises(AuthError, check_auth_events_selection, ev3, auth)
        # v12: the create event must not be listed.
        room = make_room(V[12])
        ev = attempt(room, "m.room.message", BOB, None, {})
        auth = [room.events[i] for i in ev.auth_event_ids()] + [room.create]
        bad = attempt(room, "m.room.message", BOB, None, {},
                      extra={"auth_events": [a.event_id for a in auth]})
        self.assertRaises(AuthError, check_auth_events_selection, bad, auth)
