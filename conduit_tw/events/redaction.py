"""
The redaction algorithm of each room version.

Redaction strips an event down to the keys the protocol needs; signatures
and reference hashes are computed over the redacted form (server-server-api
"Signing Events"). The rules live in rooms/fragments/v1-redactions.md (rooms
v1-5), v6-redactions.md (v6-7), rooms/v8.md "Redactions" (v8: join rules
keep C{allow}), v9-redactions.md (v9-10) and v11-redactions.md (v11+).
"""

from __future__ import annotations

from typing import Any, Mapping

from conduit_tw.events.room_versions import RedactionRules, RoomVersion

JsonDict = dict[str, Any]

#: Marker for "keep the whole content" (m.room.create from room v11).
_ALL: frozenset[str] = frozenset({"*"})

_TOP_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 no longer protects origin, membership and prev_state.
_TOP_V11 = _TOP_V1 - {"origin", "membership", "prev_state"}

_PL_V1 = frozenset(
    {
        "ban",
        "events",
        "events_default",
        "kick",
        "redact",
        "state_default",
        "users",
        "users_default",
    }
)

_CONTENT_V1: dict[str, frozenset[str]] = {
    "m.room.member": frozenset({"membership"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule"}),
    "m.room.power_levels": _PL_V1,
    "m.room.aliases": frozenset({"aliases"}),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
# v6: m.room.aliases loses its protected content.
_CONTENT_V6 = {k: v for k, v in _CONTENT_V1.items() if k != "m.room.aliases"}
# v8: join rules keep the restricted-join allow list.
_CONTENT_V8 = {**_CONTENT_V6, "m.room.join_rules": frozenset({"join_rule", "allow"})}
# v9: member events keep the authorising user of a restricted join.
_CONTENT_V9 = {
    **_CONTENT_V8,
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
}
# v11: create keeps everything, power levels keep invite, redaction keeps
# redacts; member's third_party_invite keeps only "signed" (special-cased).
_CONTENT_V11 = {
    **_CONTENT_V9,
    "m.room.create": _ALL,
    "m.room.power_levels": _PL_V1 | {"invite"},
    "m.room.redaction": frozenset({"redacts"}),
}

_RULES: dict[RedactionRules, tuple[frozenset[str], dict[str, frozenset[str]]]] = {
    RedactionRules.V1: (_TOP_V1, _CONTENT_V1),
    RedactionRules.V6: (_TOP_V1, _CONTENT_V6),
    RedactionRules.V8: (_TOP_V1, _CONTENT_V8),
    RedactionRules.V9: (_TOP_V1, _CONTENT_V9),
    RedactionRules.V11: (_TOP_V11, _CONTENT_V11),
}


def redact_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> JsonDict:
    """
    Apply the room version's redaction algorithm to a PDU.

    The result is a new dict; the input is not modified. Nested values that
    are kept unchanged (e.g. C{signatures}, C{auth_events}) are shared with
    the input, not copied, so do not mutate them in place.

    C{unsigned} is removed like any other unprotected key: this is the form
    that hashes and signatures cover. A server showing a redacted event to
    clients adds its own C{unsigned} (e.g. C{redacted_because}) afterwards.

    @param pdu: the event in federation format.
    @param room_version: the version of the event's room.
    @return: the redacted event.
    """
    top_keys, content_rules = _RULES[room_version.redaction_rules]
    out = {k: v for k, v in pdu.items() if k in top_keys}
    if "content" not in pdu:
        return out
    content = pdu["content"]
    etype = pdu.get("type")
    keep = content_rules.get(etype) if isinstance(etype, str) else None
    if keep is None or not isinstance(content, Mapping):
        out["content"] = {}
    elif keep is _ALL:
        out["content"] = dict(content)
    else:
        new_content = {k: v for k, v in content.items() if k in keep}
        if (
            room_version.redaction_rules is RedactionRules.V11
            and etype == "m.room.member"
        ):
            # rooms/v11 "Redactions": keep third_party_invite.signed only.
            tpi = content.get("third_party_invite")
            if isinstance(tpi, Mapping) and "signed" in tpi:
                new_content["third_party_invite"] = {"signed": tpi["signed"]}
        out["content"] = new_content
    return out
