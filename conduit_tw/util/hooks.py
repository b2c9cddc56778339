"""
Running a component's hooks: the callbacks other components register on it
(C{on_registered}, C{on_deactivated}, C{on_profile_changed} ...).

Every hook list in the server runs I{after} the change it announces is
committed, so a hook cannot veto it: a failing hook is logged with its
traceback and the remaining hooks still run, and the caller's request still
succeeds (the change happened). A hook may be a plain function or return an
awaitable, which is awaited before the next hook runs (hooks run in
registration order).

The one exception is C{EventStore.persist_hooks} (storage/events.py): they run
inside the event's transaction, before its commit, so that what they write
(notification counts, sync caches) is atomic with the event; they are
isolated the same way (a failure is logged, the event is still persisted).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.hooks")


async def run_hooks(hooks: Iterable[Callable[..., Any]], *args: Any, what: str) -> None:
    """
    Call each hook with C{args}, awaiting awaitable results; log failures.

    @param hooks: the hooks, called in order (a copy is taken first, so a
        hook may register or remove hooks).
    @param what: names the hook list in the log line (e.g. C{"on_registered"}).
    """
    for hook in list(hooks):
        try:
            result = hook(*args)
            if hasattr(result, "__await__"):
                await result
        except Exception:
            log.failure("A {what} hook ({hook!r}) failed", what=what, hook=hook)
