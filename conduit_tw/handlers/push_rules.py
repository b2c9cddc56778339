"""
Push rule evaluation (client-server-api "Push Rules", "Conditions",
"Actions"). PURE and built to run for every event for every local member:

- a user's ruleset is compiled once (L{compile_ruleset}) into closures,
  with globs turned into non-backtracking matchers (cached by pattern) and disabled rules
  dropped; the handler caches the compiled ruleset per user;
- the event is wrapped once (L{PreparedEvent}) and shared by all members:
  property paths are looked up lazily and memoised, never re-parsed;
- identical conditions compile to the same closure for every user, and a
  condition's outcome is memoised on the L{PreparedEvent}: all conditions
  but C{contains_display_name} depend only on the event and the room (the
  same for every member), so with N members each distinct condition runs
  once per event and the other N-1 evaluations are dict lookups;
- L{evaluate} walks the compiled rules in priority order and returns the
  first match's precomputed L{PushResult}.

Rendering (defaults + a user's changes, in the order the spec requires)
is L{render_ruleset}; the stored form is described in
L{conduit_tw.storage.stores.push_rules}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Sequence

from conduit_tw.handlers import push_rules_default as defaults
from conduit_tw.handlers.push_rules_default import KINDS

#: Actions from older spec versions that MUST be ignored ("Historical Actions").
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})

#: Default C{notifications} power level for a key (m.room.power_levels).
DEFAULT_NOTIFICATION_LEVEL = 50

_MISSING = object()


# -- property paths (appendices "Dot-separated property paths")


@lru_cache(maxsize=1024)
def parse_path(key: str) -> tuple[str, ...]:
    """
    Split a dot-separated property path: C{\\.} is a literal dot, C{\\\\} a
    literal backslash, any other backslash is kept as is.
    """
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(key)
    while i < n:
        c = key[i]
        if c == "\\" and i + 1 < n and key[i + 1] in ".\\":
            cur.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return tuple(parts)


class PreparedEvent:
    """
    An event dict wrapped for evaluation against many users' rules:
    property lookups are memoised per path.
    """

    __slots__ = ("event", "sender", "room_id", "_cache", "memo")

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        self.sender = event.get("sender")
        self.room_id = event.get("room_id")
        self._cache: dict[tuple[str, ...], Any] = {}
        #: Condition -> outcome, for conditions that do not depend on the user.
        self.memo: dict[Any, bool] = {}

    def get(self, path: tuple[str, ...]) -> Any:
        """The value at C{path}, or L{_MISSING}."""
        try:
            return self._cache[path]
        except KeyError:
            pass
        value: Any = self.event
        for part in path:
            if not isinstance(value, dict):
                value = _MISSING
                break
            value = value.get(part, _MISSING)
            if value is _MISSING:
                break
        self._cache[path] = value
        return value


def prepare_event(event: Mapping[str, Any] | PreparedEvent) -> PreparedEvent:
    """Wrap an event once before evaluating it for several users."""
    return event if isinstance(event, PreparedEvent) else PreparedEvent(event)


@dataclass(slots=True)
class PushContext:
    """
    What the rules need besides the event, for one recipient. Every field
    but C{user_id} and C{display_name} describes the room and must be the
    same for all recipients of one L{PreparedEvent}.

    @ivar user_id: the recipient.
    @ivar display_name: the recipient's display name in the room
        (C{contains_display_name}); None if unknown.
    @ivar member_count: joined members of the room (C{room_member_count}).
    @ivar sender_power_level: the sender's power level in the room.
    @ivar notification_levels: the C{notifications} object of the room's
        C{m.room.power_levels} content (C{sender_notification_permission});
        keys missing from it default to 50.
    """

    user_id: str
    display_name: str | None = None
    member_count: int = 0
    sender_power_level: int = 0
    notification_levels: Mapping[str, Any] = field(default_factory=dict)


# -- globs (appendices "Glob-style matching")

_WORD = "A-Za-z0-9_"


#: Upload limits on a rule's glob (C{PUT /pushrules}): every event is
#: matched against every member's patterns, so they must stay cheap.
MAX_PATTERN_LENGTH = 256
MAX_PATTERN_WILDCARDS = 20


def pattern_problem(pattern: str) -> str | None:
    """Why a push rule glob is refused at upload, or None if it is acceptable."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"Push rule patterns are limited to {MAX_PATTERN_LENGTH} characters."
    if pattern.count("*") > MAX_PATTERN_WILDCARDS:
        return f"Push rule patterns are limited to {MAX_PATTERN_WILDCARDS} '*' wildcards."
    return None


