"""
The server-default push rules, exactly as client-server-api "Predefined
Rules" (modules/push.md, v1.17) lists them, in that order.

v1.17 removed the legacy body-matching defaults (C{.m.rule.contains_display_name},
C{.m.rule.contains_user_name}, C{.m.rule.roomnotif}), so there are no
default content rules; the C{contains_display_name} condition kind is still
evaluated (deprecated) for user rules that use it.

C{.m.rule.master} is always first of all rules (even before user override
rules); every other default rule comes after the user's rules of its kind
(L{conduit_tw.handlers.push_rules.render_ruleset}).
"""

from __future__ import annotations

import copy
from typing import Any

KINDS = ("override", "content", "room", "sender", "underride")

#: Stands for the user's Matrix ID in the definitions below.
USER_ID = "[the user's Matrix ID]"

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _type_is(event_type: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": "type", "pattern": event_type}


_STATE_KEY_EMPTY = {"kind": "event_match", "key": "state_key", "pattern": ""}

#: Master rule: matches everything, disabled by default, above all rules.
MASTER: dict[str, Any] = {
    "rule_id": ".m.rule.master", "default": True, "enabled": False,
    "conditions": [], "actions": [],
}

#: Default override rules after the user's override rules (spec order).
OVERRIDE: list[dict[str, Any]] = [
    {
        "rule_id": ".m.rule.suppress_notices", "default": True, "enabled": True,
        "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.invite_for_me", "default": True, "enabled": True,
        "conditions": [
            _type_is("m.room.member"),
            {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
            {"kind": "event_match", "key": "state_key", "pattern": USER_ID},
        ],
        "actions": ["notify", _SOUND_DEFAULT],
    },
    {
        "rule_id": ".m.rule.member_event", "default": True, "enabled": True,
        "conditions": [_type_is("m.room.member")],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.is_user_mention", "default": True, "enabled": True,
        "conditions": [
            {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": USER_ID},
        ],
        "actions": ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
    },
    {
        "rule_id": ".m.rule.is_room_mention", "default": True, "enabled": True,
        "conditions": [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        "actions": ["notify", _HIGHLIGHT],
    },
    {
        "rule_id": ".m.rule.tombstone", "default": True, "enabled": True,
        "conditions": [_type_is("m.room.tombstone"), _STATE_KEY_EMPTY],
        "actions": ["notify", _HIGHLIGHT],
    },
    {
        "rule_id": ".m.rule.reaction", "default": True, "enabled": True,
        "conditions": [_type_is("m.reaction")],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.room.server_acl", "default": True, "enabled": True,
        "conditions": [_type_is("m.room.server_acl"), _STATE_KEY_EMPTY],
        "actions": [],
    },
    {
        "rule_id": ".m.rule.suppress_edits", "default": True, "enabled": True,
        "conditions": [
            {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"},
        ],
        "actions": [],
    },
]

#: Default content rules (none since v1.17).
CONTENT: list[dict[str, Any]] = []

#: Default underride rules (spec order).
UNDERRIDE: list[dict[str, Any]] = [
    {
        "rule_id": ".m.rule.call", "default": True, "enabled": True,
        "conditions": [_type_is("m.call.invite")],
        "actions": ["notify", {"set_tweak": "sound", "value": "ring"}],
    },
    {
        "rule_id": ".m.rule.encrypted_room_one_to_one", "default": True, "enabled": True,
        "conditions": [{"kind": "room_member_count", "is": "2"}, _type_is("m.room.encrypted")],
        "actions": ["notify", _SOUND_DEFAULT],
    },
    {
        "rule_id": ".m.rule.room_one_to_one", "default": True, "enabled": True,
        "conditions": [{"kind": "room_member_count", "is": "2"}, _type_is("m.room.message")],
        "actions": ["notify", _SOUND_DEFAULT],
    },
    {
        "rule_id": ".m.rule.message", "default": True, "enabled": True,
        "conditions": [_type_is("m.room.message")],
        "actions": ["notify"],
    },
    {
        "rule_id": ".m.rule.encrypted", "default": True, "enabled": True,
        "conditions": [_type_is("m.room.encrypted")],
        "actions": ["notify"],
    },
]

#: Every default rule by ID, with its kind.
BY_ID: dict[str, tuple[str, dict[str, Any]]] = {
    r["rule_id"]: (kind, r)
    for kind, rules in (("override", [MASTER] + OVERRIDE), ("content", CONTENT), ("underride", UNDERRIDE))
    for r in rules
}


def _substitute(value: Any, user_id: str) -> Any:
    if value == USER_ID:
        return user_id
    if isinstance(value, list):
        return [_substitute(v, user_id) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, user_id) for k, v in value.items()}
    return value


def default_rule(rule_id: str, user_id: str) -> tuple[str, dict[str, Any]] | None:
    """C{(kind, rule)} of a default rule for C{user_id} (a fresh copy), or None."""
    found = BY_ID.get(rule_id)
    if found is None:
        return None
    return found[0], _substitute(copy.deepcopy(found[1]), user_id)
