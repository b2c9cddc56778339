"""
Fuzz-like type checks of every JSON request body (hardening: "every body
key of every endpoint is type-checked, never 500").

L{BODIES} lists, for every mounted POST/PUT route, a path to send to, a
valid base body and the spec type of each body key (client-server-api
OpenAPI, C{requestBody} schema properties). For each key, the test sends
the base body with that key set to every value of a wrong JSON type, and
also non-object bodies. Every answer must be a 4xx with an C{M_} errcode;
a 2xx is accepted only where the server may ignore the value: C{null} for
an optional key (treated as absent), or a key marked lenient (event
content the spec lets servers store as given). L{test_every_route_listed}
fails when a new POST/PUT route is mounted without an entry here.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from twisted.trial import unittest

from conduit_tw.api.body import body_field
from conduit_tw.errors import MatrixError
from tests.api.rooms import V3, RoomsTestCase, q

#: One value of each JSON type.
SAMPLES: dict[str, Any] = {
    "string": "x",
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "null": None,
    "array": ["x"],
    "object": {"a": 1},
}


def wrong_values(spec_type: str) -> list[Any]:
    """Sample values whose JSON type is not C{spec_type}."""
    ok = {spec_type}
    if spec_type == "number":
        ok.add("integer")
    return [v for t, v in SAMPLES.items() if t not in ok]


#: key -> (spec type, required?, lenient?)
Keys = dict[str, tuple[str, bool, bool]]


def k(spec_type: str, required: bool = False, lenient: bool = False) -> tuple[str, bool, bool]:
    """One key's spec: its type, whether required, whether a 2xx is tolerated."""
    return (spec_type, required, lenient)


REASON: Keys = {"reason": k("string")}

#: Keys of a UIA C{auth} dict (client-server-api "User-Interactive
#: Authentication API", "Password-based").
AUTH: Keys = {
    "auth/type": k("string"), "auth/session": k("string"), "auth/password": k("string"),
    "auth/identifier": k("object"), "auth/identifier/type": k("string"),
    "auth/identifier/user": k("string"),
}

