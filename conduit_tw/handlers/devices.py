"""
Devices and the sessions (tokens) bound to them (client-server-api
"Relationship between access tokens and devices", "Device Management").

Last-seen data is updated cheaply: every authenticated request only
touches an in-memory dict; it is written to the database (one batch for
every pending device) when a device shows up from a new IP, when the
last write is older than L{LAST_SEEN_FLUSH_MS}, and on shutdown. Reads
merge the in-memory values, so the API is always current.

Hooks for other domains (registered into, never imported from here):
L{DeviceHandler.on_devices_deleted} (e.g. the E2EE code drops device
keys and announces a device-list change).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import replace
from typing import Any, Awaitable, Callable, Iterable

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.devices import Device, DeviceStore
from conduit_tw.storage.stores.tokens import TokenStore
from conduit_tw.util.hooks import run_hooks

log = get_logger("conduit_tw.devices")

#: Longest persisted staleness of last_seen_ts.
LAST_SEEN_FLUSH_MS = 5 * 60 * 1000
#: Device IDs and display names longer than this are refused.
MAX_DEVICE_ID_BYTES = 255
MAX_DEVICE_NAME_LENGTH = 100

DevicesDeletedHook = Callable[[str, list[str]], "Awaitable[None] | None"]


def generate_device_id() -> str:
    """A fresh device ID: 10 upper-case letters."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


def check_device_id(device_id: Any) -> str:
    """Validate a client-chosen device ID (400 M_INVALID_PARAM if unusable)."""
    if not isinstance(device_id, str) or not device_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "device_id must be a non-empty string")
    if len(device_id.encode("utf-8")) > MAX_DEVICE_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "device_id is too long")
    return device_id


