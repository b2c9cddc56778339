"""
The declaration machinery: every configuration key is declared once, as a field of
a dataclass (a I{section}), and everything else is derived from that declaration.

A key is the attribute name (= the TOML key), its Python type (the annotation), and
L{key}C{(default, doc, type, ...)}: the default, a one-line doc (Markdown, for
docs/configuration.md), how the value is checked (a L{values.Type}; by default
derived from the annotation), and, while nothing in the server reads it,
C{not_effective="why"}. A nested TOML table (C{[global.tls]}) is a field declared
with L{table} whose type is another section.

From the sections come the L{Config} object, validation, C{CONDUIT_*} parsing, the
start-up notices, C{KNOWN_KEYS} and the key tables of docs/configuration.md.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar

from conduit_tw.config import values
from conduit_tw.config.values import Type

__all__ = ["Key", "key", "table", "section", "declared", "SECTIONS", "FEDERATION", "MEDIA"]

_META = "conduit_tw.config.key"
T = TypeVar("T")


@dataclass
class Key:
    """One declared key; C{name} is filled in by L{section}."""

    doc: str
    type: Type | None = None
    #: Why the key has no effect yet; C{None} once the server reads it.
    not_effective: str | None = None
    #: The default as the docs show it, when the value itself would not say it well.
    doc_default: str | None = None
    #: Other spellings: a top-level key (conduwuit's), or C{"table.key"} for a key
    #: of another table that sets this one (Conduit's C{[global.turn]} C{uris}).
    aliases: tuple[str, ...] = ()
    #: For a L{table}: the section class of its keys.
    nested: type | None = None
    #: For a L{table}: C{{}} means C{None} (Conduit's flat C{directory_structure = {}}).
    empty_means_none: bool = False
    #: No start-up notice when the parsed value satisfies this (C{proxy = "none"}).
    notice_unless: Callable[[Any], bool] | None = None
    name: str = ""
    default: Any = None
    #: No default: the key must be given when its table is.
    required: bool = False

    @property
    def is_table(self) -> bool:
        """Whether the value is table-shaped (parsed after the plain keys)."""
        return self.nested is not None or bool(self.type and self.type.table_keys)


def key(
    default: Any = MISSING,
    doc: str = "",
    type: Type | None = None,
    *,
    not_effective: str | None = None,
    doc_default: str | None = None,
    aliases: tuple[str, ...] = (),
    notice_unless: Callable[[Any], bool] | None = None,
) -> Any:
    """Declare a key (a dataclass field); C{default} omitted means required."""
    decl = Key(doc, type, not_effective, doc_default, aliases, notice_unless=notice_unless)
    decl.default, decl.required = default, default is MISSING
    if decl.required:
        return field(metadata={_META: decl})
    if builtins.type(default).__hash__ is None:  # a list, dict or dataclass: one copy per Config
        return field(default_factory=lambda: copy.deepcopy(default), metadata={_META: decl})
    return field(default=default, metadata={_META: decl})


def table(
    nested: type,
    doc: str,
    *,
    optional: bool = False,
    empty_means_none: bool = False,
    not_effective: str | None = None,
    doc_default: str | None = None,
) -> Any:
    """Declare a nested table of keys (a L{section} class); C{optional}: C{None} if absent."""
    decl = Key(doc, None, not_effective, doc_default, nested=nested)
    decl.empty_means_none = empty_means_none
    if optional:
        return field(default=None, metadata={_META: decl})
    return field(default_factory=nested, metadata={_META: decl})


#: Section name (the marker in docs/configuration.md) -> its class, in import order.
SECTIONS: dict[str, type] = {}


def section(name: str) -> Callable[[type[T]], type[T]]:
    """Make C{cls} a dataclass whose L{key} fields are declarations, known as C{name}."""

    def apply(cls: type[T]) -> type[T]:
        cls = dataclass(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            decl = f.metadata.get(_META)
            if decl is None:
                continue
            decl.name = f.name
            if decl.type is None and decl.nested is None:
                hint = typing.get_type_hints(cls)[f.name]
                decl.type = _type_of(hint, f"{cls.__name__}.{f.name}")
        SECTIONS[name] = cls
        return cls

    return apply


_BY_HINT: dict[Any, Type] = {
    bool: values.BOOL,
    bool | None: values.BOOL,
    str: values.STR,
    str | None: values.OPT_STR,
    int: values.integer(),
    float: values.number(),
    list[str]: values.STR_LIST,
}


def _type_of(hint: Any, where: str) -> Type:
    try:
        return _BY_HINT[hint]
    except (KeyError, TypeError):
        raise TypeError(f"{where}: give key() a values.Type for {hint!r}") from None


def declared(cls: type) -> list[Key]:
    """The declared keys of a section (or of L{Config}), in field order."""
    return [
        f.metadata[_META]
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if _META in f.metadata
    ]


# Reasons shared by many keys (C{not_effective=FEDERATION}).
FEDERATION = "federation is not implemented yet"
MEDIA = "the media repository is not implemented yet"
