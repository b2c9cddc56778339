"""
The authorisation rules of room versions 1-12, as pure functions.

Spec: rooms/v1 ("Authorisation rules", fragments/v1-auth-rules.md), v3
(fragments/v3-auth-rules.md), v6, v7, v8 (fragments/v8-auth-rules.md), v10,
v11 and v12 (rules inline in each page), and server-server-api "Checks
performed on receipt of a PDU" / "Auth events selection".

Rule numbers in comments follow the v12 numbering unless said otherwise:
1 create, 2 room ID names an accepted create event (v12), 3 auth_events
(see L{check_auth_events_selection}), 4 m.federate, (v1-5: aliases),
5 member, 6 sender joined, 7 third-party invite, 8 required power level,
9 C{@} state keys, 10 power levels, (v1-2: redaction), 11 allow.

Nothing here does I/O: the caller supplies the events. The only signature
work is the third-party invite check (rule 5.4.1.7), whose public keys are
in the room state itself.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from conduit_tw.events.event import Event
from conduit_tw.events.hashes import decode_base64
from conduit_tw.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from conduit_tw.events.signing import SignatureError, verify_json

StateKey = tuple[str, str]
AuthState = Mapping[StateKey, Event]

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

#: The top-level integer properties of m.room.power_levels checked by rule
#: 10.6 (v12 numbering), with their defaults (server-server-api
#: "Definitions"; client-server-api m.room.power_levels).
_LEVEL_DEFAULTS: dict[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "redact": 50,
    "kick": 50,
    "invite": 0,
}


class AuthError(Exception):
    """
    An event is not allowed by the authorisation rules. The message is
    human readable and may be shown to clients (M_FORBIDDEN).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------
# Identifiers


_HOST_RE = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.-]{1,255})(?::[0-9]{1,5})?", re.ASCII
)


def split_identifier(identifier: Any, sigil: str) -> tuple[str, str] | None:
    """
    C{(localpart, server)} of C{<sigil>localpart:server}, or None when
    C{identifier} is not a string of that shape: the sigil, at most 255
    bytes in all, a C{:}, a localpart (before the first C{:}) without NUL.
    The server part is the caller's to check.
    """
    if not isinstance(identifier, str) or not identifier.startswith(sigil):
        return None
    if len(identifier.encode("utf-8", "surrogatepass")) > 255:
        return None
    localpart, sep, server = identifier[len(sigil):].partition(":")
    if not sep or "\x00" in localpart:
        return None
    return localpart, server


def is_valid_user_id(user_id: Any) -> bool:
    """
    Whether C{user_id} is a user ID under the historical grammar, which
    servers must accept in events (appendices "Historical User IDs"): C{@},
    a localpart without C{:} or NUL (possibly empty), C{:}, a server name;
    at most 255 bytes.
    """
    parts = split_identifier(user_id, "@")
    return parts is not None and _HOST_RE.fullmatch(parts[1]) is not None


def _domain(identifier: Any) -> str | None:
    """The part after the first C{:} of a user/room/event ID, or None."""
    if not isinstance(identifier, str):
        return None
    _, sep, domain = identifier.partition(":")
    return domain if sep and domain else None


# --------------------------------------------------------------------------
# Power level values


_STRINGY_INT_RE = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*", re.ASCII)


