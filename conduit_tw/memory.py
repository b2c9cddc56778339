"""
Giving freed memory back to the system (idle footprint, docs/architecture.md
"Memory floor").

glibc keeps memory freed by the process in its heap for reuse; after
start-up (import-time garbage) and after a burst of requests, much of it
stays resident although unused. L{trim_heap} asks glibc to return it
(C{malloc_trim(3)}: the top of the heap and whole free pages inside it);
the service calls it once started and then every L{TRIM_INTERVAL} seconds
(well under a millisecond each). Nothing happens on other C libraries.
"""

from __future__ import annotations

import ctypes
from typing import Any

#: Seconds between two trims while the server runs.
TRIM_INTERVAL = 5.0

_malloc_trim: Any = None


def trim_heap() -> bool:
    """Return free heap memory to the system; C{False} where glibc's C{malloc_trim} is missing."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim is False:
        return False
    _malloc_trim(0)
    return True
