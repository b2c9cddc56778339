"""
The key tables of docs/configuration.md, generated from the declarations.

The document keeps its hand-written prose; each table sits between
C{<!-- keys: NAME -->} and C{<!-- /keys -->}, where NAME is a L{section} name (or
C{no-effect} for the keys accepted without effect). Run::

    python -m conduit_tw.config.doc            # rewrite docs/configuration.md
    python -m conduit_tw.config.doc --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from conduit_tw.config.compat import NO_EFFECT, NO_EFFECT_PREFIXES
from conduit_tw.config.declare import SECTIONS, Key, declared
from conduit_tw.config.schema import TOP

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
END = "<!-- /keys -->"
_BLOCK = re.compile(r"(<!-- keys: (\S+) -->\n)(.*?)(" + re.escape(END) + ")", re.S)
_MARK = "**Not effective yet:**"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _default(k: Key) -> str:
    if k.doc_default is not None:
        return k.doc_default
    if k.required:
        return "(required)"
    return "unset" if k.default is None else f"`{_toml(k.default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(k: Key, inherited_why: str | None) -> str:
    why = k.not_effective or inherited_why
    meaning = k.doc + (f" {_MARK} {why}." if why else "")
    kind = "table" if k.nested is not None else k.type.name if k.type else ""
    cells = [f"`{k.name}`", kind, _default(k), meaning]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _parent(cls: type) -> Key | None:
    """The top-level key whose table C{cls} is (C{tls} for L{TlsConfig})."""
    return next((k for k in TOP.values() if k.nested is cls), None)


def render_section(name: str) -> str:
    """The Markdown for one marker: an optional intro line and the key table."""
    if name == "no-effect":
        return _no_effect_table()
    cls = SECTIONS[name]
    parent = _parent(cls)
    why = parent.not_effective if parent else None
    intro = ""
    if parent is not None:
        intro = parent.doc + (f" {_MARK} {why}." if why else "") + "\n\n"
    rows = [_row(k, why) for k in declared(cls) if parent is not None or k.nested is None]
    head = "| key | type | default | meaning |\n|---|---|---|---|\n"
    return intro + head + "\n".join(rows) + "\n"


def _no_effect_table() -> str:
    by_reason: dict[str, list[str]] = {}
    for prefix, reason in NO_EFFECT_PREFIXES.items():
        by_reason.setdefault(reason, []).append(f"`{prefix}*` (any key starting with `{prefix}`)")
    for name, reason in NO_EFFECT.items():
        by_reason.setdefault(reason, []).append(f"`{name}`")
    rows = [
        f"| {', '.join(names)} | {reason}. |"
        for reason, names in by_reason.items()
    ]
    return "| key | why it has no effect |\n|---|---|\n" + "\n".join(rows) + "\n"


def render(text: str) -> str:
    """C{text} with every marked block replaced by its generated table."""

    def block(m: re.Match[str]) -> str:
        name = m.group(2)
        if name != "no-effect" and name not in SECTIONS:
            raise KeyError(f"docs marker names no section: {name!r}")
        return m.group(1) + "\n" + render_section(name) + "\n" + m.group(4)

    return _BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    """Rewrite docs/configuration.md (or, with C{--check}, report whether it is current)."""
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{DOC} is out of date: run python -m conduit_tw.config.doc", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
