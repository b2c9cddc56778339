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

import functools
import os
import re
from pathlib import Path
from typing import Any

import yaml
from twisted.trial import unittest

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
        },
    )],
    "POST /_matrix/client/v1/login/get_token": [(
        "/../v1/login/get_token", {}, {"auth": k("object")},
    )],
    "POST /_matrix/client/v3/refresh": [(
        "/refresh", {"refresh_token": "nope"}, {"refresh_token": k("string", True)},
    )],
    "POST /_matrix/client/v3/logout": [("/logout", {}, {})],
    "POST /_matrix/client/v3/logout/all": [("/logout/all", {}, {})],
    "POST /_matrix/client/v3/account/password": [(
        "/account/password", {"new_password": "new pw"},
        {"new_password": k("string", True), "logout_devices": k("boolean"), "auth": k("object")},
    )],
    "POST /_matrix/client/v3/account/deactivate": [(
        "/account/deactivate", {},
        {"auth": k("object"), "id_server": k("string"), "erase": k("boolean")},
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
    "POST /_matrix/client/v3/delete_devices": [(
        "/delete_devices", {"devices": ["NOPE"]},
        {"devices": k("array", True), "auth": k("object")},
    )],
    "POST /_matrix/client/v3/createRoom": [(
        "/createRoom", {},
        {
            "visibility": k("string"), "room_alias_name": k("string"), "name": k("string"),
            "topic": k("string"), "invite": k("array"), "invite_3pid": k("array"),
            "room_version": k("string"), "creation_content": k("object"),
            "initial_state": k("array"), "preset": k("string"), "is_direct": k("boolean"),
            "power_level_content_override": k("object"),
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
        } | {"events": k("object"), "users": k("object"), "notifications": k("object")}),
        ("/rooms/{room}/state/m.room.join_rules/", {"join_rule": "invite"}, {
            "join_rule": k("string", True, lenient=True), "allow": k("array", lenient=True),
        }),
        ("/rooms/{room}/state/m.room.history_visibility/", {"history_visibility": "shared"}, {
            "history_visibility": k("string", True, lenient=True),
        }),
        ("/rooms/{room}/state/m.room.canonical_alias/", {}, {
            "alias": k("string"), "alt_aliases": k("array"),
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
        {"new_version": k("string", True), "additional_creators": k("array")},
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
        },
    )],
    "PUT /_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags/{tag}": [(
        "/user/{alice}/rooms/{room}/tags/u.work", {}, {"order": k("number")},
    )],
    "POST /_matrix/client/v3/user/{user_id}/filter": [(
        "/user/{alice}/filter", {},
        {
            "event_fields": k("array"), "event_format": k("string"), "presence": k("object"),
            "account_data": k("object"), "room": k("object"),
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
    "PUT /_matrix/client/v3/directory/list/room/{room_id}": [(
        "/directory/list/room/{room}", {"visibility": "public"}, {"visibility": k("string")},
    )],
    "POST /_matrix/client/v3/publicRooms": [(
        "/publicRooms", {},
        {
            "limit": k("integer"), "since": k("string"), "filter": k("object"),
            "include_all_networks": k("boolean"), "third_party_instance_id": k("string"),
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
}


def mounted_body_routes(router: Any) -> set[str]:
    """Every C{"METHOD pattern"} for POST/PUT in C{router}, r0 folded into v3."""
    found: set[str] = set()
    for path, methods in router._static.items():
        for method in methods:
            found.add(f"{method} {path}")
    routes = list(router._rest)
    for by_index in router._dynamic.values():
        for by_literal in by_index.values():
            for bucket in by_literal.values():
                routes.extend(bucket)
    for route in routes:
        found.add(f"{route.method} {route.pattern}")
    return {
        r.replace("/client/r0/", "/client/v3/")
        for r in found
        if r.split(" ", 1)[0] in ("POST", "PUT")
    }


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
        self, label: str, path: str, method: str, body: Any, ok_2xx: bool, failures: list[str]
    ) -> None:
        r = await self.request(method, path, body, access_token=self.token)
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
            for i, bad_body in enumerate(([], "x", 3, None)):
                label = f"{method} {path_template} body={bad_body!r}"
                p = path.replace("TXN", self.next_txn())
                raw = b"null" if bad_body is None else None
                r_path = p
                if raw is not None:
                    r = await self.request(method, r_path, raw_body=raw, access_token=self.token)
                    if r.code >= 500 or (r.code < 300 and key in NEEDS_OBJECT) or (
                        r.code >= 400 and not str(r.json.get("errcode", "")).startswith("M_")
                    ):
                        failures.append(f"{label}: {r.code} {r.body[:200]!r}")
                    continue
                await self.check(label, r_path, method, bad_body, key not in NEEDS_OBJECT, failures)
            for body_key, (spec_type, required, lenient) in keys.items():
                for value in wrong_values(spec_type):
                    body = dict(base)
                    body[body_key] = value
                    ok_2xx = lenient or (value is None and not required)
                    label = f"{method} {path_template} {body_key}={value!r}"
                    await self.check(
                        label, path.replace("TXN", self.next_txn()), method, body, ok_2xx, failures
                    )
        if failures:
            self.fail("\n".join(failures))

    async def test_every_route_listed(self) -> None:
        """Each mounted POST/PUT route has an entry in L{BODIES} (and none is stale)."""
        mounted = mounted_body_routes(self.hs.router)
        self.assertEqual(sorted(mounted - set(BODIES)), [], "POST/PUT routes missing from BODIES")
        self.assertEqual(sorted(set(BODIES) - mounted), [], "BODIES lists unmounted routes")


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
                if method not in ("post", "put") or not isinstance(op, dict):
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
                listed.update({name: t for name, (t, _r, _l) in keys.items()})
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
