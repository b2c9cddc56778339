"""
Periodic database housekeeping (C{cleanup_second_interval}): forget what
has expired, so that nothing grows without bound.

Swept each run, each in its own batches (one failing does not stop the
others):

  - login tokens (C{m.login.token}) and OpenID tokens past their expiry;
  - ids made by C{POST /media/v1/create} whose content never came before
    C{unused_expires_at};
  - client transaction IDs (room events and to-device messages) older than
    L{TXN_ID_LIFETIME_MS}: client-server-api "Transaction identifiers"
    only asks for idempotency of retries, and a day covers every client
    retry loop (Synapse keeps them as long);
  - UIA sessions past their lifetime (held in memory).

Not swept, on purpose: access tokens past C{expires_at} (each device has
at most one, replaced when it refreshes; keeping it lets a request with it
answer C{M_UNKNOWN_TOKEN} with C{soft_logout}, so the client refreshes
instead of logging out), registration tokens (the admins list and delete
them).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.housekeeping")

#: How long client transaction IDs are remembered.
TXN_ID_LIFETIME_MS = 24 * 3600 * 1000


class Housekeeping:
    """
    The sweeps of the module docstring.

    @param purge_login_tokens: C{TokenStore.purge_expired_login_tokens}.
    @param purge_openid_tokens: C{OpenIdTokenStore.purge_expired}.
    @param expire_pending_media: C{MediaHandler.expire_pending}.
    @param purge_txns: C{purge_txns(before_ms)} of the stores that keep
        client transaction IDs.
    @param expire_uia: C{UIA.expire_sessions}.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int],
        purge_login_tokens: Callable[[int], Awaitable[int]],
        purge_openid_tokens: Callable[[int], Awaitable[int]],
        expire_pending_media: Callable[[], Awaitable[int]],
        purge_txns: list[Callable[[int], Awaitable[int]]],
        expire_uia: Callable[[], Awaitable[None]],
    ) -> None:
        self._clock_ms = clock_ms
        self._purge_login_tokens = purge_login_tokens
        self._purge_openid_tokens = purge_openid_tokens
        self._expire_pending_media = expire_pending_media
        self._purge_txns = purge_txns
        self._expire_uia = expire_uia

    async def run(self) -> dict[str, int]:
        """Sweep once; returns how many records each sweep removed."""
        now = self._clock_ms()
        sweeps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("login_tokens", lambda: self._purge_login_tokens(now)),
            ("openid_tokens", lambda: self._purge_openid_tokens(now)),
            ("pending_media", self._expire_pending_media),
            ("txn_ids", lambda: self._purge_all_txns(now - TXN_ID_LIFETIME_MS)),
            ("uia_sessions", self._expire_uia),
        ]
        counts: dict[str, int] = {}
        for name, sweep in sweeps:
            try:
                counts[name] = (await sweep()) or 0
            except Exception:
                log.failure("Housekeeping: sweeping {name} failed", name=name)
        if any(counts.values()):
            log.debug("Housekeeping removed {counts}", counts=counts)
        return counts

    async def _purge_all_txns(self, before_ms: int) -> int:
        total = 0
        for purge in self._purge_txns:
            total += await purge(before_ms)
        return total