def parse_power_level(value: Any, room_version: RoomVersion) -> int | None:
    """
    Read one power level value, or return None when it is not a valid one.

    Room v10+ accept only JSON integers (rooms/v10 "Values in
    m.room.power_levels events must be integers"). Earlier versions also
    accept integer strings (fragments/v1-stringy-power-levels.md: optional
    ASCII whitespace, one optional sign, decimal digits) and finite floats,
    truncated (fragments/v1-floaty-power-levels.md).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.integer_power_levels:
        return None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and _STRINGY_INT_RE.fullmatch(value):
        return int(value.strip(" \t\n\r\f\v"))
    return None


def _level_map(content: Mapping[str, Any], name: str, version: RoomVersion) -> dict[str, int]:
    """
    The valid entries of the C{users}/C{events}/C{notifications} object of
    power levels content. Invalid values are treated as absent (rooms before
    v10 only validate C{users}; an unparseable value elsewhere cannot be
    compared, so it counts as not set).
    """
    raw = content.get(name)
    if not isinstance(raw, dict):
        return {}
    out: dict[str, int] = {}
    for key, value in raw.items():
        level = parse_power_level(value, version)
        if level is not None:
            out[key] = level
    return out


def _map_entry(
    content: Mapping[str, Any], name: str, key: str, version: RoomVersion
) -> int | None:
    """One valid entry of C{content[name]} (as in L{_level_map}), or None."""
    raw = content.get(name)
    if not isinstance(raw, dict) or key not in raw:
        return None
    return parse_power_level(raw[key], version)


def _top_level(content: Mapping[str, Any], name: str, version: RoomVersion) -> int | None:
    """A top-level level (C{ban}, C{users_default}...), None when unset/invalid."""
    return parse_power_level(content.get(name), version)


# --------------------------------------------------------------------------
# Creators and power


def creators(source: AuthState | Event | None) -> frozenset[str]:
    """
    The room creators, from an auth state (its C{m.room.create} event) or a
    create event.

    v1-10: C{content.creator}; v11: the create event's C{sender}
    (rooms/v11 "Remove the creator property"); v12: the C{sender} plus
    C{content.additional_creators} (rooms/v12 "Authorisation rules",
    note on room creators). Empty when there is no create event.
    """
    create = source if isinstance(source, Event) or source is None else source.get(CREATE_KEY)
    if create is None:
        return frozenset()
    version = create.room_version
    if not version.implicit_room_creator:
        creator = create.content.get("creator")
        return frozenset((creator,)) if isinstance(creator, str) else frozenset()
    result = {create.sender}
    if version.privileged_creators:
        extra = create.content.get("additional_creators")
        if isinstance(extra, list):
            result.update(u for u in extra if isinstance(u, str))
    return frozenset(result)


def _original_creator(create: Event) -> str | None:
    """
    The single creator of rule 5.3.1 (first join): C{content.creator}
    before v11, the create event's sender from v11 on.
    """
    if create.room_version.implicit_room_creator:
        return create.sender
    creator = create.content.get("creator")
    return creator if isinstance(creator, str) else None


def get_user_power_level(user_id: str, auth_state: AuthState) -> int | float:
    """
    A user's power level in the given state.

    v12 creators have infinite power (C{float('inf')}). Otherwise: the
    user's entry in C{users} of m.room.power_levels, else C{users_default},
    else 0. With no power levels event, the creator has 100 and everyone
    else 0 (client-server-api m.room.power_levels; v11+: the create
    event's sender is the creator).
    """
    create = auth_state.get(CREATE_KEY)
    if create is not None and create.room_version.privileged_creators:
        if user_id in creators(create):
            return math.inf
    pl = auth_state.get(POWER_LEVELS_KEY)
    if pl is not None:
        version = pl.room_version
        level = _map_entry(pl.content, "users", user_id, version)
        if level is not None:
            return level
        default = _top_level(pl.content, "users_default", version)
        return default if default is not None else 0
    if create is not None and user_id in creators(create):
        return 100
    return 0


def get_named_level(auth_state: AuthState, name: str, default: int | None = None) -> int:
    """
    A named level of the power levels (C{invite}, C{kick}, C{ban},
    C{redact}, C{users_default}, C{events_default}, C{state_default}),
    falling back to the spec default (server-server-api "Definitions":
    invite 0; kick, ban, redact 50) or to C{default} when given.
    """
    if default is None:
        default = _LEVEL_DEFAULTS[name]
    pl = auth_state.get(POWER_LEVELS_KEY)
    if pl is None:
        return default
    level = _top_level(pl.content, name, pl.room_version)
    return default if level is None else level


def get_send_level(auth_state: AuthState, event_type: str, state_key: str | None) -> int:
    """
    The *required power level* of an event type (server-server-api
    "Definitions"): C{events[type]}, else C{state_default} (default 50) for
    state events or C{events_default} (default 0) for others.
    """
    pl = auth_state.get(POWER_LEVELS_KEY)
    if pl is not None:
        level = _map_entry(pl.content, "events", event_type, pl.room_version)
        if level is not None:
            return level
    if state_key is not None:
        return get_named_level(auth_state, "state_default")
    return get_named_level(auth_state, "events_default")


# --------------------------------------------------------------------------
# Auth events selection


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> set[StateKey]:
    """
    The state keys whose current events authorise an event
    (server-server-api "Auth events selection"): the create event (not in
    v12, where the room ID names it), the power levels, the sender's
    membership, and for m.room.member the target's membership, the join
    rules (join/invite/knock), the third-party invite named by the token,
    and (v8+, joins) the membership of C{join_authorised_via_users_server}.
    """
    if event_type == "m.room.create":
        return set()
    keys: set[StateKey] = {POWER_LEVELS_KEY, ("m.room.member", sender)}
    if room_version.create_event_in_auth_events:
        keys.add(CREATE_KEY)
    if event_type == "m.room.member":
        membership = content.get("membership")
        if isinstance(state_key, str):
            keys.add(("m.room.member", state_key))
        if membership in ("join", "invite", "knock"):
            keys.add(JOIN_RULES_KEY)
        if membership == "invite":
            tpi = content.get("third_party_invite")
            signed = tpi.get("signed") if isinstance(tpi, dict) else None
            token = signed.get("token") if isinstance(signed, dict) else None
            if isinstance(token, str):
                keys.add(("m.room.third_party_invite", token))
        if membership == "join" and room_version.restricted_joins:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                keys.add(("m.room.member", authoriser))
    return keys


def auth_types_for(event: Event) -> set[StateKey]:
    """L{auth_types_for_event} for an L{Event}."""
    return auth_types_for_event(
        event.room_version, event.type, event.sender, event.state_key, event.content
    )


def check_auth_events_selection(event: Event, auth_events: Sequence[Event]) -> None:
    """
    The rules about an event's own C{auth_events} (rule 2 in v1-11, 3 in
    v12): no two for one (type, state_key); only those the auth events
    selection allows; none rejected; all in the event's room; and (v1-11)
    the create event among them. C{auth_events} are the events named by
    C{event.auth_event_ids()}; an ID without its event is refused.

    @raise AuthError: when a rule refuses the event.
    """
    if event.type == "m.room.create":
        return
    by_id = {e.event_id: e for e in auth_events}
    allowed = auth_types_for(event)
    seen: dict[tuple[str, Any], str] = {}
    for auth_id in event.auth_event_ids():
        auth_event = by_id.get(auth_id)
        if auth_event is None:
            raise AuthError("Auth event %s is not available" % (auth_id,))
        key = (auth_event.type, auth_event.state_key)
        if key in seen:
            raise AuthError(
                "Duplicate auth events for %r: %s and %s" % (key, seen[key], auth_id)
            )
        seen[key] = auth_id
        if key not in allowed:
            raise AuthError("Unexpected auth event %s for %r" % (auth_id, key))
        if auth_event.rejected:
            raise AuthError("Auth event %s was rejected" % (auth_id,))
        if auth_event.room_id != event.room_id:
            raise AuthError(
                "Auth event %s belongs to another room (%s)" % (auth_id, auth_event.room_id)
            )
    if event.room_version.create_event_in_auth_events and CREATE_KEY not in seen:
        raise AuthError("No m.room.create event among the auth events")


# --------------------------------------------------------------------------
# The rules


def check_auth(event: Event, auth_state: AuthState) -> None:
    """
    Check an event against the authorisation rules of its room version,
    given the state it is checked against (its auth events, the state
    before it, or the current state: server-server-api "Checks performed on
    receipt of a PDU" 4-6). C{auth_state} maps (type, state_key) to the
    state events selected by L{auth_types_for_event}, and must contain the
    create event under C{("m.room.create", "")} in every version (v12
    included, although v12 does not list it in C{auth_events}).

    Not checked here: signatures and hashes, except the third-party invite
    signature; for C{join_authorised_via_users_server} (rule 5.2) only the
    presence of a signature by that user's server is checked, its
    verification belongs with the event's other signatures. The rules on
    C{auth_events} themselves are in L{check_auth_events_selection}.

    @raise AuthError: when the event is not allowed.
    """
    try:
        _check_auth(event, auth_state)
    except AuthError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        # Malformed content that slipped through validation: refuse rather
        # than crash (and keep state resolution deterministic).
        raise AuthError("Malformed event: %s" % (e,)) from e


def _check_auth(event: Event, auth_state: AuthState) -> None:
    version = event.room_version

    # Rule 1: m.room.create.
    if event.type == "m.room.create":
        _check_create(event)
        return

    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("No m.room.create event in the room state")

    # v12 rule 2: the room ID is the create event's ID with sigil "!".
    if version.room_id_from_create_event:
        if create.rejected:
            raise AuthError("The room's m.room.create event was rejected")
        if event.room_id != "!" + create.event_id[1:]:
            raise AuthError("Room ID does not match the m.room.create event")

    # Rule 3 (v1-11) / 4 (v12): m.federate.
    if create.content.get("m.federate", True) is False:
        if _domain(event.sender) != _domain(create.sender):
            raise AuthError("This room does not federate")

    # Rule 4 of v1-5: m.room.aliases.
    if event.type == "m.room.aliases" and version.special_case_aliases_auth:
        if event.state_key is None:
            raise AuthError("m.room.aliases must be a state event")
        if _domain(event.sender) != event.state_key:
            raise AuthError("m.room.aliases state key must be the sender's server name")
        return

    # Rule 5: m.room.member.
    if event.type == "m.room.member":
        _check_member(event, auth_state, create)
        return

    # Rule 6: the sender must be joined.
    if _membership(auth_state, event.sender) != "join":
        raise AuthError("%s is not in the room" % (event.sender,))

    sender_level = get_user_power_level(event.sender, auth_state)

    # Rule 7: m.room.third_party_invite.
    if event.type == "m.room.third_party_invite":
        if sender_level >= get_named_level(auth_state, "invite"):
            return
        raise AuthError("Insufficient power level to invite")

    # Rule 8: required power level.
    required = get_send_level(auth_state, event.type, event.state_key)
    if required > sender_level:
        raise AuthError(
            "Insufficient power level to send %s (%s < %d)"
            % (event.type, _fmt(sender_level), required)
        )

    # Rule 9: state keys naming another user.
    sk = event.state_key
    if sk is not None and sk.startswith("@") and sk != event.sender:
        raise AuthError("Cannot set state with another user's ID as state key")

    # Rule 10: m.room.power_levels.
    if event.type == "m.room.power_levels":
        _check_power_levels(event, auth_state, create, sender_level)
        return

    # Rule 11 of v1-2: m.room.redaction (v3+ handles this on redaction).
    if event.type == "m.room.redaction" and version.redaction_checks_event_id_domain:
        if sender_level >= get_named_level(auth_state, "redact"):
            return
        own = _domain(event.event_id)
        if own is not None and own == _domain(event.redacts):
            return
        raise AuthError("Insufficient power level to redact this event")


def _fmt(level: int | float) -> str:
    return "infinite" if level == math.inf else str(level)


def _membership(auth_state: AuthState, user_id: Any) -> str | None:
    if not isinstance(user_id, str):
        return None
    ev = auth_state.get(("m.room.member", user_id))
    return ev.membership() if ev is not None else None


def _check_create(event: Event) -> None:
    """Rule 1: m.room.create."""
    version = event.room_version
    if event.pdu.get("prev_events"):
        raise AuthError("m.room.create must not have prev_events")
    if version.room_id_from_create_event:
        if "room_id" in event.pdu:
            raise AuthError("m.room.create must not have a room_id in this room version")
    else:
        room_domain = _domain(event.room_id)
        if room_domain is None or room_domain != _domain(event.sender):
            raise AuthError("Room ID server name does not match the creator's")
    if "room_version" in event.content:
        rv = event.content["room_version"]
        if not isinstance(rv, str) or rv not in KNOWN_ROOM_VERSIONS:
            raise AuthError("Unknown room version %r" % (rv,))
    if not version.implicit_room_creator and "creator" not in event.content:
        raise AuthError("m.room.create has no creator")
    if version.privileged_creators and "additional_creators" in event.content:
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators must be a list of user IDs")


def _join_rule(auth_state: AuthState) -> str:
    """
    The join rule in force. Without an m.room.join_rules event the room is
    treated as invite-only, as other servers do (the spec has no default).
    """
    ev = auth_state.get(JOIN_RULES_KEY)
    if ev is None:
        return "invite"
    rule = ev.content.get("join_rule")
    return rule if isinstance(rule, str) else ""


def _check_member(event: Event, auth_state: AuthState, create: Event) -> None:
    """Rule 5 (v12 numbering; 4 in v6-11, 5 in v1-5): m.room.member."""
    version = event.room_version
    target = event.state_key
    membership = event.membership()
    if target is None or "membership" not in event.content:
        raise AuthError("m.room.member needs a state key and a membership")

    # 5.2 (v8+): join_authorised_via_users_server must have signed.
    if version.restricted_joins and "join_authorised_via_users_server" in event.content:
        authoriser = event.content["join_authorised_via_users_server"]
        server = _domain(authoriser) if is_valid_user_id(authoriser) else None
        sigs = event.pdu.get("signatures")
        if server is None or not isinstance(sigs, dict) or not sigs.get(server):
            raise AuthError("Event is not signed by the authorising user's server")

    sender = event.sender
    sender_membership = _membership(auth_state, sender)
    target_membership = _membership(auth_state, target)
    sender_level = get_user_power_level(sender, auth_state)

    if membership == "join":
        # 5.3.1: the creator's first join right after the create event.
        if event.prev_event_ids() == [create.event_id] and target == _original_creator(create):
            return
        if sender != target:
            raise AuthError("Cannot make another user join")
        if sender_membership == "ban":
            raise AuthError("%s is banned from the room" % (sender,))
        rule = _join_rule(auth_state)
        if rule == "invite" or (rule == "knock" and version.knocking):
            if sender_membership in ("invite", "join"):
                return
            raise AuthError("You are not invited to this room")
        if (rule == "restricted" and version.restricted_joins) or (
            rule == "knock_restricted" and version.knock_restricted
        ):
            if sender_membership in ("invite", "join"):
                return
            authoriser = event.content.get("join_authorised_via_users_server")
            if not isinstance(authoriser, str):
                raise AuthError("Join to a restricted room needs an authorising user")
            if _membership(auth_state, authoriser) != "join":
                raise AuthError("The authorising user is not in the room")
            if get_user_power_level(authoriser, auth_state) < get_named_level(
                auth_state, "invite"
            ):
                raise AuthError("The authorising user cannot invite")
            return
        if rule == "public":
            return
        raise AuthError("You are not allowed to join this room")

    if membership == "invite":
        if "third_party_invite" in event.content:
            _check_third_party_invite(event, auth_state, target_membership)
            return
        if sender_membership != "join":
            raise AuthError("%s is not in the room" % (sender,))
        if target_membership in ("join", "ban"):
            raise AuthError("%s is %s" % (target, "banned" if target_membership == "ban" else "already in the room"))
        if sender_level >= get_named_level(auth_state, "invite"):
            return
        raise AuthError("Insufficient power level to invite")

    if membership == "leave":
        if sender == target:
            allowed = ("invite", "join", "knock") if version.knocking else ("invite", "join")
            if sender_membership in allowed:
                return
            raise AuthError("You cannot leave a room you are not in")
        if sender_membership != "join":
            raise AuthError("%s is not in the room" % (sender,))
        if target_membership == "ban" and sender_level < get_named_level(auth_state, "ban"):
            raise AuthError("Insufficient power level to unban")
        if sender_level >= get_named_level(auth_state, "kick") and get_user_power_level(
            target, auth_state
        ) < sender_level:
            return
        raise AuthError("Insufficient power level to kick %s" % (target,))

    if membership == "ban":
        if sender_membership != "join":
            raise AuthError("%s is not in the room" % (sender,))
        if sender_level >= get_named_level(auth_state, "ban") and get_user_power_level(
            target, auth_state
        ) < sender_level:
            return
        raise AuthError("Insufficient power level to ban %s" % (target,))

    if membership == "knock" and version.knocking:
        rule = _join_rule(auth_state)
        if not (rule == "knock" or (rule == "knock_restricted" and version.knock_restricted)):
            raise AuthError("This room does not accept knocks")
        if sender != target:
            raise AuthError("Cannot knock for another user")
        if sender_membership not in ("ban", "invite", "join"):
            return
        raise AuthError("You cannot knock while %s" % (
            {"ban": "banned", "invite": "invited", "join": "joined"}[sender_membership],
        ))

    raise AuthError("Unknown membership %r" % (membership,))


def _check_third_party_invite(
    event: Event, auth_state: AuthState, target_membership: str | None
) -> None:
    """Rule 5.4.1: an invite carrying C{content.third_party_invite}."""
    if target_membership == "ban":
        raise AuthError("%s is banned from the room" % (event.state_key,))
    tpi = event.content["third_party_invite"]
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed object")
    if "mxid" not in signed or "token" not in signed:
        raise AuthError("third_party_invite.signed needs mxid and token")
    if signed["mxid"] != event.state_key:
        raise AuthError("third_party_invite.signed.mxid does not match the state key")
    token = signed["token"]
    invite = auth_state.get(("m.room.third_party_invite", token)) if isinstance(token, str) else None
    if invite is None:
        raise AuthError("No m.room.third_party_invite event for this token")
    if invite.sender != event.sender:
        raise AuthError("The third-party invite was sent by another user")
    if _third_party_signature_matches(signed, invite):
        return
    raise AuthError("No valid signature from the third-party invite's keys")


def _public_keys(invite: Event) -> list[str]:
    """The public keys of an m.room.third_party_invite event, base64."""
    keys = []
    content = invite.content
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    listed = content.get("public_keys")
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _third_party_signature_matches(signed: dict[str, Any], invite: Event) -> bool:
    """Whether any ed25519 signature in C{signed} verifies with any public key."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    for public_key in _public_keys(invite):
        key_bytes = decode_base64(public_key)
        if key_bytes is None:
            continue
        try:
            verify_key = VerifyKey(key_bytes)
        except (CryptoError, ValueError, TypeError):
            continue
        for entity, entity_sigs in signatures.items():
            if not isinstance(entity_sigs, dict):
                continue
            for key_id in entity_sigs:
                if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                    continue
                try:
                    verify_json(signed, entity, {key_id: verify_key})
                except SignatureError:
                    continue
                return True
    return False


def _check_power_levels(
    event: Event, auth_state: AuthState, create: Event, sender_level: int | float
) -> None:
    """Rule 10 (v12 numbering; 9 in v6-11, 10 in v1-5): m.room.power_levels."""
    version = event.room_version
    content = event.content

    if version.integer_power_levels:
        # 10.1, 10.2 (v10+): strict integer types.
        for name in _LEVEL_DEFAULTS:
            if name in content and parse_power_level(content[name], version) is None:
                raise AuthError("Power level %r must be an integer" % (name,))
        for name in ("events", "notifications"):
            if name in content:
                value = content[name]
                if not isinstance(value, dict) or any(
                    parse_power_level(v, version) is None for v in value.values()
                ):
                    raise AuthError("Power levels %r must map to integers" % (name,))

    # 10.3: users.
    users = content.get("users", {})
    if not isinstance(users, dict):
        raise AuthError("Power levels 'users' must be an object")
    for user_id, value in users.items():
        if not is_valid_user_id(user_id):
            raise AuthError("Not a valid user ID in power levels: %r" % (user_id,))
        if parse_power_level(value, version) is None:
            raise AuthError("Not a valid power level for %s: %r" % (user_id, value))

    # 10.4 (v12): creators may not be listed.
    if version.privileged_creators:
        listed = creators(create).intersection(users)
        if listed:
            raise AuthError("Room creators cannot be given a power level: %s" % (
                ", ".join(sorted(listed)),
            ))

    # 10.5: the first power levels event is allowed.
    current = auth_state.get(POWER_LEVELS_KEY)
    if current is None:
        return
    old = current.content

    # 10.6: top-level levels, added, changed or removed.
    for name in _LEVEL_DEFAULTS:
        before = _top_level(old, name, version)
        after = _top_level(content, name, version)
        if before == after:
            continue
        if before is not None and before > sender_level:
            raise AuthError("Cannot change %r from a level above your own" % (name,))
        if after is not None and after > sender_level:
            raise AuthError("Cannot set %r above your own level" % (name,))

    # 10.7, 10.8: events (and notifications, v6+).
    maps = ["events"]
    if version.limit_notifications_power_levels:
        maps.append("notifications")
    for name in maps:
        before_map = _level_map(old, name, version)
        after_map = _level_map(content, name, version)
        for key in before_map.keys() | after_map.keys():
            before = before_map.get(key)
            after = after_map.get(key)
            if before == after:
                continue
            if before is not None and before > sender_level:
                raise AuthError("Cannot change %s[%r] from a level above your own" % (name, key))
            if after is not None and after > sender_level:
                raise AuthError("Cannot set %s[%r] above your own level" % (name, key))

    # 10.9, 10.10: users.
    before_users = _level_map(old, "users", version)
    after_users = _level_map(content, "users", version)
    for user_id in before_users.keys() | after_users.keys():
        before = before_users.get(user_id)
        after = after_users.get(user_id)
        if before == after:
            continue
        if user_id != event.sender and before is not None and before >= sender_level:
            raise AuthError("Cannot change the level of %s, who is not below you" % (user_id,))
        if after is not None and after > sender_level:
            raise AuthError("Cannot give %s a level above your own" % (user_id,))
