"""
docs/configuration.md, L{conduit_tw.config.NOT_EFFECTIVE_YET} and the code
agree: the doc's key tables are what the declarations generate, every
documented key is read by the server or declared (and marked) as not effective
yet, and setting such a key logs exactly its notice.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from pathlib import Path

from twisted.internet import reactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from conduit_tw.config import (
    KNOWN_KEYS,
    NO_EFFECT_KEYS,
    NOT_EFFECTIVE_YET,
    OPEN_REGISTRATION_KEY,
    Config,
    load_config,
)
from conduit_tw.config import doc as config_doc
from conduit_tw.config.declare import SECTIONS, declared
from conduit_tw.service import make_service
from tests.integration.process import free_port
from tests.server import make_config

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "conduit_tw"
CONFIG_PACKAGE = PACKAGE / "config"
DOC = REPO / "docs" / "configuration.md"
MARK = "**Not effective yet:**"

#: Keys whose whole effect happens inside load_config (checked below).
APPLIED_BY_LOAD_CONFIG = {
    OPEN_REGISTRATION_KEY: "lets allow_registration start without a token",
    "enable_lightning_bolt": "sets the default new_user_displayname_suffix",
    "media.backend": "load_config refuses every backend but the filesystem one we use",
    "registration_shared_secret_path": "read into registration_shared_secret at load",
}
def _names_used_outside_config() -> set[str]:
    """
    Attribute names (C{x.name}) and string literals (for C{getattr}) used by
    the server's code outside the config package, plus the Config fields read
    by Config's own methods (defined on its sections) when those methods are used.
    """
    names: set[str] = set()
    files = [p for p in PACKAGE.rglob("*.py") if CONFIG_PACKAGE not in p.parents]
    files += list((REPO / "twisted" / "plugins").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    section_names = {cls.__name__ for cls in SECTIONS.values()}
    methods = [
        method
        for path in CONFIG_PACKAGE.glob("*.py")
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ClassDef) and node.name in section_names
        for method in node.body
    ]
    for method in methods:
        if isinstance(method, ast.FunctionDef) and method.name in names:
            for node in ast.walk(method):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    names.add(node.attr)
    return names


def _documented_rows() -> dict[str, str]:
    """Every key of the doc's key tables (C{tls.certs} inside tables) -> its row."""
    rows: dict[str, str] = {}
    prefix, skip, in_key_table = "", False, False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            table = re.search(r"`\[global\.(\w+)\]`", line)
            prefix = table.group(1) + "." if table else ""
            skip = "Accepted without effect" in line
            continue
        if line.startswith("| key |"):
            in_key_table = not skip
            continue
        if not line.startswith("|"):
            in_key_table = False
            continue
        m = re.match(r"\| `([^`]+)` \|", line)
        if in_key_table and m:
            rows[prefix + m.group(1)] = line
    return rows


def _table_of(key: str) -> str | None:
    return key.split(".", 1)[0] if "." in key else None


def _not_effective(key: str) -> bool:
    table = _table_of(key)
    return key in NOT_EFFECTIVE_YET or (table is not None and table in NOT_EFFECTIVE_YET)


class DocumentedKeysTests(unittest.SynchronousTestCase):
    """The static walk over docs/configuration.md."""

    def setUp(self) -> None:
        self.rows = _documented_rows()
        self.used = _names_used_outside_config()
        self.fields = {f.name for f in dataclasses.fields(Config)}

    def _is_read(self, key: str) -> bool:
        table = _table_of(key)
        if table is None:
            return key in self.used
        return table in self.used and key.split(".", 1)[1] in self.used

    def test_doc_parsed(self) -> None:
        """The parser finds the tables (a guard against a silently empty walk)."""
        for key in ("server_name", "gzip_compression", "tls.certs", "media.path", "log"):
            self.assertIn(key, self.rows)

    def test_every_documented_key_is_a_config_key(self) -> None:
        for key in self.rows:
            if _table_of(key) is None:
                self.assertIn(key, self.fields, f"{key} is documented but not a Config field")
            else:
                self.assertIn(key, KNOWN_KEYS, f"{key} is documented but not a table key")

    def test_every_documented_key_is_read_or_not_effective_yet(self) -> None:
        problems = []
        for key, row in self.rows.items():
            if _not_effective(key):
                if MARK not in row:
                    problems.append(f"{key}: in NOT_EFFECTIVE_YET but its doc row lacks {MARK}")
            else:
                if MARK in row:
                    problems.append(f"{key}: marked not effective in the doc but not declared so")
                if not (self._is_read(key) or key in APPLIED_BY_LOAD_CONFIG):
                    problems.append(f"{key}: documented, read by nothing, not in NOT_EFFECTIVE_YET")
        self.assertEqual(problems, [])

    def test_not_effective_keys_are_documented_and_unread(self) -> None:
        """A key leaves NOT_EFFECTIVE_YET when the code starts reading it."""
        problems = []
        for key in NOT_EFFECTIVE_YET:
            documented = key in self.rows or any(k.startswith(key + ".") for k in self.rows)
            if not documented:
                problems.append(f"{key}: in NOT_EFFECTIVE_YET but not documented")
            if self._is_read(key):
                problems.append(f"{key}: is read by the server; remove it from NOT_EFFECTIVE_YET")
        self.assertEqual(problems, [])

    def test_every_config_key_is_documented(self) -> None:
        bookkeeping = {"log_level", "log_targets", "notices", "unknown_keys", "extra"}
        missing = sorted(
            f
            for f in self.fields - bookkeeping
            if f not in self.rows and not any(k.startswith(f + ".") for k in self.rows)
        )
        self.assertEqual(missing, [])


