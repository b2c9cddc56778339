"""
Layer boundaries (docs/architecture.md, "Layers"): handlers and the HTTP layer
reach the database only through the stores' public classes, never through
storage internals (backends, key codecs, batches, tree names).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable

from twisted.trial import unittest

PACKAGE = Path(__file__).resolve().parent.parent / "conduit_tw"

#: What handlers and api modules may import from conduit_tw.storage: the
#: stores (storage/stores/*), the event store and the transaction type its
#: persist hooks receive. Names that are not public (a leading underscore)
#: are refused even from these.
ALLOWED_MODULES = ("conduit_tw.storage.stores.", "conduit_tw.storage.events", "conduit_tw.storage.txn")


def storage_imports(path: Path) -> list[str]:
    """C{module:name} for every import of conduit_tw.storage in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("conduit_tw.storage"):
            found.extend(f"{node.module}:{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("conduit_tw.storage"))
    return found


def violations(path: Path) -> list[str]:
    """The storage imports of C{path} that cross the boundary."""
    bad = []
    for imported in storage_imports(path):
        module, _, name = imported.partition(":")
        allowed = module.startswith(ALLOWED_MODULES)
        if not allowed or not name or name.startswith("_"):
            bad.append(imported)
    return bad


#: Attribute names that are the raw write API of the database: a handler or
#: api module calling C{x.batch()} or C{batch.put}/C{batch.delete}, or
#: reaching through C{x.db.<anything>}, assembles writes the stores own.
RAW_BATCH_METHODS = ("put", "delete")


def raw_database_uses(path: Path) -> list[str]:
    """C{line:what} for every raw database or batch use in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "batch":
            found.add(f"{node.lineno}:.batch()")
        if not isinstance(node, ast.Attribute):
            continue
        inner = node.value
        if isinstance(inner, ast.Attribute) and inner.attr == "db":
            found.add(f"{node.lineno}:.db.{node.attr}")
        if node.attr in RAW_BATCH_METHODS and _names_batch(inner):
            found.add(f"{node.lineno}:batch.{node.attr}")
        if node.attr == "batch":
            # Also a txn's raw batch handed around (to a put_*_in_batch).
            found.add(f"{node.lineno}:.batch")
    return sorted(found, key=lambda s: (int(s.partition(":")[0]), s))


def _names_batch(node: ast.expr) -> bool:
    """Whether C{node} is C{batch} or C{<something>.batch}."""
    return (isinstance(node, ast.Name) and node.id == "batch") or (
        isinstance(node, ast.Attribute) and node.attr == "batch"
    )


def homeserver_uses(path: Path) -> list[str]:
    """
    C{line:what} for every way a handler module gets hold of the whole
    server: importing conduit_tw.homeserver, a parameter annotated
    C{HomeServer}, or a C{self.hs} attribute.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "conduit_tw.homeserver":
            found.add(f"{node.lineno}:import conduit_tw.homeserver")
        elif isinstance(node, ast.Import) and any(
            a.name == "conduit_tw.homeserver" for a in node.names
        ):
            found.add(f"{node.lineno}:import conduit_tw.homeserver")
        elif isinstance(node, ast.arg) and node.annotation is not None and _names_homeserver(
            node.annotation
        ):
            found.add(f"{node.lineno}:{node.arg}: HomeServer")
        elif (
            isinstance(node, ast.Attribute) and node.attr == "hs"
            and isinstance(node.value, ast.Name) and node.value.id == "self"
        ):
            found.add(f"{node.lineno}:self.hs")
    return sorted(found, key=lambda s: (int(s.partition(":")[0]), s))


def _names_homeserver(annotation: ast.expr) -> bool:
    """Whether an annotation mentions C{HomeServer} (also as a string)."""
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name) and node.id == "HomeServer":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "HomeServer":
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "HomeServer" in node.value:
            return True
    return False


