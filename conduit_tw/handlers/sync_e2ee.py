"""
The end-to-end encryption parts of a /sync response (client-server-api
"Extensions to /sync" of "End-to-End Encryption", and "Send-to-Device
messaging", "Extensions to /sync"):

- C{to_device.events}: the device's waiting messages up to the
  response's position. Messages up to the C{since} token are deleted
  first: the client shows with that token that it received them
  ("deleted only after the client's next sync confirms receipt").
- C{device_one_time_keys_count} and C{device_unused_fallback_key_types}
  (the latter is required), from the stored keys.
- C{device_lists.changed/left} on incremental syncs only.

The SyncHandler calls L{SyncE2EE.add_sections} for every response
(including the idle ones), with the positions it answers for.
"""

from __future__ import annotations

from typing import Any

from conduit_tw.handlers.device_lists import DeviceListTracker
from conduit_tw.handlers.e2e_keys import E2EKeysHandler
from conduit_tw.storage.stores.to_device import ToDeviceStore


class SyncE2EE:
    """See the module docstring."""

    def __init__(
        self, keys: E2EKeysHandler, to_device: ToDeviceStore, device_lists: DeviceListTracker
    ) -> None:
        self.keys = keys
        self.to_device = to_device
        self.device_lists = device_lists

    async def add_sections(
        self,
        body: dict[str, Any],
        user_id: str,
        device_id: str | None,
        since: int | None,
        now: int,
    ) -> bool:
        """
        Add the sections to C{body} for C{(since, now]} (C{since} None: an
        initial sync). Returns whether something the client must see
        arrived (to-device messages, device list changes), which ends a
        long-poll; key counts alone do not.
        """
        news = False
        if device_id is not None:
            if since is not None:
                await self.to_device.delete_up_to(user_id, device_id, since)
            messages = await self.to_device.messages(user_id, device_id, now)
            if messages:
                body["to_device"] = {"events": messages}
                news = True
            body["device_one_time_keys_count"] = await self.keys.one_time_key_counts(user_id, device_id)
            body["device_unused_fallback_key_types"] = await self.keys.unused_fallback_key_types(
                user_id, device_id
            )
        if since is not None and since < now:
            changed, left = await self.device_lists.changes(user_id, since, now)
            if changed or left:
                body["device_lists"] = {"changed": sorted(changed), "left": sorted(left)}
                news = True
        return news
