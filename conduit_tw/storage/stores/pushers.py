"""
Pushers (client-server-api "Push Notifications", C{POST /pushers/set}).

Layout::

    appkeyuser_pusher  app_id 0xFF sha256hex(pushkey) 0xFF user_id -> JSON pusher
    userid_pusherkey   user_id 0xFF app_id 0xFF sha256hex(pushkey) -> empty

A pushkey may be 512 bytes, more than a key may hold, so keys carry its
sha256 (hex, so never 0xFF) and the value carries the pushkey itself. The
first tree answers "who else uses this app_id + pushkey" (C{append:
false} removes them); the second lists a user's pushers.
"""

from __future__ import annotations

import json
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, digest_part, join
from conduit_tw.storage.values import compact_json
from conduit_tw.util.caches import LruCache

PUSHERS = "appkeyuser_pusher"
BY_USER = "userid_pusherkey"


class PusherStore:
    """Pushers by (app_id, pushkey, user) and by user."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.pushers = db.open_tree(PUSHERS)
        self.by_user = db.open_tree(BY_USER)
        #: user -> their pushers. Asked for every notified member of every
        #: event, and almost always empty, so it is kept in memory; every
        #: change goes through this store, which drops the entries.
        self._cache: LruCache[str, list[dict[str, Any]]] = LruCache(50_000)

    async def for_user(self, user_id: str) -> list[dict[str, Any]]:
        """Every pusher of the user (stored dicts, with C{user_id})."""
        cached = self._cache.get(user_id)
        if cached is None:
            cached = await self._load(user_id)
            self._cache.set(user_id, cached)
        return list(cached)

    async def _load(self, user_id: str) -> list[dict[str, Any]]:
        prefix = user_id.encode("utf-8") + SEP
        rows = await self.by_user.scan_prefix(prefix)
        keys = []
        for k, _ in rows:
            app_id, pk = k[len(prefix):].split(SEP)
            keys.append(join(app_id, pk, user_id))
        values = await self.pushers.get_many(keys)
        return [json.loads(v) for v in values if v is not None]

    async def users_of(self, app_id: str, pushkey: str) -> list[str]:
        """The users having a pusher with this app_id and pushkey."""
        prefix = join(app_id, digest_part(pushkey)) + SEP
        rows = await self.pushers.scan_prefix(prefix)
        return [k[len(prefix):].decode("utf-8") for k, _ in rows]

    async def set(self, pusher: dict[str, Any], remove_other_users: bool) -> None:
        """
        Create or replace C{pusher} (a dict with C{user_id}, C{app_id},
        C{pushkey} ...); with C{remove_other_users}, other users' pushers
        with the same app_id and pushkey go in the same batch.
        """
        user_id, app_id, pk = pusher["user_id"], pusher["app_id"], digest_part(pusher["pushkey"])
        batch = self.db.batch()
        if remove_other_users:
            for other in await self.users_of(app_id, pusher["pushkey"]):
                if other != user_id:
                    batch.delete(PUSHERS, join(app_id, pk, other))
                    batch.delete(BY_USER, join(other, app_id, pk))
                    self._cache.pop(other)
        batch.put(PUSHERS, join(app_id, pk, user_id), compact_json(pusher))
        batch.put(BY_USER, join(user_id, app_id, pk), b"")
        self._cache.pop(user_id)
        try:
            await self.db.write(batch)
        finally:
            self._cache.pop(user_id)

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        """Remove one pusher (no error if absent)."""
        pk = digest_part(pushkey)
        batch = self.db.batch()
        batch.delete(PUSHERS, join(app_id, pk, user_id))
        batch.delete(BY_USER, join(user_id, app_id, pk))
        self._cache.pop(user_id)
        try:
            await self.db.write(batch)
        finally:
            self._cache.pop(user_id)