@lru_cache(maxsize=4096)
def glob_matcher(pattern: str, word_boundary: bool = False) -> Callable[[str], bool]:
    """
    A case-insensitive matcher for a glob (C{*} any run, C{?} one
    character): the whole value must match, or with C{word_boundary} any
    substring that starts and ends at a word boundary (the C{content.body}
    rule). Cached by pattern.

    Runs in O(len(value) * len(pattern)) whatever the pattern (a pattern
    such as C{*a*a*a*!} must not backtrack exponentially): the pattern is
    split at its C{*}s into fixed-length segments, each compiled to a
    regex without quantifiers, and the segments are placed left to right,
    each at its leftmost possible position (appendices "Glob-style
    matching"; client-server-api "Conditions", C{event_match}).
    """
    if not word_boundary and "*" not in pattern and "?" not in pattern:
        literal = pattern.lower()
        return lambda value: value == pattern or value.lower() == literal
    segments = pattern.split("*")
    flags = re.IGNORECASE | re.DOTALL

    def seg_rx(seg: str, prefix: str = "", suffix: str = "") -> "re.Pattern[str]":
        body = "".join("." if c == "?" else re.escape(c) for c in seg)
        return re.compile(f"{prefix}{body}{suffix}", flags)

    no_word_before, no_word_after = f"(?<![{_WORD}])", f"(?![{_WORD}])"
    if len(segments) == 1:
        # No star: one fixed-length segment.
        if word_boundary:
            only = seg_rx(pattern, no_word_before, no_word_after).search
            return lambda value: only(value) is not None
        whole = seg_rx(pattern).fullmatch
        return lambda value: whole(value) is not None

    first_len, last_len = len(segments[0]), len(segments[-1])
    middle = [(seg_rx(s).search, len(s)) for s in segments[1:-1] if s]
    if word_boundary:
        first = seg_rx(segments[0], no_word_before).search
        last = seg_rx(segments[-1], "", no_word_after).search
    else:
        first = seg_rx(segments[0]).match
        last = seg_rx(segments[-1]).match

    def match(value: str) -> bool:
        m = first(value)
        if m is None:
            return False
        # The leftmost start of the first segment leaves the most room for
        # the rest, and so does the leftmost place of each middle segment.
        pos = m.start() + first_len
        for search, length in middle:
            m = search(value, pos)
            if m is None:
                return False
            pos = m.start() + length
        if word_boundary:
            return last(value, pos) is not None
        start = len(value) - last_len
        return start >= pos and last(value, start) is not None

    return match


@lru_cache(maxsize=4096)
def _display_name_matcher(name: str) -> Callable[[str], bool]:
    rx = re.compile(
        f"(?<![{_WORD}]){re.escape(name)}(?![{_WORD}])", re.IGNORECASE | re.DOTALL
    )
    return lambda value: rx.search(value) is not None


# -- conditions

Condition = Callable[[PreparedEvent, PushContext], bool]

_BODY_PATH = ("content", "body")
_MEMBER_COUNT_RE = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _never(ev: PreparedEvent, ctx: PushContext) -> bool:
    return False


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, bool))


def _same(a: Any, b: Any) -> bool:
    """Exact JSON equality of scalars (C{true} is not C{1})."""
    return type(a) is type(b) and a == b


def _event_match(key: Any, pattern: Any) -> Condition:
    if not isinstance(key, str) or not isinstance(pattern, str):
        return _never
    path = parse_path(key)
    match = glob_matcher(pattern, path == _BODY_PATH)

    def cond(ev: PreparedEvent, ctx: PushContext) -> bool:
        value = ev.get(path)
        return isinstance(value, str) and match(value)

    return cond


def _property_is(key: Any, expected: Any) -> Condition:
    if not isinstance(key, str) or not _is_scalar(expected):
        return _never
    path = parse_path(key)

    def cond(ev: PreparedEvent, ctx: PushContext) -> bool:
        return _same(ev.get(path), expected)

    return cond


