"""
Device lists over federation (server-server-api "Device Management").

Layout (C{·} is 0xFF)::

    localdevicestream   user_id -> JSON {"stream_id", "devices": {device_id: digest}, "signing": digest}
    remoteuserdevices   user_id -> JSON {"stream_id", "seen": [stream IDs],
                                         "devices": {device_id: {"keys", "device_display_name"}},
                                         "master_key", "self_signing_key"}

- C{localdevicestream}: per local user, the last C{m.device_list_update}
  C{stream_id} sent and a digest of each device (keys and display name)
  and of the cross-signing keys as last announced, so a change is
  announced as the difference with what other servers were told.
- C{remoteuserdevices}: the cached device list of a remote user, one
  record (replaced whole on each update, so it is always one consistent
  list), with the recent stream IDs seen to detect gaps in C{prev_id}.
  It is dropped when the user joins a room (we may have missed updates
  while we shared no room with them), so the next update resyncs.
C{m.direct_to_device} message IDs are remembered by the to-device store,
as transaction IDs of the remote sender.
"""

from __future__ import annotations

import json
from typing import Any

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.txn import StoreTxn

LOCAL_STREAM = "localdevicestream"
REMOTE_DEVICES = "remoteuserdevices"

JsonDict = dict[str, Any]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class FederationDeviceStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.db = db
        self.local = db.open_tree(LOCAL_STREAM)
        self.remote = db.open_tree(REMOTE_DEVICES)

    async def local_stream(self, user_id: str) -> JsonDict:
        """What was last announced for a local user (C{stream_id} 0: nothing yet)."""
        raw = await self.local.get(user_id.encode("utf-8"))
        return json.loads(raw) if raw is not None else {"stream_id": 0, "devices": {}, "signing": ""}

    async def put_local_stream(self, user_id: str, record: JsonDict) -> None:
        """Replace what was announced for a local user."""
        batch = self.db.batch()
        batch.put(LOCAL_STREAM, user_id.encode("utf-8"), _dumps(record))
        await self.db.write(batch)

    async def remote_user(self, user_id: str) -> JsonDict | None:
        """The cached device list of a remote user, or None when not cached."""
        raw = await self.remote.get(user_id.encode("utf-8"))
        return json.loads(raw) if raw is not None else None

    async def put_remote_user(self, user_id: str, record: JsonDict) -> None:
        """Replace the cached device list of a remote user."""
        batch = self.db.batch()
        batch.put(REMOTE_DEVICES, user_id.encode("utf-8"), _dumps(record))
        await self.db.write(batch)

    def forget_remote_user(self, txn: StoreTxn, user_id: str) -> None:
        """Drop a remote user's cached list in C{txn} (it may be stale)."""
        txn.batch.delete(REMOTE_DEVICES, user_id.encode("utf-8"))