class GeneratedTablesTests(unittest.SynchronousTestCase):
    """The key tables of docs/configuration.md are generated from the declarations."""

    def test_doc_is_current(self) -> None:
        """Fails when a declaration changed and C{python -m conduit_tw.config.doc} was not run."""
        text = DOC.read_text(encoding="utf-8")
        self.assertEqual(config_doc.render(text), text)
        self.assertEqual(config_doc.main(["--check"]), 0)

    def test_every_section_has_its_marker(self) -> None:
        """Each section of top-level keys or of a top-level table is in the doc."""
        text = DOC.read_text(encoding="utf-8")
        shown = set(re.findall(r"<!-- keys: (\S+) -->", text))
        wanted = {
            name
            for name, cls in SECTIONS.items()
            if any(not k.is_table for k in declared(cls)) or name in ("tls", "well_known", "media")
        }
        wanted.discard("media.directory_structure")
        self.assertEqual(wanted - shown, set())
        self.assertIn("no-effect", shown)

    def test_no_effect_keys_listed(self) -> None:
        rows = config_doc.render_section("no-effect")
        for key in NO_EFFECT_KEYS:
            self.assertIn(f"`{key}`", rows)
        self.assertIn("`rocksdb_*`", rows)

    def test_unknown_marker_refused(self) -> None:
        self.assertRaises(KeyError, config_doc.render, "<!-- keys: nope -->\n<!-- /keys -->")


class LoadTimeEffectTests(unittest.SynchronousTestCase):
    """The keys of APPLIED_BY_LOAD_CONFIG really do what the walk assumes."""

    def test_open_registration_key(self) -> None:
        c = load_config(None, {}, {"allow_registration": True, OPEN_REGISTRATION_KEY: True})
        self.assertTrue(c.allow_registration)

    def test_lightning_bolt(self) -> None:
        c = load_config(None, {}, {"enable_lightning_bolt": True})
        self.assertEqual(c.new_user_displayname_suffix, "\u26a1\ufe0f")


#: A boolean key declared not effective, far from being implemented (banning rooms),
#: so that making federation keys effective leaves these tests alone.
SAMPLE = "query_over_tcp_only"  # a key still declared not effective (DNS settings)


def _notice(key: str) -> str:
    return f"global.{key} is set but has no effect yet: {NOT_EFFECTIVE_YET[key]}"


class NoticeTests(unittest.SynchronousTestCase):
    """Setting a not-yet-effective key logs exactly one notice for it."""

    def _load(self, text: str, environ: dict[str, str] | None = None) -> Config:
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "conduit.toml"
        path.write_text(text, encoding="utf-8")
        return load_config(str(path), environ or {})

    def test_defaults_give_no_notice(self) -> None:
        self.assertEqual(load_config(None, {}).notices, [])

    def test_one_key_one_notice(self) -> None:
        c = self._load(f"[global]\n{SAMPLE} = true\n")
        self.assertEqual(c.notices, [_notice(SAMPLE)])

    def test_from_environment(self) -> None:
        c = load_config(None, {f"CONDUIT_{SAMPLE.upper()}": "true"})
        self.assertEqual(c.notices, [_notice(SAMPLE)])

    def test_tables(self) -> None:
        c = self._load('[global.media]\npath = "/srv/media"\n')
        self.assertEqual(c.notices, [_notice(k) for k in ("media",) if k in NOT_EFFECTIVE_YET])
        c = self._load('[global.tls]\ncerts = "c.pem"\nkey = "k.pem"\ndual_protocol = true\n')
        self.assertEqual(c.notices, [])
        c = self._load('[global]\nproxy = "socks5h://localhost:9050"\n')
        self.assertEqual(c.notices, [_notice("proxy")])
        self.assertEqual(self._load('[global]\nproxy = "none"\n').notices, [])

    def test_effective_keys_give_no_notice(self) -> None:
        c = self._load('[global]\ngzip_compression = true\nauto_join_rooms = ["#a:localhost"]\n')
        self.assertEqual(c.notices, [])

    def test_every_top_level_key_has_its_notice(self) -> None:
        """Each field of NOT_EFFECTIVE_YET, set to its default, gives its own notice."""
        defaults = Config()
        for key in NOT_EFFECTIVE_YET:
            if "." in key or key in ("media", "proxy"):
                continue
            value = getattr(defaults, key)
            if value is None:
                value = "x"
            c = load_config(None, {}, {key: value})
            self.assertEqual(c.notices, [_notice(key)], key)


class StartupLogTests(unittest.TestCase):
    """The service logs the notices as warnings when it starts."""

    async def test_notice_logged_at_startup(self) -> None:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        path = os.path.abspath(self.mktemp())
        config = make_config(database_path=path, port=free_port(), **{SAMPLE: True})
        service = make_service(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        warnings = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertIn(_notice(SAMPLE), warnings)
