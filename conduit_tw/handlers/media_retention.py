"""
Media retention policies (C{[[global.media.retention]]}, Conduit's
semantics; docs/configuration.md "Media").

Media falls in three kinds: I{local} (uploaded here), I{remote} (other
servers' media cached here) and I{thumbnail} (thumbnails of either,
generated here). Each kind follows the policy whose C{scope} names it,
else the policy without a scope, else none (kept for ever). A policy
deletes:

  - C{created}: what is older than this;
  - C{accessed}: what was not downloaded for this long (a thumbnail shown
    counts for the media too; never downloaded means since its creation);
  - C{space}: the least recently accessed first, while the kind's files
    together are larger than this.

Deleting local or remote media deletes its thumbnails with it; the
C{thumbnail} kind only deletes thumbnails, which are generated again when
asked for. Each media's metadata goes in one batch, then its files
(L{MediaHandler.delete}), so a crash in between leaves an unreferenced
file, never metadata without its file. Ids made by C{/create} that are
still waiting for their content are not media yet: the periodic
housekeeping expires them (L{MediaHandler.expire_pending}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from conduit_tw.handlers.media import MediaHandler
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.media import MediaStore

log = get_logger("conduit_tw.media")

KINDS = ("local", "remote", "thumbnail")
#: Policies are applied at most this often, at least this often...
MAX_INTERVAL_S = 3600.0
MIN_INTERVAL_S = 60.0


@dataclass
class _Item:
    """One file the policies may delete."""

    server_name: str
    media_id: str
    variant: str  # "" for media
    size: int
    created: int
    accessed: int


def resolve_policies(policies: Iterable[Any]) -> dict[str, Any]:
    """The policy each kind follows (C{scope}, else the scope-less one)."""
    by_scope = {p.scope: p for p in policies}
    out = {}
    for kind in KINDS:
        policy = by_scope.get(kind, by_scope.get(None))
        if policy is not None and (
            policy.created is not None or policy.accessed is not None or policy.space is not None
        ):
            out[kind] = policy
    return out


def expired(items: list[_Item], policy: Any, now_ms: int) -> list[_Item]:
    """The items C{policy} deletes (pure: see the module docstring)."""
    doomed: list[_Item] = []
    kept: list[_Item] = []
    for item in items:
        if policy.created is not None and now_ms - item.created >= policy.created * 1000:
            doomed.append(item)
        elif policy.accessed is not None and now_ms - item.accessed >= policy.accessed * 1000:
            doomed.append(item)
        else:
            kept.append(item)
    if policy.space is not None:
        total = sum(i.size for i in kept)
        # Least recently accessed first; the older upload breaks ties.
        for item in sorted(kept, key=lambda i: (i.accessed, i.created)):
            if total <= policy.space:
                break
            doomed.append(item)
            total -= item.size
    return doomed


class MediaRetention:
    """
    Applies the retention policies; L{run} is called periodically (every
    L{interval} seconds by the housekeeping service).
    """

    def __init__(
        self,
        server_name: str,
        store: MediaStore,
        media: MediaHandler,
        policies: Iterable[Any],
        clock_ms: Callable[[], int],
    ) -> None:
        self.server_name = server_name
        self._store = store
        self._media = media
        self.policies = resolve_policies(policies)
        self._clock_ms = clock_ms

    @property
    def enabled(self) -> bool:
        """Whether any policy can delete anything."""
        return bool(self.policies)

    @property
    def interval(self) -> float:
        """
        Seconds between runs: a quarter of the shortest duration of any
        policy, between a minute and an hour (a space cap alone: hourly).
        """
        durations = [
            d for p in self.policies.values() for d in (p.created, p.accessed) if d is not None
        ]
        if not durations:
            return MAX_INTERVAL_S
        return max(MIN_INTERVAL_S, min(MAX_INTERVAL_S, min(durations) / 4))

    async def run(self) -> int:
        """Apply every policy once; returns how many files were deleted."""
        if not self.policies:
            return 0
        now = self._clock_ms()
        accessed = await self._store.access_times()
        media: dict[str, list[_Item]] = {"local": [], "remote": []}
        created_of: dict[tuple[str, str], int] = {}
        for server_name, media_id, meta in await self._store.all_media():
            if meta.get("pending"):
                continue
            created = int(meta.get("created_ts", 0))
            created_of[(server_name, media_id)] = created
            kind = "local" if server_name == self.server_name and not meta.get("remote") else "remote"
            media[kind].append(_Item(
                server_name, media_id, "", int(meta.get("size", 0)), created,
                max(created, accessed.get((server_name, media_id), 0)),
            ))
        deleted = 0
        gone: set[tuple[str, str]] = set()
        for kind in ("local", "remote"):
            policy = self.policies.get(kind)
            if policy is None:
                continue
            for item in expired(media[kind], policy, now):
                if await self._media.delete(item.server_name, item.media_id):
                    deleted += 1
                gone.add((item.server_name, item.media_id))
        policy = self.policies.get("thumbnail")
        if policy is not None:
            thumbs = []
            for server_name, media_id, variant, meta in await self._store.all_thumbnails():
                if (server_name, media_id) in gone:
                    continue
                created = int(meta.get("created_ts", created_of.get((server_name, media_id), 0)))
                thumbs.append(_Item(
                    server_name, media_id, variant, int(meta.get("size", 0)), created,
                    max(created, accessed.get((server_name, media_id, variant), 0)),
                ))
            for item in expired(thumbs, policy, now):
                await self._media.delete_thumbnails(item.server_name, item.media_id, [item.variant])
                deleted += 1
        if deleted:
            log.info("Media retention deleted {n} files", n=deleted)
        return deleted
