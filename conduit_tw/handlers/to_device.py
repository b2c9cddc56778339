"""
Send-to-device messaging (client-server-api "Send-to-Device messaging";
to_device.yaml): C{PUT /sendToDevice/{eventType}/{txnId}}.

- Idempotent per transaction ID and sending device ("Transaction
  identifiers"): a repeated request is answered 200 and delivers nothing
  again.
- C{*} as device ID means every device the user has now.
- Messages for local devices are queued at the request's stream position
  and delivered in /sync C{to_device.events} (handlers/sync_e2ee.py),
  which deletes them once the client syncs with a token past them.
- Messages for remote users are handed, grouped by server, to the
  callables in L{ToDeviceHandler.remote_senders} (the federation work
  sends them as C{m.direct_to_device} EDUs, server-server-api
  "Send-to-device messaging"); without one they are dropped with a log line.
"""

from __future__ import annotations

import secrets
from typing import Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.logging import get_logger
from conduit_tw.notifier import Notifier
from conduit_tw.storage.stores.devices import DeviceStore
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.to_device import ToDeviceStore
from conduit_tw.util.hooks import run_hooks
from conduit_tw.util.linearizer import Linearizer

log = get_logger("conduit_tw.to_device")

#: C{(destination, sender, event_type, message_id, {user: {device or "*": content}})}.
RemoteSender = Callable[[str, str, str, str, dict[str, dict[str, Any]]], "Awaitable[None] | None"]


class ToDeviceHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: ToDeviceStore,
        devices: DeviceStore,
        globals_store: GlobalsStore,
        notifier: Notifier,
        is_local: Callable[[str], bool],
        clock_ms: Callable[[], int],
    ) -> None:
        self.store = store
        self._clock_ms = clock_ms
        self.devices = devices
        self.globals = globals_store
        self.notifier = notifier
        self.is_local = is_local
        #: Hand-off of messages for remote users (see the module docstring).
        self.remote_senders: list[RemoteSender] = []
        #: C{(sender, event_type, [(user, device, content)])} run after
        #: messages for local devices are stored (appservices, MSC2409).
        self.on_local_delivered: list[Callable[[str, str, list[tuple[str, str, Any]]], Any]] = []
        self._lock = Linearizer("to_device")

    async def send(
        self,
        sender: str,
        sender_device: str | None,
        event_type: str,
        txn_id: str,
        messages: dict[str, Any],
    ) -> None:
        """Queue C{messages} (user -> device or C{*} -> content) once per C{txn_id}."""
        for user_id, per_device in messages.items():
            if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
                raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid user ID {str(user_id)[:64]!r}")
            if not isinstance(per_device, dict) or not all(isinstance(c, dict) for c in per_device.values()):
                raise MatrixError(400, Codes.BAD_JSON, "messages must map users to devices to objects")
        device_key = sender_device or ""
        async with self._lock.queue((sender, device_key)):
            if await self.store.seen_txn(sender, device_key, txn_id):
                return
            local: list[tuple[str, str, Any]] = []
            remote: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, per_device in messages.items():
                if not self.is_local(user_id):
                    remote.setdefault(user_id.partition(":")[2], {})[user_id] = per_device
                    continue
                local.extend(await self._expand(user_id, per_device))
            position = await self.globals.next_position()
            await self.store.put(
                sender, device_key, txn_id, event_type, position, local, self._clock_ms()
            )
        if local:
            self.notifier.notify(position, users={user for user, _, _ in local})
            await run_hooks(self.on_local_delivered, sender, event_type, local, what="on_local_delivered")
        for destination, users in remote.items():
            await self._send_remote(destination, sender, event_type, users)

    async def _expand(self, user_id: str, per_device: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """C{(user, device, content)} for the user's existing devices; C{*} is all of them."""
        known = set(await self.devices.device_ids(user_id))
        targets: dict[str, Any] = {}
        if "*" in per_device:
            targets = dict.fromkeys(sorted(known), per_device["*"])
        for device_id, content in per_device.items():
            if device_id != "*" and device_id in known:
                targets[device_id] = content
        return [(user_id, d, c) for d, c in targets.items()]

    async def _send_remote(
        self, destination: str, sender: str, event_type: str, users: dict[str, dict[str, Any]]
    ) -> None:
        if not self.remote_senders:
            log.info(
                "Dropping to-device messages for {destination}: no federation sender",
                destination=destination,
            )
            return
        message_id = secrets.token_urlsafe(16)
        await run_hooks(
            self.remote_senders, destination, sender, event_type, message_id, users,
            what="remote_senders",
        )

    async def receive_remote(
        self, sender: str, event_type: str, message_id: str, messages: dict[str, Any]
    ) -> None:
        """
        Deliver an inbound C{m.direct_to_device} EDU's messages to our
        users' devices (C{*}: every device), once per sender and
        C{message_id} (server-server-api "Send-to-device messaging"); the
        caller has checked that the sender belongs to the origin.
        """
        async with self._lock.queue((sender, "")):
            if await self.store.seen_txn(sender, "", message_id):
                return
            local: list[tuple[str, str, Any]] = []
            for user_id, per_device in messages.items():
                if not isinstance(user_id, str) or not self.is_local(user_id):
                    continue
                if not isinstance(per_device, dict):
                    continue
                per_device = {d: c for d, c in per_device.items() if isinstance(c, dict)}
                local.extend(await self._expand(user_id, per_device))
            position = await self.globals.next_position()
            await self.store.put(
                sender, "", message_id, event_type, position, local, self._clock_ms()
            )
        if local:
            self.notifier.notify(position, users={user for user, _, _ in local})

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """C{DeviceHandler.on_devices_deleted}: drop their inboxes."""
        for device_id in device_ids:
            await self.store.delete_device(user_id, device_id)
