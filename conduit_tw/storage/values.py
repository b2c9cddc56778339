"""Value codec shared by stores: compact UTF-8 JSON."""

from __future__ import annotations

import json
from typing import Any


def compact_json(value: Any) -> bytes:
    """C{value} as compact JSON (no spaces, non-ASCII kept as UTF-8)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
