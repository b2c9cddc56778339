"""
Tests for L{conduit_tw.config.declare}: what one declaration gives (type, default,
validation naming the key, the environment, the notice, the doc row), for every key.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.config import KNOWN_KEYS, NOT_EFFECTIVE_YET, ConfigError, load_config, values
from conduit_tw.config.declare import SECTIONS, Key, declared, key, section, table
from conduit_tw.config.doc import render_section
from conduit_tw.config.load import _Builder
from conduit_tw.config.schema import TOP, plain


class _Sections:
    """Declare throwaway sections, forgotten again after the test."""

    def declare(self: SynchronousTestCase, name: str, cls: type) -> type:  # type: ignore[misc]
        self.addCleanup(SECTIONS.pop, name, None)
        return section(name)(cls)


class DeclarationTests(SynchronousTestCase, _Sections):
    def test_one_declaration_gives_everything(self) -> None:
        """Name, type (from the annotation), default, doc row and notice of one key."""

        class Sample:
            flag: bool = key(True, "Turn it on.")
            limit: int = key(5, "How many.", values.POSITIVE, not_effective="nothing reads `it`")
            names: list[str] = key([], "Some names.")

        cls = self.declare("test_sample", Sample)
        flag, limit, names = declared(cls)
        self.assertEqual((flag.name, flag.type, flag.default), ("flag", values.BOOL, True))
        self.assertIs(names.type, values.STR_LIST)
        self.assertIsNot(cls().names, cls().names)
        rows = render_section("test_sample").splitlines()
        self.assertEqual(rows[2], "| `flag` | boolean | `true` | Turn it on. |")
        self.assertEqual(
            rows[3],
            "| `limit` | integer ≥ 1 | `5` | How many. **Not effective yet:** nothing reads `it`. |",
        )
        self.assertEqual(plain(limit.not_effective or ""), "nothing reads it")

    def test_unknown_annotation_needs_a_type(self) -> None:
        class Odd:
            when: complex = key(0j, "A complex default.")

        e = self.assertRaises(TypeError, self.declare, "test_odd", Odd)
        self.assertIn("Odd.when", str(e))

    def test_nested_table(self) -> None:
        """A table's keys: unknown ones reported, required ones enforced, notices noted."""

        class Inner:
            path: str = key(doc="Where.", type=values.NONEMPTY_STR)
            mode: bool = key(False, "Mode.", not_effective="not yet")

        inner = self.declare("test_inner", Inner)
        decl = Key("A table.", nested=inner)
        notices: list[str] = []
        builder = _Builder(notices)
        got = builder.parse(decl, "global.t", {"path": "/x", "mode": True, "typo": 1}, "t")
        self.assertEqual((got.path, got.mode), ("/x", True))
        self.assertEqual(
            notices,
            [
                "global.t.mode is set but has no effect yet: not yet",
                "global.t.typo: unknown key, ignored (check its spelling)",
            ],
        )
        e = self.assertRaises(ConfigError, builder.parse, decl, "global.t", {"mode": True}, "t")
        self.assertTrue(str(e).startswith("global.t.path: missing"), str(e))
        self.assertRaises(ConfigError, builder.parse, decl, "global.t", {"path": ""}, "t")

    def test_table_declaration_defaults(self) -> None:
        class Inner:
            n: int = key(1, "N.", values.NONNEG)

        inner = self.declare("test_inner2", Inner)

        class Outer:
            always: Inner = table(inner, "Always there.")
            maybe: Inner | None = table(inner, "Only when given.", optional=True)

        outer = self.declare("test_outer", Outer)()
        self.assertEqual(outer.always.n, 1)
        self.assertIsNone(outer.maybe)


class EveryKeyTests(SynchronousTestCase):
    """Properties every declared key has, whatever its type."""

    def test_documented_and_typed(self) -> None:
        for k in TOP.values():
            self.assertTrue(k.doc.strip(), k.name)
            self.assertTrue(k.nested is not None or (k.type and k.type.name), k.name)

    def test_wrong_value_names_the_key(self) -> None:
        """A table where a plain value belongs is refused, naming the key."""
        for name, k in TOP.items():
            if k.nested is not None:
                continue
            e = self.assertRaises(ConfigError, load_config, None, {}, {name: {"x": 1}})
            self.assertTrue(str(e).startswith(f"global.{name}"), (name, str(e)))

    def test_string_keys_take_env_text_verbatim(self) -> None:
        text_types = (values.STR, values.OPT_STR, values.NONEMPTY_STR)
        for name, k in TOP.items():
            if k.type in text_types:
                c = load_config(None, {f"CONDUIT_{name.upper()}": "1234"})
                self.assertEqual(getattr(c, name), "1234", name)

    def test_not_effective_yet_is_derived(self) -> None:
        top = {n: plain(k.not_effective) for n, k in TOP.items() if k.not_effective}
        self.assertEqual({k: v for k, v in NOT_EFFECTIVE_YET.items() if "." not in k}, top)
        nested = {
            f"{n}.{sub.name}": plain(sub.not_effective)
            for n, k in TOP.items() if k.nested is not None
            for sub in declared(k.nested) if sub.not_effective
        }
        self.assertEqual({k: v for k, v in NOT_EFFECTIVE_YET.items() if "." in k}, nested)

    def test_known_keys_are_derived(self) -> None:
        for name, k in TOP.items():
            self.assertIn(name, KNOWN_KEYS)
            for alias in k.aliases:
                self.assertIn(alias, KNOWN_KEYS)
            for sub in declared(k.nested) if k.nested else ():
                self.assertIn(f"{name}.{sub.name}", KNOWN_KEYS)
