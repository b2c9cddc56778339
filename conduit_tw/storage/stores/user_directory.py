"""
The user directory index (client-server-api "User directory"): the
profile each known user is searched by, and the words of it, so a search
reads a prefix range of words instead of every user.

Layout (C{·} is 0xFF)::

    userdirectory_profile  user_id        -> JSON {"displayname"?, "avatar_url"?}
    userdirectory_term     term · user_id -> b""

Terms are L{terms}: the case-folded word characters runs of the localpart
and of the display name, and the whole case-folded localpart. The
handler (handlers/user_directory.py) writes an entry when a user joins a
room (in the member event's own batch) and when a local user's profile
changes. A term left over from an older profile in the same batch only
costs a candidate that the handler's check of the entry drops.
"""

from __future__ import annotations

import json
import re
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP
from conduit_tw.storage.txn import StoreTxn

PROFILE = "userdirectory_profile"
TERMS = "userdirectory_term"

#: Longest term kept (keys stay far below the 511-byte limit).
_MAX_TERM = 64

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The case-folded word-character runs of C{text}."""
    return _WORD.findall(text.casefold())


def terms(user_id: str, profile: dict[str, Any]) -> set[str]:
    """The index terms of a user and their profile."""
    localpart = user_id[1:].partition(":")[0].casefold()
    found = {localpart, *words(localpart)}
    name = profile.get("displayname")
    if isinstance(name, str):
        found.update(words(name))
    return {t[:_MAX_TERM] for t in found if t}


class UserDirectoryStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.profiles = db.open_tree(PROFILE)
        self.terms = db.open_tree(TERMS)

    async def get(self, user_id: str, txn: StoreTxn | None = None) -> dict[str, Any] | None:
        """The indexed profile of a user (as changed by C{txn} so far), or None."""
        if txn is not None:
            pending = txn.data.get("userdirectory", {})
            if user_id in pending:
                return pending[user_id]
        raw = await self.profiles.get(user_id.encode("utf-8"))
        return json.loads(raw) if raw is not None else None

    async def set(self, user_id: str, profile: dict[str, Any], txn: StoreTxn | None = None) -> None:
        """
        Index C{profile} (C{displayname}, C{avatar_url}) for C{user_id}, in
        C{txn} if given (an event's batch), else in a batch of its own.
        """
        old = await self.get(user_id, txn)
        if old == profile:
            return
        batch = txn.batch if txn is not None else self.db.batch()
        uid = user_id.encode("utf-8")
        new_terms = terms(user_id, profile)
        old_terms = terms(user_id, old) if old is not None else set()
        for t in old_terms - new_terms:
            batch.delete(TERMS, t.encode("utf-8") + SEP + uid)
        for t in new_terms - old_terms:
            batch.put(TERMS, t.encode("utf-8") + SEP + uid, b"")
        batch.put(PROFILE, uid, json.dumps(profile).encode("utf-8"))
        if txn is not None:
            txn.data.setdefault("userdirectory", {})[user_id] = profile
        else:
            await self.db.write(batch)

    async def users_with_term_prefix(self, prefix: str, limit: int) -> list[str]:
        """Users with a term starting with C{prefix} (case-folded), at most C{limit}, by term."""
        rows = await self.terms.scan_prefix(prefix[:_MAX_TERM].encode("utf-8"), limit=limit)
        users = {}
        for key, _ in rows:
            users[key.rpartition(SEP)[2].decode("utf-8")] = None
        return list(users)

    async def users_with_id_prefix(self, prefix: str, limit: int) -> list[str]:
        """Indexed users whose ID starts with C{prefix}, at most C{limit}."""
        rows = await self.profiles.scan_prefix(prefix.encode("utf-8"), limit=limit)
        return [key.decode("utf-8") for key, _ in rows]
