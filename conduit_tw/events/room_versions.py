"""
The table of room versions 1-12 and what each one changes.

Every behaviour that differs between room versions is a named attribute of
L{RoomVersion}, so that code asks C{version.knocking} instead of testing
version numbers. The source of truth is shared/matrix-spec/content/rooms/
(one page per version, plus the fragments they include).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class EventIdFormat(enum.Enum):
    """How event IDs are made (rooms/v1 "Event IDs", v3 and v4 "Event IDs")."""

    #: C{$opaque:server}, chosen by the origin server and carried in the event.
    SERVER_MADE = 1
    #: C{$} + standard unpadded base64 of the reference hash (room v3).
    BASE64 = 2
    #: C{$} + URL-safe unpadded base64 of the reference hash (room v4+).
    URL_SAFE_BASE64 = 3


class StateResAlgorithm(enum.Enum):
    """The state resolution algorithm of a room version."""

    #: rooms/v1 "State resolution".
    V1 = 1
    #: rooms/v2 "State resolution" (fragments/v2-state-res.md).
    V2 = 2
    #: rooms/v12 "State resolution": v2 with the empty state set as the
    #: starting point of iterative auth checks and creators' power.
    V2_1 = 3


class RedactionRules(enum.Enum):
    """The redaction algorithm of a room version (fragments/v*-redactions.md)."""

    V1 = 1  # rooms v1-v5
    V6 = 6  # rooms v6-v7: m.room.aliases no longer keeps its content
    V8 = 8  # room v8: m.room.join_rules keeps allow (rooms/v8 "Redactions")
    V9 = 9  # rooms v9-v10: m.room.member keeps join_authorised_via_users_server
    V11 = 11  # rooms v11+: create keeps all content, redacts, invite, signed ...


@dataclass(frozen=True)
class RoomVersion:
    """
    One room version and every rule that depends on it.

    @ivar identifier: the version string used on the wire (C{"1"} ... C{"12"}).
    @ivar stable: whether the spec marks the version stable.
    @ivar event_id_format: how event IDs are derived.
    @ivar event_id_in_event: v1-2 events carry their own C{event_id} and
        C{prev_events}/C{auth_events} are C{[event_id, hashes]} pairs; v3+
        events carry plain ID lists and no C{event_id}.
    @ivar state_res: which state resolution algorithm applies.
    @ivar enforce_key_validity: v5+: a signature counts only if the key was
        valid at the event's C{origin_server_ts}.
    @ivar special_case_aliases_auth: v1-5: m.room.aliases events are allowed
        when the state key is the sender's server (auth rule 4).
    @ivar redaction_checks_event_id_domain: v1-2: a redaction is allowed by
        auth rules when the redacted event ID's domain matches the
        redaction's (v3 moved this check out of the auth rules).
    @ivar strict_canonical_json: v6+: floats and integers outside
        [-(2**53)+1, (2**53)-1] are refused.
    @ivar limit_notifications_power_levels: v6+: the C{notifications} key of
        power levels is checked by rule "power levels".
    @ivar knocking: v7+: the C{knock} membership and join rule.
    @ivar restricted_joins: v8+: the C{restricted} join rule.
    @ivar knock_restricted: v10+: the C{knock_restricted} join rule.
    @ivar integer_power_levels: v10+: power level values must be integers,
        not strings.
    @ivar redaction_rules: the redaction algorithm.
    @ivar implicit_room_creator: v11+: C{m.room.create} has no C{creator};
        the sender is the creator.
    @ivar redacts_in_content: v11+: C{redacts} is a content property of
        C{m.room.redaction} (top level still accepted for older clients).
    @ivar room_id_from_create_event: v12: the room ID is C{!} + the URL-safe
        base64 reference hash of the create event, which has no C{room_id}.
    @ivar create_event_in_auth_events: whether the create event is listed
        in C{auth_events} (not in v12, where it is implied by the room ID).
    @ivar privileged_creators: v12: the create event's sender and
        C{additional_creators} have infinite power and cannot be demoted.
    @ivar lenient_event_byte_limits: v1-10: a C{sender}, C{room_id},
        C{type}, C{state_key} or C{event_id} longer than 255 bytes but not
        255 code points is stored as rejected rather than dropped, because
        Synapse long counted code points there and such events exist in
        those rooms (client-server-api "Size limits" says bytes).
    """

    identifier: str
    stable: bool = True
    event_id_format: EventIdFormat = EventIdFormat.URL_SAFE_BASE64
    event_id_in_event: bool = False
    state_res: StateResAlgorithm = StateResAlgorithm.V2
    enforce_key_validity: bool = True
    special_case_aliases_auth: bool = False
    redaction_checks_event_id_domain: bool = False
    strict_canonical_json: bool = True
    limit_notifications_power_levels: bool = True
    knocking: bool = True
    restricted_joins: bool = True
    knock_restricted: bool = True
    integer_power_levels: bool = True
    redaction_rules: RedactionRules = RedactionRules.V11
    implicit_room_creator: bool = True
    redacts_in_content: bool = True
    room_id_from_create_event: bool = False
    create_event_in_auth_events: bool = True
    privileged_creators: bool = False
    lenient_event_byte_limits: bool = False


_v1 = RoomVersion(
    identifier="1",
    event_id_format=EventIdFormat.SERVER_MADE,
    event_id_in_event=True,
    state_res=StateResAlgorithm.V1,
    enforce_key_validity=False,
    special_case_aliases_auth=True,
    redaction_checks_event_id_domain=True,
    strict_canonical_json=False,
    limit_notifications_power_levels=False,
    knocking=False,
    restricted_joins=False,
    knock_restricted=False,
    integer_power_levels=False,
    redaction_rules=RedactionRules.V1,
    implicit_room_creator=False,
    redacts_in_content=False,
    lenient_event_byte_limits=True,
)
_v2 = replace(_v1, identifier="2", state_res=StateResAlgorithm.V2)
_v3 = replace(
    _v2,
    identifier="3",
    event_id_format=EventIdFormat.BASE64,
    event_id_in_event=False,
    redaction_checks_event_id_domain=False,
)
_v4 = replace(_v3, identifier="4", event_id_format=EventIdFormat.URL_SAFE_BASE64)
_v5 = replace(_v4, identifier="5", enforce_key_validity=True)
_v6 = replace(
    _v5,
    identifier="6",
    special_case_aliases_auth=False,
    strict_canonical_json=True,
    limit_notifications_power_levels=True,
    redaction_rules=RedactionRules.V6,
)
_v7 = replace(_v6, identifier="7", knocking=True)
_v8 = replace(
    _v7, identifier="8", restricted_joins=True, redaction_rules=RedactionRules.V8
)
_v9 = replace(_v8, identifier="9", redaction_rules=RedactionRules.V9)
_v10 = replace(_v9, identifier="10", knock_restricted=True, integer_power_levels=True)
_v11 = replace(
    _v10,
    identifier="11",
    redaction_rules=RedactionRules.V11,
    implicit_room_creator=True,
    redacts_in_content=True,
    lenient_event_byte_limits=False,
)
_v12 = replace(
    _v11,
    identifier="12",
    state_res=StateResAlgorithm.V2_1,
    room_id_from_create_event=True,
    create_event_in_auth_events=False,
    privileged_creators=True,
)

#: Every known room version by identifier.
KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v
    for v in (_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11, _v12)
}

#: The version of new rooms unless the client or config asks otherwise
#: (client-server-api "Room versions": servers SHOULD default to 12).
DEFAULT_ROOM_VERSION: RoomVersion = _v12


class UnsupportedRoomVersion(ValueError):
    """Raised for a room version identifier this server does not know."""


def get_room_version(identifier: str) -> RoomVersion:
    """
    Look up a room version by its identifier.

    @raise UnsupportedRoomVersion: for an unknown identifier.
    """
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except (KeyError, TypeError):
        raise UnsupportedRoomVersion(identifier) from None
