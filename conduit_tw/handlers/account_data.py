"""
Account data, room tags, the ignore list and push rule management
(client-server-api "Client Config", "Room Tagging", "Ignoring Users",
"Push Rules: API").

Every change takes a position from the global stream, is written with its
change-index entry in one batch, and wakes the user's long-polls. /sync
reads the changes with L{AccountDataHandler.changes_since}.

Push rules are account data too (C{m.push_rules}): L{PushRulesHandler}
stores only the user's changes and renders the full ruleset on read, so a
C{m.push_rules} entry seen by /sync or C{GET .../account_data/m.push_rules}
always shows the current defaults.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, bad_json, forbidden, invalid_param, not_found
from conduit_tw.handlers import push_rules_default as defaults
from conduit_tw.handlers.push_rules import (
    CompiledRuleset,
    clean_actions,
    compile_ruleset,
    pattern_problem,
    render_ruleset,
)
from conduit_tw.handlers.push_rules_default import KINDS
from conduit_tw.handlers.ratelimit import check_json_size
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.notifier import Notifier
    from conduit_tw.storage.stores.account_data import AccountDataStore
    from conduit_tw.storage.stores.globals import GlobalsStore
    from conduit_tw.storage.stores.push_rules import PushRulesStore

#: Types the server manages: refused by the account data API with 405.
SERVER_MANAGED = frozenset({"m.fully_read", "m.push_rules"})
PUSH_RULES = "m.push_rules"
TAG = "m.tag"
IGNORED_USER_LIST = "m.ignored_user_list"
MAX_TAG_BYTES = 255


def check_room_id(room_id: str) -> None:
    """400 M_INVALID_PARAM unless C{room_id} looks like a room ID."""
    if not room_id.startswith("!"):
        raise invalid_param(f"{room_id} is not a valid room ID.")


@dataclass
class AccountDataChanges:
    """
    Account data changed since a position, as /sync shows it.

    @ivar global_events: C{[{"type", "content"}]} for the top-level
        C{account_data} section.
    @ivar rooms: room ID -> events for each room's C{account_data}.
    @ivar position: the highest position among the changes (0 if none).
    """

    global_events: list[dict[str, Any]] = field(default_factory=list)
    rooms: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    position: int = 0


class AccountDataHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: "AccountDataStore",
        globals: "GlobalsStore",
        notifier: "Notifier",
    ) -> None:
        self.store = store
        self.globals = globals
        self.notifier = notifier
        #: Serialises read-modify-write of one user's tags and push rules.
        self.locks = Linearizer()
        #: Set by L{PushRulesHandler}: renders a user's C{m.push_rules} content.
        self.render_push_rules: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        self._ignored: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._ignored_max = 10_000

    # -- the client API

    async def client_put(
        self, requester_id: str, user_id: str, room_id: str | None, event_type: str, content: Any
    ) -> None:
        """C{PUT .../account_data/{type}}: checks, then L{put}."""
        if requester_id != user_id:
            raise forbidden("Cannot add account data for other users.")
        if room_id is not None:
            check_room_id(room_id)
        if event_type in SERVER_MANAGED:
            raise MatrixError(405, Codes.BAD_JSON, f"Cannot set {event_type} through this API.")
        if not isinstance(content, dict):
            raise bad_json("Content must be a JSON object.")
        await self.put(user_id, room_id, event_type, content)

    async def client_get(
        self, requester_id: str, user_id: str, room_id: str | None, event_type: str
    ) -> dict[str, Any]:
        """C{GET .../account_data/{type}}: the content, or 403/404."""
        if requester_id != user_id:
            raise forbidden("Cannot get account data for other users.")
        if room_id is not None:
            check_room_id(room_id)
        content = await self.get(user_id, room_id, event_type)
        if content is None:
            raise not_found("Room account data not found." if room_id else "Account data not found.")
        return content

    # -- for the server

    async def put(
        self, user_id: str, room_id: str | None, event_type: str, content: dict[str, Any]
    ) -> int:
        """
        Set account data without API checks (receipts use it for
        C{m.fully_read}); returns its stream position and wakes the user.
        """
        async with self.globals.stream_position() as position:
            await self.store.put(user_id, room_id, event_type, content, position)
        if event_type == IGNORED_USER_LIST and room_id is None:
            self._ignored.pop(user_id, None)
        self.notifier.notify(position, users=[user_id])
        return position

    async def get(self, user_id: str, room_id: str | None, event_type: str) -> dict[str, Any] | None:
        """The content of one entry, or None."""
        if event_type == PUSH_RULES and room_id is None and self.render_push_rules is not None:
            return await self.render_push_rules(user_id)
        entry = await self.store.get(user_id, room_id, event_type)
        return entry.content if entry is not None else None

    async def changes_since(
        self, user_id: str, since: int, to: int | None = None
    ) -> AccountDataChanges:
        """
        Account data of C{user_id} changed in C{(since, to]}, grouped for
        /sync (one index range scan). With C{since=0} (initial sync) this is
        all of it, and C{m.push_rules} is always included.
        """
        out = AccountDataChanges()
        entries = await self.store.changed_since(user_id, since, to)
        has_push_rules = False
        for e in entries:
            out.position = max(out.position, e.position)
            content = e.content
            if e.room_id is None:
                if e.type == PUSH_RULES:
                    has_push_rules = True
                    if self.render_push_rules is not None:
                        content = await self.render_push_rules(user_id)
                out.global_events.append({"type": e.type, "content": content})
            else:
                out.rooms.setdefault(e.room_id, []).append({"type": e.type, "content": content})
        if since == 0 and not has_push_rules and self.render_push_rules is not None:
            out.global_events.append(
                {"type": PUSH_RULES, "content": await self.render_push_rules(user_id)}
            )
        return out

    async def ignored_users(self, user_id: str) -> frozenset[str]:
        """
        The users C{user_id} ignores (C{m.ignored_user_list}), cached and
        invalidated on change. Cheap enough to call per /sync or /messages.
        """
        cached = self._ignored.get(user_id)
        if cached is not None:
            self._ignored.move_to_end(user_id)
            return cached
        entry = await self.store.get(user_id, None, IGNORED_USER_LIST)
        ignored: frozenset[str] = frozenset()
        if entry is not None:
            users = entry.content.get("ignored_users")
            if isinstance(users, dict):
                ignored = frozenset(u for u in users if isinstance(u, str) and u.startswith("@"))
        self._ignored[user_id] = ignored
        if len(self._ignored) > self._ignored_max:
            self._ignored.popitem(last=False)
        return ignored

    # -- tags ("Room Tagging"), stored as the room's m.tag account data

    async def get_tags(self, requester_id: str, user_id: str, room_id: str) -> dict[str, Any]:
        """C{GET .../tags}: C{{"tags": {...}}}."""
        if requester_id != user_id:
            raise forbidden("Cannot get tags for other users.")
        entry = await self.store.get(user_id, room_id, TAG)
        tags = entry.content.get("tags") if entry is not None else None
        return {"tags": tags if isinstance(tags, dict) else {}}

    async def add_tag(
        self, requester_id: str, user_id: str, room_id: str, tag: str, body: Any,
        check_size: Callable[[Any, str], None] | None = None,
    ) -> None:
        """
        C{PUT .../tags/{tag}}: validate C{order}, then replace the tag;
        C{check_size} (L{RateLimits.check_size}) may refuse the new tag set.
        """
        if requester_id != user_id:
            raise forbidden("Cannot add tags for other users.")
        check_room_id(room_id)
        if not tag or len(tag.encode("utf-8")) > MAX_TAG_BYTES:
            raise invalid_param(f"Tag names must be 1 to {MAX_TAG_BYTES} bytes.")
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object.")
        if "order" in body:
            order = body["order"]
            if isinstance(order, bool) or not isinstance(order, (int, float)):
                raise bad_json("'order' must be a number.")
            if not (0 <= order <= 1) or (isinstance(order, float) and math.isnan(order)):
                raise invalid_param("'order' must be between 0 and 1.")

        async with self.locks.queue(user_id):
            tags = await self._tags(user_id, room_id)
            tags[tag] = body
            if check_size is not None:
                check_size({"tags": tags}, "The room's tag set")
            await self.put(user_id, room_id, TAG, {"tags": tags})

    async def remove_tag(self, requester_id: str, user_id: str, room_id: str, tag: str) -> None:
        """C{DELETE .../tags/{tag}} (no error when the tag is absent)."""
        if requester_id != user_id:
            raise forbidden("Cannot remove tags for other users.")

        async with self.locks.queue(user_id):
            tags = await self._tags(user_id, room_id)
            if tag in tags:
                del tags[tag]
                await self.put(user_id, room_id, TAG, {"tags": tags})

    async def _tags(self, user_id: str, room_id: str) -> dict[str, Any]:
        entry = await self.store.get(user_id, room_id, TAG)
        tags = entry.content.get("tags") if entry is not None else None
        return dict(tags) if isinstance(tags, dict) else {}


# -- push rules ("Push Rules: API")

_VALID_STRING_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}.")


def _rule_not_found() -> MatrixError:
    return not_found("The push rule was not found.")


def validate_actions(actions: Any) -> list[Any]:
    """400 M_BAD_JSON unless C{actions} is a list of valid actions."""
    if not isinstance(actions, list):
        raise bad_json("'actions' must be a list.")
    for a in actions:
        if isinstance(a, str):
            if a not in _VALID_STRING_ACTIONS:
                raise bad_json(f"Unknown action {a!r}.")
        elif isinstance(a, dict):
            if not isinstance(a.get("set_tweak"), str):
                raise bad_json("An action object needs a 'set_tweak' string.")
        else:
            raise bad_json("Actions must be strings or objects.")
    return clean_actions(actions)


def _validate_conditions(conditions: Any) -> list[Any]:
    if not isinstance(conditions, list):
        raise bad_json("'conditions' must be a list.")
    for c in conditions:
        if not isinstance(c, dict) or not isinstance(c.get("kind"), str):
            raise bad_json("Each condition must be an object with a 'kind' string.")
        if c["kind"] == "event_match" and isinstance(c.get("pattern"), str):
            _check_pattern(c["pattern"])
    return conditions


def _check_pattern(pattern: str) -> None:
    problem = pattern_problem(pattern)
    if problem is not None:
        raise invalid_param(problem)


class PushRulesHandler:
    """
    Reads and changes a user's push rules; keeps each user's compiled
    ruleset cached for the evaluator (L{compiled}).
    """

    def __init__(
        self,
        store: "PushRulesStore",
        account_data: AccountDataHandler,
        globals: "GlobalsStore",
        notifier: "Notifier",
        cache_size: int = 10_000,
        max_size: int | None = None,
    ) -> None:
        """
        HomeServer assigns L{render_account_data} to
        C{AccountDataHandler.render_push_rules} (the account data handler
        answers C{m.push_rules} reads with it).
        """
        self.store = store
        #: Its per-user lock serialises push rule and account data writes.
        self.account_data = account_data
        self.globals = globals
        #: Largest size of a user's own rules as JSON (C{max_account_data_size}).
        self.max_size = max_size
        self.notifier = notifier
        self._compiled: OrderedDict[str, CompiledRuleset] = OrderedDict()
        self._cache_size = cache_size

    # -- reading

    async def get_ruleset(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The rendered global ruleset (C{GET /pushrules/global/})."""
        return render_ruleset(user_id, await self.store.get(user_id))

    async def render_account_data(self, user_id: str) -> dict[str, Any]:
        """The C{m.push_rules} account data content: C{{"global": ruleset}}."""
        return {"global": await self.get_ruleset(user_id)}

    async def compiled(self, user_id: str) -> CompiledRuleset:
        """
        The user's compiled ruleset for L{conduit_tw.handlers.push_rules.evaluate},
        cached (LRU) and invalidated on every change of their rules.
        """
        ruleset = self._compiled.get(user_id)
        if ruleset is not None:
            self._compiled.move_to_end(user_id)
            return ruleset
        ruleset = compile_ruleset(user_id, await self.get_ruleset(user_id))
        self._compiled[user_id] = ruleset
        if len(self._compiled) > self._cache_size:
            self._compiled.popitem(last=False)
        return ruleset

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        """One rendered rule, or 404."""
        _check_kind(kind)
        for rule in (await self.get_ruleset(user_id))[kind]:
            if rule["rule_id"] == rule_id:
                return rule
        raise _rule_not_found()

    # -- changing

    async def _change(self, user_id: str, fn: Callable[[dict[str, Any]], None]) -> None:
        async with self.account_data.locks.queue(user_id):
            delta = await self.store.get(user_id)
            fn(delta)
            async with self.globals.stream_position() as position:
                await self.store.put_with_account_data(
                    user_id, delta, self.account_data.store, PUSH_RULES,
                    {"global": render_ruleset(user_id, delta)}, position,
                )
            self._compiled.pop(user_id, None)
            self.notifier.notify(position, users=[user_id])

    async def set_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        body: Any,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        """
        C{PUT /pushrules/global/{kind}/{ruleId}}: create or update a user
        rule, placed before/after another user rule of the same kind, else
        kept in place (update) or made the most important (create).
        """
        _check_kind(kind)
        if not rule_id or rule_id.startswith("."):
            raise invalid_param("Rule IDs starting with '.' are reserved for server-default rules.")
        if "/" in rule_id or "\\" in rule_id:
            raise invalid_param("Rule IDs may not contain slashes or backslashes.")
        if not isinstance(body, dict):
            raise bad_json("Content must be a JSON object.")
        if "actions" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'actions'.")
        rule: dict[str, Any] = {"rule_id": rule_id, "enabled": True,
                                "actions": validate_actions(body["actions"])}
        if kind in ("override", "underride"):
            rule["conditions"] = _validate_conditions(body.get("conditions", []))
        elif kind == "content":
            if not isinstance(body.get("pattern"), str):
                raise MatrixError(400, Codes.MISSING_PARAM, "Content rules need a 'pattern' string.")
            _check_pattern(body["pattern"])
            rule["pattern"] = body["pattern"]
        for anchor in (before, after):
            if anchor is not None and (anchor.startswith(".") or not anchor):
                raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {anchor}")

        def change(delta: dict[str, Any]) -> None:
            rules: list[dict[str, Any]] = delta["user"].setdefault(kind, [])
            index = next((i for i, r in enumerate(rules) if r["rule_id"] == rule_id), None)
            if index is not None:
                rule["enabled"] = rules[index].get("enabled", True)
            if before is None and after is None:
                if index is not None:
                    rules[index] = rule
                else:
                    rules.insert(0, rule)
                return
            if index is not None:
                del rules[index]
            anchor = before if before is not None else after
            at = next((i for i, r in enumerate(rules) if r["rule_id"] == anchor), None)
            if at is None:
                raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {anchor}")
            rules.insert(at if before is not None else at + 1, rule)

        def change_within_limit(delta: dict[str, Any]) -> None:
            change(delta)
            if self.max_size is not None:
                check_json_size(delta["user"], self.max_size, "The push rule set")

        await self._change(user_id, change_within_limit)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """C{DELETE /pushrules/global/{kind}/{ruleId}} (user rules only)."""
        _check_kind(kind)
        if rule_id.startswith("."):
            if defaults.BY_ID.get(rule_id, ("",))[0] == kind:
                raise invalid_param("Server-default rules cannot be deleted.")
            raise _rule_not_found()

        def change(delta: dict[str, Any]) -> None:
            rules = delta["user"].get(kind, [])
            kept = [r for r in rules if r["rule_id"] != rule_id]
            if len(kept) == len(rules):
                raise _rule_not_found()
            delta["user"][kind] = kept

        await self._change(user_id, change)

    async def set_attribute(
        self, user_id: str, kind: str, rule_id: str, attr: str, value: Any
    ) -> None:
        """
        C{PUT .../enabled} (C{attr="enabled"}) or C{PUT .../actions}
        (C{attr="actions"}), for user and server-default rules.
        """
        _check_kind(kind)
        if attr == "enabled":
            if not isinstance(value, bool):
                raise bad_json("'enabled' must be a boolean.")
        else:
            value = validate_actions(value)
        if rule_id.startswith("."):
            if defaults.BY_ID.get(rule_id, ("",))[0] != kind:
                raise _rule_not_found()

            def change_default(delta: dict[str, Any]) -> None:
                delta["defaults"].setdefault(rule_id, {})[attr] = value

            await self._change(user_id, change_default)
            return

        def change(delta: dict[str, Any]) -> None:
            for r in delta["user"].get(kind, []):
                if r["rule_id"] == rule_id:
                    r[attr] = value
                    return
            raise _rule_not_found()

        await self._change(user_id, change)