#: "METHOD pattern" (v3 form) -> list of (path, base body, keys). Paths may
#: use {room}, {alice}, {bob}, {event}, {device} and {alias}.
BODIES: dict[str, list[tuple[str, dict[str, Any], Keys]]] = {
    "POST /_matrix/client/v3/register": [(
        "/register",
        {"auth": {"type": "m.login.dummy"}, "username": "carol", "password": "secret pw"},
        {
            "username": k("string"), "password": k("string"), "device_id": k("string"),
            "initial_device_display_name": k("string"), "inhibit_login": k("boolean"),
            "refresh_token": k("boolean"), "auth": k("object"),
            "auth/type": k("string"), "auth/session": k("string"),
        },
    )],
    "PUT /_matrix/client/v3/presence/{user_id}/status": [(
        "/presence/{alice}/status", {"presence": "online"},
        {"presence": k("string", True), "status_msg": k("string")},
    )],
    "PUT /_matrix/client/v3/user/{user_id}/account_data/{type}": [(
        "/user/{alice}/account_data/org.example.t", {"a": 1}, {},
    )],
    "PUT /_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{type}": [(
        "/user/{alice}/rooms/{room}/account_data/org.example.t", {"a": 1}, {},
    )],
    "POST /_matrix/client/v3/login": [(
        "/login",
        {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "secret pw",
        },
        {
            "type": k("string", True), "identifier": k("object"), "password": k("string"),
            "token": k("string"), "device_id": k("string"),
            "initial_device_display_name": k("string"), "refresh_token": k("boolean"),
            "user": k("string"), "medium": k("string"), "address": k("string"),
            "identifier/type": k("string"), "identifier/user": k("string"),
        },
    )],
    "POST /_matrix/client/v1/login/get_token": [(
        "/../v1/login/get_token", {}, {"auth": k("object")} | AUTH,
    )],
    "POST /_matrix/client/v3/refresh": [(
        "/refresh", {"refresh_token": "nope"}, {"refresh_token": k("string", True)},
    )],
    "POST /_matrix/client/v3/logout": [("/logout", {}, {})],
    "POST /_matrix/client/v3/logout/all": [("/logout/all", {}, {})],
    # Third-party identifiers: none are kept (api/client/threepid.py).
    **{f"POST /_matrix/client/v3/{path}": [(f"/{path}", {}, keys)] for path, keys in (
        ("account/3pid", {"three_pid_creds": k("object", True)}),
        ("account/3pid/add", {
            "client_secret": k("string", True), "sid": k("string", True), "auth": k("object"),
        } | AUTH),
        ("account/3pid/bind", {
            "client_secret": k("string", True), "id_server": k("string", True),
            "id_access_token": k("string", True), "sid": k("string", True),
        }),
        *((f"{where}/{medium}/requestToken", {
            "client_secret": k("string", True), "send_attempt": k("integer", True),
            "next_link": k("string"), "id_server": k("string"), "id_access_token": k("string"),
        } | ({"email": k("string", True)} if medium == "email" else
             {"country": k("string", True), "phone_number": k("string", True)}))
          for where in ("account/3pid", "register", "account/password")
          for medium in ("email", "msisdn")),
    )},
    **{f"POST /_matrix/client/v3/account/3pid/{name}": [(
        f"/account/3pid/{name}", {"medium": "email", "address": "a@example.org"},
        {"medium": k("string", True), "address": k("string", True), "id_server": k("string")},
    )] for name in ("delete", "unbind")},
    "POST /_matrix/client/v3/account/password": [(
        "/account/password", {"new_password": "new pw"},
        {"new_password": k("string", True), "logout_devices": k("boolean"), "auth": k("object")} | AUTH,
    )],
    "POST /_matrix/client/v3/account/deactivate": [(
        "/account/deactivate", {},
        {"auth": k("object"), "id_server": k("string"), "erase": k("boolean")} | AUTH,
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}": [(
        "/rooms/{room}/receipt/m.read/{event}", {}, {"thread_id": k("string")},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/read_markers": [(
        "/rooms/{room}/read_markers", {},
        {"m.fully_read": k("string"), "m.read": k("string"), "m.read.private": k("string")},
    )],
    "PUT /_matrix/client/v3/devices/{device_id}": [(
        "/devices/{device}", {}, {"display_name": k("string")},
    )],
    # The one DELETE with a body (UIA).
    "DELETE /_matrix/client/v3/devices/{device_id}": [("/devices/NOPE", {}, {"auth": k("object")} | AUTH)],
    "POST /_matrix/client/v3/delete_devices": [(
        "/delete_devices", {"devices": ["NOPE"]},
        {"devices": k("array", True), "auth": k("object"), "devices/[]": k("string")} | AUTH,
    )],
    "POST /_matrix/client/v3/createRoom": [(
        "/createRoom", {},
        {
            "visibility": k("string"), "room_alias_name": k("string"), "name": k("string"),
            "topic": k("string"), "invite": k("array"), "invite_3pid": k("array"),
            "room_version": k("string"), "creation_content": k("object"),
            "initial_state": k("array"), "preset": k("string"), "is_direct": k("boolean"),
            "power_level_content_override": k("object"),
            "invite/[]": k("string"), "initial_state/[]": k("object"),
            "initial_state/[]/type": k("string", True), "initial_state/[]/state_key": k("string"),
            "initial_state/[]/content": k("object", True),
            "creation_content/m.federate": k("boolean"), "creation_content/type": k("string"),
            "creation_content/predecessor": k("object"),
            "creation_content/additional_creators": k("array"),
            "power_level_content_override/ban": k("integer"),
            "power_level_content_override/users": k("object"),
            "power_level_content_override/users/@x:test": k("integer"),
            "power_level_content_override/events": k("object"),
            "power_level_content_override/events/m.room.name": k("integer"),
            "power_level_content_override/notifications": k("object"),
            "power_level_content_override/notifications/room": k("integer"),
        },
    )],
    "PUT /_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}": [(
        # Event content is free-form for the server.
        "/rooms/{room}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": "hi"},
        {"body": k("string", lenient=True), "msgtype": k("string", lenient=True)},
    )],
    "PUT /_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key:*}": [
        # State content checked by the authorization rules (power levels
        # are integers from room version 10 on; v10 is the default).
        ("/rooms/{room}/state/m.room.power_levels/", {}, {
            key: k("integer") for key in (
                "ban", "events_default", "invite", "kick", "redact", "state_default",
                "users_default",
            )
        } | {
            "events": k("object"), "users": k("object"), "notifications": k("object"),
            "users/@x:test": k("integer"), "events/m.room.name": k("integer"),
            "notifications/room": k("integer"),
        }),
        ("/rooms/{room}/state/m.room.join_rules/", {"join_rule": "invite"}, {
            "join_rule": k("string", True, lenient=True), "allow": k("array", lenient=True),
            "allow/[]": k("object", lenient=True), "allow/[]/type": k("string", lenient=True),
            "allow/[]/room_id": k("string", lenient=True),
        }),
        ("/rooms/{room}/state/m.room.history_visibility/", {"history_visibility": "shared"}, {
            "history_visibility": k("string", True, lenient=True),
        }),
        ("/rooms/{room}/state/m.room.canonical_alias/", {}, {
            "alias": k("string"), "alt_aliases": k("array"), "alt_aliases/[]": k("string"),
        }),
        ("/rooms/{room}/state/m.room.name/", {"name": "n"}, {"name": k("string", lenient=True)}),
        ("/rooms/{room}/state/m.room.topic/", {"topic": "t"}, {"topic": k("string", lenient=True)}),
        ("/rooms/{room}/state/m.room.server_acl/", {}, {
            "allow": k("array", lenient=True), "deny": k("array", lenient=True),
            "allow_ip_literals": k("boolean", lenient=True),
        }),
    ],
    "PUT /_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{txn_id}": [(
        "/rooms/{room}/redact/{event}/{txn}", {}, REASON,
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/redact/{event_id}": [(
        "/rooms/{room}/redact/{event}", {}, REASON,
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/upgrade": [(
        "/rooms/{room}/upgrade", {"new_version": "10"},
        {
            "new_version": k("string", True), "additional_creators": k("array"),
            "additional_creators/[]": k("string"),
        },
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/report/{event_id}": [(
        # score was removed in v1.18 and is ignored (old clients still send it).
        "/rooms/{room}/report/{event}", {},
        {"reason": k("string"), "score": k("integer", lenient=True)},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/report": [(
        "/rooms/{room}/report", {"reason": "spam"}, REASON,
    )],
    "POST /_matrix/client/v3/users/{user_id}/report": [(
        "/users/{bob}/report", {"reason": "spam"}, REASON,
    )],
    "PUT /_matrix/client/v3/pushrules/{scope}/{kind}/{rule_id}": [
        ("/pushrules/global/override/my.rule", {"actions": ["notify"]}, {
            "actions": k("array", True), "conditions": k("array"),
            "conditions/[]": k("object"), "conditions/[]/kind": k("string", True),
            "conditions/[]/key": k("string"), "conditions/[]/pattern": k("string"),
            "conditions/[]/is": k("string"),
        }),
        ("/pushrules/global/content/my.rule", {"actions": ["notify"], "pattern": "cake"}, {
            "actions": k("array", True), "pattern": k("string", True),
        }),
    ],
    "PUT /_matrix/client/v3/pushrules/{scope}/{kind}/{rule_id}/enabled": [(
        "/pushrules/global/override/.m.rule.master/enabled", {"enabled": True},
        {"enabled": k("boolean", True)},
    )],
    "PUT /_matrix/client/v3/pushrules/{scope}/{kind}/{rule_id}/actions": [(
        "/pushrules/global/override/.m.rule.master/actions", {"actions": []},
        {"actions": k("array", True)},
    )],
    "POST /_matrix/client/v3/pushers/set": [(
        "/pushers/set",
        {
            "pushkey": "pk", "kind": "http", "app_id": "a.b", "app_display_name": "A",
            "device_display_name": "D", "lang": "en", "data": {"url": "https://p.example/_matrix/push/v1/notify"},
        },
        {
            "pushkey": k("string", True), "app_id": k("string", True),
            "app_display_name": k("string", True), "device_display_name": k("string", True),
            "profile_tag": k("string"), "lang": k("string", True), "data": k("object", True),
            "append": k("boolean"),
            # kind may be null (deletes the pusher).
            "kind": k("string"),
            "data/url": k("string"), "data/format": k("string"),
        },
    )],
    "PUT /_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags/{tag}": [(
        "/user/{alice}/rooms/{room}/tags/u.work", {}, {"order": k("number")},
    )],
    # -- key backup (key_backup.yaml). No backup exists, so a valid body is
    # 404 there: the types are checked first.
    "POST /_matrix/client/v3/room_keys/version": [(
        "/room_keys/version", {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}},
        {"algorithm": k("string", True), "auth_data": k("object", True)},
    )],
    "PUT /_matrix/client/v3/room_keys/version/{version}": [(
        "/room_keys/version/1", {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}},
        {"algorithm": k("string", True), "auth_data": k("object", True), "version": k("string")},
    )],
    "PUT /_matrix/client/v3/room_keys/keys": [(
        "/room_keys/keys?version=1", {"rooms": {"!r:test": {"sessions": {}}}},
        {
            "rooms": k("object", True), "rooms/!r:test": k("object"),
            "rooms/!r:test/sessions": k("object", True), "rooms/!r:test/sessions/s": k("object"),
        },
    )],
    "PUT /_matrix/client/v3/room_keys/keys/{room_id}": [(
        "/room_keys/keys/{room}?version=1", {"sessions": {}},
        {"sessions": k("object", True), "sessions/s": k("object"), "sessions/s/is_verified": k("boolean", True)},
    )],
    "PUT /_matrix/client/v3/room_keys/keys/{room_id}/{session_id}": [(
        "/room_keys/keys/{room}/s?version=1",
        {"first_message_index": 0, "forwarded_count": 0, "is_verified": False, "session_data": {}},
        {
            "first_message_index": k("integer", True), "forwarded_count": k("integer", True),
            "is_verified": k("boolean", True), "session_data": k("object", True),
        },
    )],
    "POST /_matrix/client/v3/search": [(
        "/search",
        {"search_categories": {"room_events": {
            "search_term": "x", "keys": ["content.body"], "order_by": "rank",
            "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
            "include_state": True, "groupings": {"group_by": [{"key": "room_id"}]},
            "filter": {"limit": 5},
        }}},
        {
            "search_categories": k("object", True),
            "search_categories/room_events": k("object"),
            "search_categories/room_events/search_term": k("string", True),
            "search_categories/room_events/keys": k("array"),
            "search_categories/room_events/keys/[]": k("string"),
            "search_categories/room_events/order_by": k("string"),
            "search_categories/room_events/filter": k("object"),
            "search_categories/room_events/filter/limit": k("integer"),
            "search_categories/room_events/event_context": k("object"),
            "search_categories/room_events/event_context/before_limit": k("integer"),
            "search_categories/room_events/event_context/after_limit": k("integer"),
            "search_categories/room_events/event_context/include_profile": k("boolean"),
            "search_categories/room_events/include_state": k("boolean"),
            "search_categories/room_events/groupings": k("object"),
            "search_categories/room_events/groupings/group_by": k("array"),
            "search_categories/room_events/groupings/group_by/[]": k("object"),
            "search_categories/room_events/groupings/group_by/[]/key": k("string"),
        },
    )],
    "POST /_matrix/client/v3/user/{user_id}/filter": [(
        "/user/{alice}/filter", {},
        {
            "event_fields": k("array"), "event_format": k("string"), "presence": k("object"),
            "account_data": k("object"), "room": k("object"),
            "event_fields/[]": k("string"), "presence/limit": k("integer"),
            "presence/types": k("array"), "presence/types/[]": k("string"),
            "room/rooms": k("array"), "room/rooms/[]": k("string"), "room/not_rooms": k("array"),
            "room/include_leave": k("boolean"), "room/timeline": k("object"),
            "room/timeline/limit": k("integer"), "room/timeline/types": k("array"),
            "room/timeline/types/[]": k("string"), "room/timeline/not_senders/[]": k("string"),
            "room/timeline/contains_url": k("boolean"), "room/state": k("object"),
            "room/state/lazy_load_members": k("boolean"),
            "room/state/include_redundant_members": k("boolean"),
            "room/ephemeral/limit": k("integer"), "room/account_data/limit": k("integer"),
            "room/timeline/unread_thread_notifications": k("boolean"),
        },
    )],
    "PUT /_matrix/client/v3/profile/{user_id}/{key}": [
        ("/profile/{alice}/displayname", {"displayname": "A"}, {"displayname": k("string", True)}),
        ("/profile/{alice}/avatar_url", {"avatar_url": "mxc://test/a"}, {"avatar_url": k("string", True)}),
    ],
    "PUT /_matrix/client/v3/rooms/{room_id}/typing/{user_id}": [(
        "/rooms/{room}/typing/{alice}", {"typing": True, "timeout": 1000},
        {"typing": k("boolean", True), "timeout": k("integer")},
    )],
    "PUT /_matrix/client/v3/directory/room/{room_alias}": [(
        "/directory/room/{alias}", {"room_id": "{room}"}, {"room_id": k("string", True)},
    )],
    "PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}": [(
        "/directory/list/appservice/irc/{room}", {"visibility": "public"},
        {"visibility": k("string", True)},
    )],
    "POST /_matrix/client/v1/appservice/{appserviceId}/ping": [(
        "/../v1/appservice/irc/ping", {}, {"transaction_id": k("string")},
    )],
    "PUT /_matrix/client/v3/directory/list/room/{room_id}": [(
        "/directory/list/room/{room}", {"visibility": "public"}, {"visibility": k("string")},
    )],
    "POST /_matrix/client/v3/user/{user_id}/openid/request_token": [
        ("/user/{alice}/openid/request_token", {}, {}),
    ],
    "POST /_matrix/client/v3/user_directory/search": [(
        "/user_directory/search", {"search_term": "a"},
        {"search_term": k("string", True), "limit": k("integer")},
    )],
    "POST /_matrix/client/v3/publicRooms": [(
        "/publicRooms", {},
        {
            "limit": k("integer"), "since": k("string"), "filter": k("object"),
            "include_all_networks": k("boolean"), "third_party_instance_id": k("string"),
            "filter/generic_search_term": k("string"), "filter/room_types": k("array"),
        },
    )],
    "POST /_matrix/client/v3/join/{room_id_or_alias}": [(
        "/join/{room}", {}, {"reason": k("string"), "third_party_signed": k("object")},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/join": [(
        "/rooms/{room}/join", {}, {"reason": k("string"), "third_party_signed": k("object")},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/invite": [(
        "/rooms/{room}/invite", {"user_id": "{bob}"},
        {"user_id": k("string", True), "reason": k("string")},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/leave": [("/rooms/{room}/leave", {}, REASON)],
    "POST /_matrix/client/v3/rooms/{room_id}/forget": [("/rooms/{room}/forget", {}, {})],
    "POST /_matrix/client/v3/rooms/{room_id}/kick": [(
        "/rooms/{room}/kick", {"user_id": "{bob}"},
        {"user_id": k("string", True), "reason": k("string")},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/ban": [(
        "/rooms/{room}/ban", {"user_id": "{bob}"},
        {"user_id": k("string", True), "reason": k("string")},
    )],
    "POST /_matrix/client/v3/rooms/{room_id}/unban": [(
        "/rooms/{room}/unban", {"user_id": "{bob}"},
        {"user_id": k("string", True), "reason": k("string")},
    )],
    "POST /_matrix/client/v3/knock/{room_id_or_alias}": [(
        "/knock/{room}", {}, {"reason": k("string")},
    )],
    # -- end-to-end encryption (keys.yaml, cross_signing.yaml, to_device.yaml)
    "POST /_matrix/client/v3/keys/upload": [(
        "/keys/upload", {},
        {
            "device_keys": k("object"), "one_time_keys": k("object"), "fallback_keys": k("object"),
            "device_keys/user_id": k("string", True), "device_keys/device_id": k("string", True),
            "device_keys/algorithms": k("array", True), "device_keys/keys": k("object", True),
            "device_keys/signatures": k("object", True),
            "one_time_keys/signed_curve25519:AAAA": k("object"),
            "fallback_keys/signed_curve25519:AAAA": k("object"),
        },
    )],
    "POST /_matrix/client/v3/keys/query": [(
        "/keys/query", {"device_keys": {}},
        {
            "device_keys": k("object", True), "timeout": k("integer"),
            "device_keys/@x:test": k("array"), "device_keys/@x:test/[]": k("string"),
        },
    )],
    "POST /_matrix/client/v3/keys/claim": [(
        "/keys/claim", {"one_time_keys": {}},
        {
            "one_time_keys": k("object", True), "timeout": k("integer"),
            "one_time_keys/@x:test": k("object"), "one_time_keys/@x:test/DEV": k("string"),
        },
    )],
    "POST /_matrix/client/v3/keys/device_signing/upload": [(
        "/keys/device_signing/upload", {},
        {
            "master_key": k("object"), "self_signing_key": k("object"),
            "user_signing_key": k("object"), "auth": k("object"),
            "master_key/user_id": k("string", True), "master_key/usage": k("array", True),
            "master_key/keys": k("object", True),
        },
    )],
    "POST /_matrix/client/v3/keys/signatures/upload": [(
        "/keys/signatures/upload", {}, {"@x:test": k("object"), "@x:test/KEY": k("object")},
    )],
    "PUT /_matrix/client/v3/sendToDevice/{event_type}/{txn_id}": [(
        "/sendToDevice/m.test/{txn}", {"messages": {}},
        {
            "messages": k("object", True), "messages/@x:test": k("object"),
            "messages/@x:test/DEV": k("object"),
        },
    )],
}


def mounted_routes(router: Any, methods: tuple[str, ...] = ("POST", "PUT")) -> set[str]:
    """
    Every client-server C{"METHOD pattern"} for C{methods} in C{router}, r0
    folded into v3. Server-server routes (C{/_matrix/key}, C{/_matrix/federation})
    follow another OpenAPI and check their bodies in their own tests.
    """
    found: set[str] = set()
    for path, handlers in router._static.items():
        for method in handlers:
            found.add(f"{method} {path}")
    routes = list(router._rest)
    for by_index in router._dynamic.values():
        for by_literal in by_index.values():
            for bucket in by_literal.values():
                routes.extend(bucket)
    for route in routes:
        found.add(f"{route.method} {route.pattern}")
    # Federation bodies (server-server-api) are type-checked by the
    # federation tests, which authenticate as a server (tests/federation/).
    return {
        r.replace("/client/r0/", "/client/v3/")
        for r in found
        if r.split(" ", 1)[0] in methods and " /_matrix/client/" in r
    }


def with_value(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """
    A deep copy of C{base} with C{value} at C{key}: a path of object keys
    separated by C{/}, where C{[]} stands for a one-element array.
    """
    body = copy.deepcopy(base)
    _put(body, key.split("/"), value)
    return body


def _put(holder: Any, parts: list[str], value: Any) -> None:
    part, rest = parts[0], parts[1:]
    if not rest:
        if part == "[]":
            holder.append(value)
        else:
            holder[part] = value
        return
    child: Any = [] if rest[0] == "[]" else {}
    if part == "[]":
        holder.append(child)
    else:
        if rest[0] != "[]" and isinstance(holder.get(part), dict):
            child = holder[part]
        holder[part] = child
    _put(child, rest, value)


class BodyTypesTests(RoomsTestCase):
    """See the module docstring."""

    async def fixture(self) -> dict[str, str]:
        """alice (requester) in a room with an event; bob joined too."""
        alice, self.token = await self.user("alice")
        bob, bob_token = await self.user("bob")
        room = await self.create_room(self.token, preset="public_chat")
        await self.join(bob_token, room)
        event = await self.send_ok(self.token, room)
        r = await self.request("GET", V3 + "/devices", access_token=self.token)
        device = r.json["devices"][0]["device_id"]
        return {
            "alice": alice, "bob": bob, "room": room, "event": event, "device": device,
            "alias": "#fuzz:test",
        }

    def fill(self, text: str, names: dict[str, str]) -> str:
        for name, value in names.items():
            text = text.replace("{%s}" % name, value)
        return text

    async def check(
        self, label: str, path: str, method: str, body: str, ok_2xx: bool, failures: list[str]
    ) -> None:
        """Send C{body} (JSON text); note in C{failures} what the answer gets wrong."""
        r = await self.request(method, path, raw_body=body.encode(), access_token=self.token)
        if r.code >= 500:
            failures.append(f"{label}: {r.code} {r.body[:200]!r}")
            return
        if 200 <= r.code < 300:
            if not ok_2xx:
                failures.append(f"{label}: accepted ({r.code})")
            return
        try:
            payload = r.json
        except ValueError:
            payload = None
        errcode = payload.get("errcode") if isinstance(payload, dict) else None
        if not (isinstance(errcode, str) and errcode.startswith("M_")):
            # A UIA challenge (401 with flows) is a proper answer too.
            if not (r.code == 401 and isinstance(payload, dict) and "flows" in payload):
                failures.append(f"{label}: {r.code} without errcode {r.body[:200]!r}")

    async def run_route(self, key: str) -> None:
        names = await self.fixture()
        method = key.split(" ", 1)[0]
        failures: list[str] = []
        for path_template, base, keys in BODIES[key]:
            path = path_template.replace("{txn}", "TXN")
            path = self.fill(path, {n: q(v) for n, v in names.items()})
            path = V3 + path if not path.startswith("/../") else "/_matrix/client" + path[3:]
            base = {
                bk: self.fill(bv, names) if isinstance(bv, str) else bv for bk, bv in base.items()
            }
            for bad_body in ([], ["x"], "x", 3, True, None):
                label = f"{method} {path_template} body={bad_body!r}"
                await self.check(
                    label, path.replace("TXN", self.next_txn()), method, json.dumps(bad_body),
                    key not in NEEDS_OBJECT, failures,
                )
            for body_key, (spec_type, required, lenient) in keys.items():
                for value in wrong_values(spec_type):
                    body = with_value(base, body_key, value)
                    ok_2xx = lenient or (value is None and not required)
                    label = f"{method} {path_template} {body_key}={value!r}"
                    await self.check(
                        label, path.replace("TXN", self.next_txn()), method, json.dumps(body),
                        ok_2xx, failures,
                    )
        if failures:
            self.fail("\n".join(failures))

    async def test_every_route_listed(self) -> None:
        """Each mounted POST/PUT route has an entry in L{BODIES} (and none is stale)."""
        # The media repository's uploads take raw bytes, not JSON
        # (api/media.py; tests/api/test_media.py covers them); server-server
        # routes have their own body tests (tests/federation/).
        mounted = {
            r for r in mounted_routes(self.hs.router)
            if " /_matrix/media/" not in r and "/_matrix/federation/" not in r
        }
        self.assertEqual(sorted(mounted - set(BODIES)), [], "POST/PUT routes missing from BODIES")
        every = mounted_routes(self.hs.router, ("POST", "PUT", "DELETE"))
        self.assertEqual(sorted(set(BODIES) - every), [], "BODIES lists unmounted routes")


#: Every body route needs a JSON object: a non-object body is 400 M_BAD_JSON
#: (logout bodies are ignored, as the spec defines none).
NEEDS_OBJECT = set(BODIES) - {
    "POST /_matrix/client/v3/logout", "POST /_matrix/client/v3/logout/all",
}


def _make_test(key: str) -> Any:
    async def test(self: BodyTypesTests) -> None:
        await self.run_route(key)

    test.__doc__ = f"Wrong-typed bodies for {key} answer 4xx M_*, never 5xx."
    return test


for _key in BODIES:
    _slug = "".join(c if c.isalnum() else "_" for c in _key.split("/client/", 1)[1])
    setattr(BodyTypesTests, f"test_{_key.split()[0].lower()}_{_slug}", _make_test(_key))


# -- The table checked against the spec's OpenAPI ---------------------------

REPO = Path(__file__).resolve().parent.parent.parent
#: Where the spec may be: $CONDUIT_TW_SPEC, shared/ beside the checkout, /work/shared.
SPEC_CANDIDATES = [
    Path(p) for p in (os.environ.get("CONDUIT_TW_SPEC", ""),) if p
] + [REPO.parent / "shared" / "matrix-spec", Path("/work/shared/matrix-spec")]

#: Spec body keys deliberately left out of L{BODIES}: "METHOD pattern" -> keys.
NOT_FUZZED: dict[str, set[str]] = {
    # The third-party invite form of /invite (third_party_membership.yaml)
    # is answered 400 M_UNRECOGNIZED before any key is read.
    "POST /_matrix/client/v3/rooms/{room_id}/invite": {"id_server", "id_access_token", "medium", "address"},
}


#: Mounted POST/PUT routes for which the spec defines no JSON body.
NO_SPEC_BODY = {
    "POST /_matrix/client/v3/logout", "POST /_matrix/client/v3/logout/all",
    "POST /_matrix/client/v3/rooms/{room_id}/forget",
    # The legacy form of PUT .../redact/{eventId}/{txnId}.
    "POST /_matrix/client/v3/rooms/{room_id}/redact/{event_id}",
}


def _spec_dir() -> Path:
    for candidate in SPEC_CANDIDATES:
        if (candidate / "data" / "api" / "client-server").is_dir():
            return candidate / "data" / "api" / "client-server"
    raise FileNotFoundError(f"matrix-spec not found in {SPEC_CANDIDATES}")


@functools.lru_cache(maxsize=None)
def _load(path: Path) -> Any:
    """One parsed spec file (C loader when PyYAML has it)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


def _resolve(schema: Any, base: Path) -> tuple[Any, Path]:
    """Follow C{$ref}s (relative files, C{#/} pointers) to a schema."""
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        file_part, _, pointer = ref.partition("#")
        if file_part:
            base = (base.parent / file_part).resolve()
        doc = _load(base)
        for part in [p for p in pointer.split("/") if p]:
            doc = doc[part]
        schema = doc
    return schema, base


def _properties(schema: Any, base: Path) -> dict[str, str | None]:
    """Top-level property -> JSON type (None when the spec gives several or none)."""
    schema, base = _resolve(schema, base)
    props: dict[str, str | None] = {}
    if not isinstance(schema, dict):
        return props
    for part in schema.get("allOf", []):
        props.update(_properties(part, base))
    for name, sub in (schema.get("properties") or {}).items():
        sub, _ = _resolve(sub, base)
        t = sub.get("type") if isinstance(sub, dict) else None
        props[name] = t if isinstance(t, str) else None
    return props


def spec_bodies() -> dict[str, dict[str, str | None]]:
    """"METHOD /_matrix/client/vN/path" (variables as {}) -> body properties from the OpenAPI."""
    out: dict[str, dict[str, str | None]] = {}
    for path in sorted(_spec_dir().glob("*.yaml")):
        doc = _load(path.resolve())
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        try:
            prefix = doc["servers"][0]["variables"]["basePath"]["default"]
        except (KeyError, IndexError, TypeError):
            continue
        for spec_path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method not in ("post", "put", "delete") or not isinstance(op, dict):
                    continue
                schema = (
                    op.get("requestBody", {}).get("content", {})
                    .get("application/json", {}).get("schema")
                )
                if schema is None:
                    continue
                key = f"{method.upper()} {_shape(prefix + spec_path)}"
                out.setdefault(key, {}).update(_properties(schema, path))
    return out


def _shape(pattern: str) -> str:
    """A path with every {variable} (and {name:*}) written as {}."""
    return re.sub(r"\{[^}]*\}", "{}", pattern)


class SpecTableTests(unittest.SynchronousTestCase):
    """L{BODIES} lists every body key of the spec, with the spec's type."""

    def test_keys_match_spec(self) -> None:
        spec = spec_bodies()
        problems = []
        for route, variants in BODIES.items():
            props = spec.get(_shape(route.replace("{scope}", "global")))
            if props is None:
                if route not in NO_SPEC_BODY:
                    problems.append(f"{route}: no request body in the spec")
                continue
            listed: dict[str, str] = {}
            for _path, _base, keys in variants:
                listed.update({name: t for name, (t, _r, _l) in keys.items() if "/" not in name})
            missing = set(props) - set(listed) - NOT_FUZZED.get(route, set())
            if missing:
                problems.append(f"{route}: spec keys not fuzzed: {sorted(missing)}")
            for name, spec_type in props.items():
                if name in listed and spec_type is not None and listed[name] != spec_type:
                    problems.append(f"{route}: {name} is {spec_type} in the spec, {listed[name]} here")
        self.assertEqual(problems, [])

    def test_spec_found_routes(self) -> None:
        """The spec lookup works: the main body routes resolve to spec properties."""
        spec = spec_bodies()
        self.assertIn("preset", spec[_shape("POST /_matrix/client/v3/createRoom")])
        self.assertIn("auth", spec[_shape("POST /_matrix/client/v1/login/get_token")])


class ExactErrorTests(RoomsTestCase):
    """The errors the type checks answer, spelled out for the reported cases."""

    async def test_create_room_preset_of_wrong_type(self) -> None:
        """The reported bug: a list or object preset was a 500; it is 400 M_BAD_JSON."""
        _, token = await self.user("alice")
        for preset in (["public_chat"], {"a": 1}, 3, True):
            r = await self.request("POST", V3 + "/createRoom", {"preset": preset}, access_token=token)
            self.assertMatrixError(r, 400, "M_BAD_JSON")
            self.assertIn("preset", r.json["error"])

    async def test_create_room_creation_content_types(self) -> None:
        """Typed m.room.create keys in creation_content are checked."""
        _, token = await self.user("alice")
        r = await self.request(
            "POST", V3 + "/createRoom", {"creation_content": {"m.federate": "no"}},
            access_token=token,
        )
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        self.assertIn("creation_content.m.federate", r.json["error"])
        await self.create_room(token, creation_content={"m.federate": False, "org.example": [1]})

    async def test_reason_of_wrong_type(self) -> None:
        """A non-string membership reason is 400 M_BAD_JSON, not stored."""
        _, token = await self.user("alice")
        _, bob_token = await self.user("bob")
        room = await self.create_room(token, preset="public_chat")
        r = await self.request("POST", f"{V3}/join/{q(room)}", {"reason": 5}, access_token=bob_token)
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        await self.join(bob_token, room)
        r = await self.member_action(bob_token, room, "leave", {"reason": ["x"]})
        self.assertMatrixError(r, 400, "M_BAD_JSON")

    async def test_login_refresh_token_not_boolean(self) -> None:
        """C{refresh_token} in a login body must be a boolean."""
        await self.register("alice")
        r = await self.login(refresh_token="yes")
        self.assertMatrixError(r, 400, "M_BAD_JSON")
        r = await self.login(refresh_token=False)
        self.assertEqual(r.code, 200, r.body)


class BodyFieldTests(unittest.SynchronousTestCase):
    """L{body_field}: the spec's JSON types, null as absent, required keys."""

    def test_types(self) -> None:
        self.assertEqual(body_field({"n": 3}, "n", "integer"), 3)
        self.assertEqual(body_field({"n": 3}, "n", "number"), 3)
        self.assertEqual(body_field({"n": 1.5}, "n", "number"), 1.5)
        for value, spec_type in ((True, "integer"), (False, "number"), (1.5, "integer"),
                                 (1, "boolean"), ("1", "integer"), ([], "object"), ({}, "array")):
            with self.assertRaises(MatrixError) as e:
                body_field({"k": value}, "k", spec_type)
            self.assertEqual((e.exception.code, e.exception.errcode), (400, "M_BAD_JSON"))

    def test_null_and_required(self) -> None:
        self.assertEqual(body_field({"k": None}, "k", "string", default="d"), "d")
        self.assertEqual(body_field({}, "k", "string"), None)
        for body in ({}, {"k": None}):
            with self.assertRaises(MatrixError) as e:
                body_field(body, "k", "string", required=True)
            self.assertEqual((e.exception.code, e.exception.errcode), (400, "M_MISSING_PARAM"))