def homeserver_store_attributes() -> set[str]:
    """
    The attributes of C{HomeServer} that hold a store or the database:
    C{db} and every C{self.<name> = <Something>Store(...)} in homeserver.py.
    """
    names = {"db"}
    tree = ast.parse((PACKAGE / "homeserver.py").read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        func = node.value.func
        if isinstance(func, ast.Name) and func.id.endswith("Store"):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    names.add(target.attr)
    return names


def store_reaches(path: Path, stores: set[str]) -> list[str]:
    """C{line:what} for every C{hs.<store>} / C{self.hs.<store>} in an api module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or node.attr not in stores:
            continue
        inner = node.value
        if (isinstance(inner, ast.Name) and inner.id == "hs") or (
            isinstance(inner, ast.Attribute) and inner.attr == "hs"
        ):
            found.add(f"{node.lineno}:hs.{node.attr}")
    return sorted(found, key=lambda s: (int(s.partition(":")[0]), s))


def problems_in(folders: tuple[str, ...], check: Callable[[Path], list[str]]) -> dict[str, list[str]]:
    """What C{check} finds in each module of the package's C{folders}, by relative path."""
    problems = {}
    for folder in folders:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            bad = check(path)
            if bad:
                problems[str(path.relative_to(PACKAGE))] = bad
    return problems


class LayeringTests(unittest.TestCase):
    """api -> handlers -> stores -> database, and nothing around it."""

    def test_handlers_and_api_use_only_store_classes(self) -> None:
        self.assertEqual(problems_in(("handlers", "api"), violations), {})

    def test_check_catches_internals(self) -> None:
        """The check itself refuses key codecs, private names and backends."""
        sample = Path(self.mktemp())
        sample.write_text(
            "from conduit_tw.storage.keys import SEP\n"
            "from conduit_tw.storage.stores.aliases import _pending, AliasStore\n"
            "import conduit_tw.storage.sqlite\n"
        )
        self.assertEqual(
            violations(sample),
            ["conduit_tw.storage.keys:SEP", "conduit_tw.storage.stores.aliases:_pending",
             "conduit_tw.storage.sqlite"],
        )

    def test_handlers_and_api_do_not_assemble_batches(self) -> None:
        """
        Key layouts and batch assembly belong to the stores: handlers and
        api modules never touch C{.db.}, create batches or put/delete in
        them (passing a StoreTxn to a store method is fine).
        """
        self.assertEqual(problems_in(("handlers", "api"), raw_database_uses), {})

    def test_raw_database_check_catches_batches(self) -> None:
        """The check itself refuses .db. access, .batch() and batch.put/delete."""
        sample = Path(self.mktemp())
        sample.write_text(
            "async def f(self, txn):\n"
            "    batch = self.store.db.batch()\n"
            "    batch.put('t', b'k', b'v')\n"
            "    txn.batch.delete('t', b'k')\n"
            "    await self.store.db.write(batch)\n"
            "    self.store.put(txn, 1)\n"
            "    return txn.batch_size, self.store.delete\n"
        )
        self.assertEqual(
            raw_database_uses(sample),
            ["2:.batch", "2:.batch()", "2:.db.batch", "3:batch.put", "4:.batch", "4:batch.delete",
             "5:.db.write"],
        )

    def test_handlers_do_not_hold_the_homeserver(self) -> None:
        """
        HomeServer is the only composition root: handlers receive their
        dependencies explicitly (docs/architecture.md, "Wiring").
        """
        self.assertEqual(problems_in(("handlers",), homeserver_uses), {})

    def test_homeserver_check_catches_uses(self) -> None:
        """The check itself refuses the import, the annotation and self.hs."""
        sample = Path(self.mktemp())
        sample.write_text(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from conduit_tw.homeserver import HomeServer\n"
            "class H:\n"
            "    def __init__(self, hs: 'HomeServer', other: 'HomeServer | None') -> None:\n"
            "        self.hs = hs\n"
            "    def f(self, hs_like: int) -> int:\n"
            "        return self.hs.x + hs_like\n"
        )
        self.assertEqual(
            homeserver_uses(sample),
            ["3:import conduit_tw.homeserver", "5:hs: HomeServer", "5:other: HomeServer",
             "6:self.hs", "8:self.hs"],
        )

    def test_api_calls_handlers_not_stores(self) -> None:
        """api modules receive the HomeServer but reach no store or database through it."""
        stores = homeserver_store_attributes()
        self.assertTrue({"db", "event_store", "users", "tokens"} <= stores, stores)
        self.assertEqual(problems_in(("api",), lambda path: store_reaches(path, stores)), {})

    def test_store_reach_check_catches_uses(self) -> None:
        sample = Path(self.mktemp())
        sample.write_text(
            "def register(router, hs):\n"
            "    store = hs.event_store\n"
            "    x = hs.events\n"
            "class S:\n"
            "    def f(self):\n"
            "        return self.hs.db, self.hs.auth\n"
        )
        self.assertEqual(
            store_reaches(sample, {"db", "event_store"}), ["2:hs.event_store", "6:hs.db"]
        )