def check_display_name(name: Any) -> str | None:
    """Validate a device display name (None allowed)."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise MatrixError(400, Codes.BAD_JSON, "display_name must be a string")
    if len(name) > MAX_DEVICE_NAME_LENGTH:
        raise MatrixError(400, Codes.INVALID_PARAM, "display_name is too long")
    return name


class DeviceHandler:
    """Device CRUD, token issuing and last-seen tracking."""

    def __init__(
        self,
        store: DeviceStore,
        tokens: TokenStore,
        clock_ms: Callable[[], int],
        allow_device_name_federation: bool = False,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self._clock_ms = clock_ms
        self.allow_device_name_federation = allow_device_name_federation
        #: Async or sync callables C{(user_id, device_ids)} run after devices
        #: are deleted (logout, DELETE /devices, deactivation ...).
        self.on_devices_deleted: list[DevicesDeletedHook] = []
        #: Callables C{(user_id, device_id)} run after a device is renamed
        #: (E2EE: display names are part of the device list).
        self.on_device_renamed: list[Callable[[str, str], Any]] = []
        #: Async callables C{(user_id, device_id) -> bool}: is this ID taken by
        #: something else of the user (a cross-signing public key, E2EE)?
        self.device_id_reserved: list[Callable[[str, str], Awaitable[bool]]] = []
        #: (user_id, device_id) -> (ip, ts) seen but not yet written.
        self._pending: dict[tuple[str, str], tuple[str, int]] = {}
        #: (user_id, device_id) -> ip last written.
        self._written_ip: dict[tuple[str, str], str] = {}
        self._last_flush = clock_ms()
        self._flushing = False

    # -- sessions

    async def create_session(
        self,
        user_id: str,
        device_id: str | None,
        initial_display_name: str | None,
        *,
        is_guest: bool = False,
        ip: str | None = None,
        expires_in_ms: int | None = None,
        with_refresh: bool = False,
        appservice_id: str | None = None,
    ) -> dict[str, Any]:
        """
        Log a device in: create it (or reuse C{device_id} if the user has
        it, keeping its name) and give it fresh tokens, which invalidates
        the ones it had.

        @return: the C{access_token}, C{device_id} and, when asked for,
            C{refresh_token} and C{expires_in_ms} of a login response.
        """
        now = self._clock_ms()
        if device_id is None:
            device_id = generate_device_id()
            while await self.store.exists(user_id, device_id):
                device_id = generate_device_id()
            existing = False
        else:
            device_id = check_device_id(device_id)
            existing = await self.store.exists(user_id, device_id)
            if not existing:
                for reserved in self.device_id_reserved:
                    if await reserved(user_id, device_id):
                        raise MatrixError(400, Codes.INVALID_PARAM, "This device ID is in use by a key")
        access, refresh = await self.store.login_device(
            self.tokens,
            user_id,
            device_id,
            create=not existing,
            display_name=None if existing else check_display_name(initial_display_name),
            ip=ip,
            now=now,
            is_guest=is_guest,
            expires_at=now + expires_in_ms if expires_in_ms is not None else None,
            with_refresh=with_refresh,
            appservice_id=appservice_id,
        )
        key = (user_id, device_id)
        self._pending.pop(key, None)
        if ip is not None:
            self._written_ip[key] = ip
        result: dict[str, Any] = {"access_token": access, "device_id": device_id}
        if refresh is not None:
            result["refresh_token"] = refresh
        if expires_in_ms is not None:
            result["expires_in_ms"] = expires_in_ms
        return result

    # -- queries

    def _merge(self, device: Device) -> Device:
        pending = self._pending.get((device.user_id, device.device_id))
        if pending is None:
            return device
        return replace(device, last_seen_ip=pending[0], last_seen_ts=pending[1])

    async def list_devices(self, user_id: str) -> list[Device]:
        """Every device of the user, last-seen data up to date."""
        return [self._merge(d) for d in await self.store.list(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> Device:
        """One device; 404 M_NOT_FOUND if the user has no such device."""
        device = await self.store.get(user_id, device_id)
        if device is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        return self._merge(device)

    async def devices_for_federation(self, user_id: str) -> list[dict[str, Any]]:
        """
        The user's devices as other servers may see them: display names
        only when C{allow_device_name_federation} is set, never last-seen.
        (Device keys are added by the E2EE code.)
        """
        out = []
        for d in await self.store.list(user_id):
            entry: dict[str, Any] = {"device_id": d.device_id}
            if self.allow_device_name_federation and d.display_name is not None:
                entry["device_display_name"] = d.display_name
            out.append(entry)
        return out

    # -- changes

    async def set_display_name(self, user_id: str, device_id: str, name: Any) -> None:
        """Rename a device; 404 if the user has no such device."""
        name = check_display_name(name)
        if not await self.store.set_display_name(user_id, device_id, name):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        await run_hooks(self.on_device_renamed, user_id, device_id, what="on_device_renamed")

    async def delete_devices(self, user_id: str, device_ids: Iterable[str]) -> list[str]:
        """
        Delete devices and every token bound to them, at once, in one
        batch; unknown IDs are skipped. Runs the L{on_devices_deleted} hooks.

        @return: the IDs that existed and were deleted.
        """
        ids = [d for d in dict.fromkeys(device_ids) if isinstance(d, str) and d]
        for device_id in ids:
            self._pending.pop((user_id, device_id), None)
            self._written_ip.pop((user_id, device_id), None)
        deleted = await self.store.delete_devices(self.tokens, user_id, ids)
        if deleted:
            await run_hooks(self.on_devices_deleted, user_id, deleted, what="on_devices_deleted")
        return deleted

    async def delete_all_devices(self, user_id: str, except_device: str | None = None) -> list[str]:
        """Delete every device of the user (but C{except_device})."""
        ids = [d for d in await self.store.device_ids(user_id) if d != except_device]
        return await self.delete_devices(user_id, ids)

    # -- last seen

    def seen(self, user_id: str, device_id: str, ip: str) -> None:
        """Note a request from a device (called by L{Auth} on every request)."""
        now = self._clock_ms()
        key = (user_id, device_id)
        self._pending[key] = (ip, now)
        if self._written_ip.get(key) != ip or now - self._last_flush >= LAST_SEEN_FLUSH_MS:
            self._start_flush()

    def _start_flush(self) -> None:
        if self._flushing:
            return
        from twisted.internet.defer import Deferred

        d = Deferred.fromCoroutine(self.flush())
        d.addErrback(lambda f: log.failure("Writing last-seen data failed", f))

    async def flush(self) -> None:
        """Write every pending last-seen record in one batch."""
        if self._flushing or not self._pending:
            self._last_flush = self._clock_ms()
            return
        self._flushing = True
        pending, self._pending = self._pending, {}
        try:
            await self.store.write_last_seen(
                (user, device, ip, ts) for (user, device), (ip, ts) in pending.items()
            )
            for key, (ip, _) in pending.items():
                self._written_ip[key] = ip
            if len(self._written_ip) > 100_000:
                self._written_ip.clear()
        except BaseException:
            for key, value in pending.items():
                self._pending.setdefault(key, value)
            raise
        finally:
            self._flushing = False
            self._last_flush = self._clock_ms()