def _property_contains(key: Any, expected: Any) -> Condition:
    if not isinstance(key, str) or not _is_scalar(expected):
        return _never
    path = parse_path(key)
    if isinstance(expected, str):
        # str == x is only ever true for strings, so `in` is exact.
        def cond(ev: PreparedEvent, ctx: PushContext) -> bool:
            value = ev.get(path)
            return isinstance(value, list) and expected in value

        return cond

    def cond_any(ev: PreparedEvent, ctx: PushContext) -> bool:
        value = ev.get(path)
        return isinstance(value, list) and any(_same(v, expected) for v in value)

    return cond_any


#: Longest display name C{contains_display_name} looks for. Profile names
#: are capped at 256 characters, but a per-room name set through an
#: m.room.member event can be as long as the event allows, and a literal
#: search costs message length x name length: longer names never match.
MAX_MATCHED_DISPLAY_NAME = 256


def _contains_display_name(ev: PreparedEvent, ctx: PushContext) -> bool:
    name = ctx.display_name
    if not name or len(name) > MAX_MATCHED_DISPLAY_NAME:
        return False
    body = ev.get(_BODY_PATH)
    return isinstance(body, str) and _display_name_matcher(name)(body)


def _member_count(spec: Any) -> Condition:
    m = _MEMBER_COUNT_RE.match(spec) if isinstance(spec, str) else None
    if m is None:
        return _never
    compare = _COMPARE[m.group(1) or "=="]
    number = int(m.group(2))
    return lambda ev, ctx: compare(ctx.member_count, number)


def _sender_permission(key: Any) -> Condition:
    if not isinstance(key, str):
        return _never

    def cond(ev: PreparedEvent, ctx: PushContext) -> bool:
        required = ctx.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        if isinstance(required, str):
            try:
                required = int(required)
            except ValueError:
                required = DEFAULT_NOTIFICATION_LEVEL
        if not isinstance(required, int):
            required = DEFAULT_NOTIFICATION_LEVEL
        return ctx.sender_power_level >= required

    return cond


