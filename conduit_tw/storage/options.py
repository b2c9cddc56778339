"""Parsing of backend options shared by the built-in backends."""

from __future__ import annotations

from typing import Any, Container, Mapping


def choice_option(
    options: Mapping[str, Any], key: str, choices: Container[str], default: str, why: str
) -> str:
    """
    C{options[key]} lower-cased (C{default} when absent), which must be one
    of C{choices}.

    @raise ValueError: naming the key, the allowed values and C{why}
        other values are refused.
    """
    level = str(options.get(key, default)).lower()
    if level not in choices:
        raise ValueError(f"{key} must be one of {sorted(choices)}, not {level!r} ({why})")  # type: ignore[call-overload]
    return level
