"""
Other servers' signing keys, as fetched by the keyring
(server-server-api "Retrieving server keys").

Layout::

    serverkeyid_verifykey   server_name 0xFF key_id
                            -> JSON {"key": unpadded base64, "valid_until_ts": int}
    servername_keyresponse  server_name
                            -> JSON {"fetched_ts": int, "response": <key response>}

C{serverkeyid_verifykey} holds every key ever accepted for a server (old
keys are kept so the signatures of old events can still be checked); its
C{valid_until_ts} is already capped by the keyring (the lesser of the
response's C{valid_until_ts} and 7 days after the fetch, or the
C{expired_ts} of an old key). C{servername_keyresponse} holds the newest
response signed by the server itself, which the notary endpoints serve
again ("If the server fails to respond ... continue to return the last
response they received").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from conduit_tw.events.canonical_json import encode_canonical_json
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, join

KEYS = "serverkeyid_verifykey"
RESPONSES = "servername_keyresponse"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One verify key of a server: unpadded base64 and its capped validity."""

    key: str
    valid_until_ts: int


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A server's own signed key response and when we fetched it."""

    fetched_ts: int
    response: dict[str, Any]


class ServerKeyStore:
    """Verify keys and key responses of other servers."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.keys = db.open_tree(KEYS)
        self.responses = db.open_tree(RESPONSES)

    async def get_keys(self, server_name: str) -> dict[str, StoredKey]:
        """Every stored key of C{server_name}, by key ID."""
        rows = await self.keys.scan_prefix(join(server_name, b""))
        found = {}
        for k, v in rows:
            key_id = k.rpartition(SEP)[2].decode("utf-8")
            record = json.loads(v)
            found[key_id] = StoredKey(record["key"], record["valid_until_ts"])
        return found

    async def get_response(self, server_name: str) -> StoredResponse | None:
        """The stored key response of C{server_name}, if any."""
        raw = await self.responses.get(server_name.encode("utf-8"))
        if raw is None:
            return None
        record = json.loads(raw)
        return StoredResponse(record["fetched_ts"], record["response"])

    async def store(
        self,
        server_name: str,
        keys: Mapping[str, StoredKey],
        response: StoredResponse | None = None,
    ) -> None:
        """
        Record keys (replacing the records of the same key IDs) and,
        optionally, the response they came from, in one atomic write.
        """
        batch = self.db.batch()
        for key_id, key in keys.items():
            value = {"key": key.key, "valid_until_ts": key.valid_until_ts}
            batch.put(KEYS, join(server_name, key_id), encode_canonical_json(value))
        if response is not None:
            value = {"fetched_ts": response.fetched_ts, "response": response.response}
            batch.put(RESPONSES, server_name.encode("utf-8"), encode_canonical_json(value))
        if len(batch):
            await self.db.write(batch)