def compile_condition(condition: Any) -> Condition:
    """
    One condition as a closure; unknown or malformed ones never match.
    Equal conditions give the same closure (cached), so their outcomes can
    be shared between users through L{PreparedEvent.memo}.
    """
    try:
        key = json.dumps(condition, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return _never
    return _compile_cached(key)


@lru_cache(maxsize=8192)
def _compile_cached(key: str) -> Condition:
    return _compile(json.loads(key))


def _compile(condition: Any) -> Condition:
    if not isinstance(condition, dict):
        return _never
    kind = condition.get("kind")
    if kind == "event_match":
        return _event_match(condition.get("key"), condition.get("pattern"))
    if kind == "event_property_is":
        if "value" not in condition:
            return _never
        return _property_is(condition.get("key"), condition["value"])
    if kind == "event_property_contains":
        if "value" not in condition:
            return _never
        return _property_contains(condition.get("key"), condition["value"])
    if kind == "contains_display_name":
        return _contains_display_name
    if kind == "room_member_count":
        return _member_count(condition.get("is"))
    if kind == "sender_notification_permission":
        return _sender_permission(condition.get("key"))
    return _never


# -- actions and results


@dataclass(frozen=True, slots=True)
class PushResult:
    """
    The outcome of evaluating an event for one user.

    @ivar rule_id: the rule that matched.
    @ivar actions: its actions (historical ones stripped).
    @ivar notify: whether to notify (count it, push it).
    @ivar highlight: the C{highlight} tweak as a boolean.
    @ivar tweaks: every C{set_tweak}, as sent to push gateways.
    """

    rule_id: str
    actions: tuple[Any, ...]
    notify: bool
    highlight: bool
    tweaks: Mapping[str, Any]

    @property
    def sound(self) -> Any:
        """The C{sound} tweak, or None."""
        return self.tweaks.get("sound")


def clean_actions(actions: Iterable[Any]) -> list[Any]:
    """Strip the historical C{dont_notify}/C{coalesce} actions."""
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


def result_for(rule_id: str, actions: Sequence[Any]) -> PushResult:
    """Interpret a rule's actions once."""
    cleaned = tuple(clean_actions(actions))
    tweaks: dict[str, Any] = {}
    for a in cleaned:
        if isinstance(a, dict) and isinstance(a.get("set_tweak"), str):
            tweaks[a["set_tweak"]] = a.get("value", True)
    highlight = tweaks.get("highlight", False) is True
    return PushResult(rule_id, cleaned, "notify" in cleaned, highlight, tweaks)


# -- rulesets


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An enabled rule ready for evaluation."""

    rule_id: str
    kind: str
    #: C{(condition, memoisable)}: memoisable ones depend only on the event and room.
    conditions: tuple[tuple[Condition, bool], ...]
    result: PushResult


class CompiledRuleset:
    """A user's enabled rules in evaluation order."""

    __slots__ = ("user_id", "rules")

    def __init__(self, user_id: str, rules: tuple[CompiledRule, ...]) -> None:
        self.user_id = user_id
        self.rules = rules


def _rule_conditions(kind: str, rule: Mapping[str, Any]) -> tuple[Condition, ...]:
    rule_id = rule.get("rule_id")
    if kind in ("override", "underride"):
        conditions = rule.get("conditions") or []
        if not isinstance(conditions, list):
            return (_never,)
        return tuple(compile_condition(c) for c in conditions)
    if kind == "content":
        pattern = rule.get("pattern")
        return (compile_condition({"kind": "event_match", "key": "content.body", "pattern": pattern}),)
    if kind == "room":
        return (lambda ev, ctx: ev.room_id == rule_id,)
    if kind == "sender":
        return (lambda ev, ctx: ev.sender == rule_id,)
    return (_never,)


def compile_ruleset(user_id: str, ruleset: Mapping[str, Sequence[Mapping[str, Any]]]) -> CompiledRuleset:
    """
    Compile a rendered ruleset (kind -> rules, as L{render_ruleset} and
    C{GET /pushrules/global/} give it); disabled rules are dropped.
    """
    compiled: list[CompiledRule] = []
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            rule_id = rule.get("rule_id", "")
            conditions = tuple(
                (c, c is not _contains_display_name) for c in _rule_conditions(kind, rule)
            )
            compiled.append(
                CompiledRule(rule_id, kind, conditions, result_for(rule_id, rule.get("actions") or []))
            )
    return CompiledRuleset(user_id, tuple(compiled))


def evaluate(
    ruleset: CompiledRuleset,
    event: Mapping[str, Any] | PreparedEvent,
    context: PushContext,
) -> PushResult | None:
    """
    The result of the highest-priority enabled rule matching C{event}, or
    None when no rule matches (then the user MUST NOT be notified). Events
    the user sent themselves never match (spec: "Homeservers MUST NOT notify
    the Push Gateway for events that the user has sent themselves").
    """
    ev = event if isinstance(event, PreparedEvent) else PreparedEvent(event)
    if ev.sender == context.user_id:
        return None
    memo = ev.memo
    for rule in ruleset.rules:
        for cond, shared in rule.conditions:
            if shared:
                outcome = memo.get(cond)
                if outcome is None:
                    outcome = memo[cond] = cond(ev, context)
            else:
                outcome = cond(ev, context)
            if not outcome:
                break
        else:
            return rule.result
    return None


def render_ruleset(user_id: str, delta: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """
    The full ruleset of a user, as C{GET /pushrules/global/} shows it:
    C{.m.rule.master}, then the user's rules of each kind, then the other
    server-default rules of that kind, with the user's changes to default
    rules (C{enabled}, C{actions}) applied. C{delta} is the stored form
    (L{conduit_tw.storage.stores.push_rules}).
    """
    user_rules: Mapping[str, list[dict[str, Any]]] = delta.get("user", {})
    changed: Mapping[str, Mapping[str, Any]] = delta.get("defaults", {})

    def default(rule: dict[str, Any]) -> dict[str, Any]:
        _, out = defaults.default_rule(rule["rule_id"], user_id)  # type: ignore[misc]
        change = changed.get(out["rule_id"])
        if change:
            if "enabled" in change:
                out["enabled"] = change["enabled"]
            if "actions" in change:
                out["actions"] = list(change["actions"])
        return out

    def users(kind: str) -> list[dict[str, Any]]:
        return [dict(r, default=False) for r in user_rules.get(kind, [])]

    return {
        "override": [default(defaults.MASTER)] + users("override")
        + [default(r) for r in defaults.OVERRIDE],
        "content": users("content") + [default(r) for r in defaults.CONTENT],
        "room": users("room"),
        "sender": users("sender"),
        "underride": users("underride") + [default(r) for r in defaults.UNDERRIDE],
    }
