"""
End-to-end encryption over federation (server-server-api "Device
Management", "Send-to-device messaging", "End-to-End Encryption").

Outgoing:

- to-device messages for remote users (L{FederationE2EE.send_to_device},
  a C{ToDeviceHandler.remote_senders} entry) become one persisted
  C{m.direct_to_device} EDU per destination, with a unique C{message_id};
- a local user's device or key change (L{FederationE2EE.local_keys_changed},
  called after C{DeviceListTracker.key_changed}) is compared with what
  other servers were last told (C{FederationDeviceStore.local_stream}):
  each added, changed or deleted device is one C{m.device_list_update}
  (C{stream_id} increasing per user, C{prev_id} the previous one,
  C{deleted}, the device keys), changed master/self-signing keys one
  C{m.signing_key_update}, sent to every server sharing a room with the user.

Inbound (C{TransactionHandler.edu_handlers}): every EDU is about a user
of the origin, else ignored ("only a server speaks for its users").

- C{m.direct_to_device}: delivered to our users' devices
  (C{ToDeviceHandler.receive_remote}: C{*} expands, once per message ID);
- C{m.device_list_update}: for users sharing a room with one of ours, the
  cached device list (C{FederationDeviceStore.remote_user}) is updated when
  every C{prev_id} was seen; otherwise (a gap, or nothing cached) it is
  replaced by C{GET /_matrix/federation/v1/user/devices/{userId}} ("the
  receiving server must query ... to resync"). Either way the user is
  marked changed, so our users see them in C{device_lists.changed};
- C{m.signing_key_update}: the cached master and self-signing keys.

Our clients' C{/keys/query} and C{/keys/claim} for remote users come here
(L{FederationE2EE.query}, L{FederationE2EE.claim}): queries for users whose
list is cached and who share a room with one of ours are answered from the
cache; the rest are asked of their server with the client's timeout.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable
from urllib.parse import quote

from conduit_tw.federation.edu import (
    DEVICE_LIST_UPDATE, DIRECT_TO_DEVICE, SIGNING_KEY_UPDATE, server_of,
)
from conduit_tw.handlers.e2e_keys import signed_by
from conduit_tw.logging import get_logger
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.handlers.device_lists import DeviceListTracker
    from conduit_tw.handlers.e2e_keys import E2EKeysHandler
    from conduit_tw.handlers.to_device import ToDeviceHandler
    from conduit_tw.storage.stores.federation_devices import FederationDeviceStore

log = get_logger("conduit_tw.federation.e2ee")

JsonDict = dict[str, Any]
#: How many recent stream IDs of a remote user are remembered for C{prev_id} checks.
SEEN_IDS = 50
#: Cross-signing usages other servers see, with their EDU / response fields.
SIGNING_FIELDS = (("master_keys", "master_key"), ("self_signing_keys", "self_signing_key"))


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _user_devices_path(user_id: str) -> str:
    return "/_matrix/federation/v1/user/devices/" + quote(user_id, safe="")


def _valid_device_keys(user_id: str, device_id: Any, keys: Any) -> bool:
    """Device keys that name the user and device and are signed by the device's ed25519 key."""
    if not isinstance(device_id, str) or not isinstance(keys, dict):
        return False
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return False
    public = (keys.get("keys") or {}).get(f"ed25519:{device_id}") if isinstance(keys.get("keys"), dict) else None
    return isinstance(public, str) and signed_by(keys, user_id, f"ed25519:{device_id}", public)


def _valid_signing_key(user_id: str, key: Any, usage: str) -> bool:
    return (
        isinstance(key, dict) and key.get("user_id") == user_id
        and isinstance(key.get("usage"), list) and usage in key["usage"]
        and isinstance(key.get("keys"), dict) and len(key["keys"]) == 1
    )


class FederationE2EE:
    """See the module docstring."""

    def __init__(
        self,
        server_name: str,
        store: "FederationDeviceStore",
        keys: "E2EKeysHandler",
        to_device: "ToDeviceHandler",
        device_lists: "DeviceListTracker",
        send_edu: Callable[..., Awaitable[None]],
        client: Callable[[], Any],
        joined_rooms: Callable[[str], Awaitable[Iterable[str]]],
        members: Callable[[str], Awaitable[list[str]]],
        is_local: Callable[[str], bool],
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.keys = keys
        self.to_device = to_device
        self.device_lists = device_lists
        #: C{FederationSender.send_edu}.
        self.send_edu = send_edu
        #: Returns the federation client (looked up at each use).
        self.client = client
        self.joined_rooms = joined_rooms
        self.members = members
        self.is_local = is_local
        #: C{EventStore.joined_at}: a state's joined members, inside a batch
        #: (set by the HomeServer; None: only joining remote users count).
        self.joined_at: Callable[[int, Any], Awaitable[list[str]]] | None = None
        self._local_lock = Linearizer("federation_e2ee_local")
        self._remote_lock = Linearizer("federation_e2ee_remote")

    def register(self, edu_handlers: dict[str, Any]) -> None:
        """Fill C{TransactionHandler.edu_handlers} with the three E2EE EDUs."""
        edu_handlers[DIRECT_TO_DEVICE] = self.on_direct_to_device
        edu_handlers[DEVICE_LIST_UPDATE] = self.on_device_list_update
        edu_handlers[SIGNING_KEY_UPDATE] = self.on_signing_key_update

    # -- who shares rooms

    async def servers_sharing(self, user_id: str) -> set[str]:
        """The other servers with joined members in a room the user is joined to."""
        servers: set[str] = set()
        for room_id in await self.joined_rooms(user_id):
            servers.update(server_of(m) for m in await self.members(room_id))
        servers.discard(self.server_name)
        return servers

    async def shared_with_us(self, user_id: str) -> bool:
        """Whether a remote user is joined to a room one of our users is joined to."""
        for room_id in await self.joined_rooms(user_id):
            if any(self.is_local(m) for m in await self.members(room_id)):
                return True
        return False

    # -- outgoing

    async def send_to_device(
        self, destination: str, sender: str, event_type: str, message_id: str,
        messages: dict[str, dict[str, Any]],
    ) -> None:
        """C{ToDeviceHandler.remote_senders}: one persisted C{m.direct_to_device} EDU."""
        await self.send_edu([destination], DIRECT_TO_DEVICE, {
            "sender": sender, "type": event_type, "message_id": message_id, "messages": messages,
        })

    async def local_keys_changed(self, user_id: str) -> None:
        """
        A local user's devices or keys changed: announce the difference
        with what other servers were last told (see the module docstring).
        """
        if not self.is_local(user_id):
            return
        async with self._local_lock.queue(user_id):
            record = await self.store.local_stream(user_id)
            devices = {d["device_id"]: d for d in await self.keys.devices_for_server(user_id)}
            digests = {device_id: _digest(d) for device_id, d in devices.items()}
            signing = await self.keys.cross_signing_for_server(user_id)
            signing_digest = _digest(signing) if signing else ""
            announced = record["devices"]
            edus = []
            stream_id = record["stream_id"]
            for device_id in sorted(set(announced) | set(digests)):
                if announced.get(device_id) == digests.get(device_id):
                    continue
                prev = [stream_id] if stream_id else []
                stream_id += 1
                content: JsonDict = {
                    "user_id": user_id, "device_id": device_id, "stream_id": stream_id,
                    "prev_id": prev, "deleted": device_id not in devices,
                }
                if device_id in devices:
                    content["keys"] = devices[device_id]["keys"]
                    if "device_display_name" in devices[device_id]:
                        content["device_display_name"] = devices[device_id]["device_display_name"]
                edus.append((DEVICE_LIST_UPDATE, content))
            if signing_digest != record["signing"] and signing:
                content = {"user_id": user_id}
                for field, edu_field in SIGNING_FIELDS:
                    if field in signing:
                        content[edu_field] = signing[field]
                edus.append((SIGNING_KEY_UPDATE, content))
            if not edus:
                return
            await self.store.put_local_stream(
                user_id, {"stream_id": stream_id, "devices": digests, "signing": signing_digest}
            )
            destinations = await self.servers_sharing(user_id)
            for edu_type, content in edus:
                await self.send_edu(destinations, edu_type, content)

    async def local_stream_id(self, user_id: str) -> int:
        """The C{stream_id} of the last device list update sent for a local user."""
        return (await self.store.local_stream(user_id))["stream_id"]

    # -- inbound EDUs

    def _speaks_for(self, origin: str, user_id: Any) -> bool:
        if isinstance(user_id, str) and user_id.startswith("@") and server_of(user_id) == origin:
            return True
        log.info("Ignored an E2EE EDU from {origin} about {user!r}", origin=origin, user=user_id)
        return False

    async def on_direct_to_device(self, origin: str, content: JsonDict) -> None:
        """C{m.direct_to_device}: to our users' devices, once per C{message_id}."""
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if not isinstance(event_type, str) or not isinstance(message_id, str) or not message_id:
            return
        if not isinstance(messages, dict) or not self._speaks_for(origin, sender):
            return
        await self.to_device.receive_remote(sender, event_type, message_id, messages)

    async def on_device_list_update(self, origin: str, content: JsonDict) -> None:
        """C{m.device_list_update}: apply, or resync on a gap (see the module docstring)."""
        user_id, device_id, stream_id = (
            content.get("user_id"), content.get("device_id"), content.get("stream_id"),
        )
        prev_ids = content.get("prev_id", [])
        if not self._speaks_for(origin, user_id):
            return
        if not isinstance(device_id, str) or isinstance(stream_id, bool) or not isinstance(stream_id, int):
            return
        if not isinstance(prev_ids, list) or not all(isinstance(p, int) for p in prev_ids):
            return
        if not await self.shared_with_us(user_id):
            return  # we do not track users we share no room with
        async with self._remote_lock.queue(user_id):
            record = await self.store.remote_user(user_id)
            if record is not None and stream_id in record["seen"]:
                return  # already applied
            if record is None or not prev_ids or not set(prev_ids) <= set(record["seen"]):
                changed = await self._resync(user_id)
            else:
                changed = self._apply(record, user_id, device_id, stream_id, content)
                if changed:
                    await self.store.put_remote_user(user_id, record)
        if changed:
            await self.device_lists.key_changed(user_id)

    @staticmethod
    def _apply(record: JsonDict, user_id: str, device_id: str, stream_id: int, content: JsonDict) -> bool:
        record["seen"] = (record["seen"] + [stream_id])[-SEEN_IDS:]
        record["stream_id"] = max(record["stream_id"], stream_id)
        if content.get("deleted") is True:
            record["devices"].pop(device_id, None)
            return True
        keys = content.get("keys")
        entry: JsonDict = {}
        old = record["devices"].get(device_id, {})
        if keys is not None:
            if not _valid_device_keys(user_id, device_id, keys):
                log.info("Dropped invalid device keys of {user}/{device}", user=user_id, device=device_id)
                return True
            entry["keys"] = keys
        elif "keys" in old:
            entry["keys"] = old["keys"]
        name = content.get("device_display_name")
        if isinstance(name, str):
            entry["device_display_name"] = name
        record["devices"][device_id] = entry
        return True

    async def _resync(self, user_id: str) -> bool:
        """
        Replace the cached list by the origin's C{GET /user/devices/{userId}}
        (user_devices.yaml); False when it cannot be fetched (the next
        update tries again).
        """
        server = server_of(user_id)
        try:
            answer = await self.client().get_json(server, _user_devices_path(user_id))
        except Exception as e:
            log.info("Device list resync of {user} failed: {e}", user=user_id, e=str(e)[:200])
            return False
        record = self._record_from(user_id, answer)
        if record is None:
            log.info("Ignored a malformed device list of {user}", user=user_id)
            return False
        await self.store.put_remote_user(user_id, record)
        return True

    @staticmethod
    def _record_from(user_id: str, answer: Any) -> JsonDict | None:
        if not isinstance(answer, dict) or answer.get("user_id") != user_id:
            return None
        stream_id, devices = answer.get("stream_id"), answer.get("devices")
        if isinstance(stream_id, bool) or not isinstance(stream_id, int) or not isinstance(devices, list):
            return None
        record: JsonDict = {"stream_id": stream_id, "seen": [stream_id], "devices": {}}
        for device in devices:
            if not isinstance(device, dict):
                continue
            device_id, keys = device.get("device_id"), device.get("keys")
            if not _valid_device_keys(user_id, device_id, keys):
                continue
            entry: JsonDict = {"keys": keys}
            if isinstance(device.get("device_display_name"), str):
                entry["device_display_name"] = device["device_display_name"]
            record["devices"][device_id] = entry
        for field, usage in (("master_key", "master"), ("self_signing_key", "self_signing")):
            if _valid_signing_key(user_id, answer.get(field), usage):
                record[field] = answer[field]
        return record

    async def on_signing_key_update(self, origin: str, content: JsonDict) -> None:
        """C{m.signing_key_update}: replace the cached master / self-signing keys."""
        user_id = content.get("user_id")
        if not self._speaks_for(origin, user_id) or not await self.shared_with_us(user_id):
            return
        async with self._remote_lock.queue(user_id):
            record = await self.store.remote_user(user_id)
            if record is None:
                changed = await self._resync(user_id)
            else:
                changed = False
                for field, usage in (("master_key", "master"), ("self_signing_key", "self_signing")):
                    if _valid_signing_key(user_id, content.get(field), usage):
                        record[field] = content[field]
                        changed = True
                if changed:
                    await self.store.put_remote_user(user_id, record)
        if changed:
            await self.device_lists.key_changed(user_id)

    async def event_persisted(self, txn: Any, event: Any) -> None:
        """
        C{EventStore.persist_hooks}: a remote user's join drops their cached
        device list in the event's batch, and so does a local user's join
        to a room of other servers for every remote member: updates sent
        while we shared no room with them never reached us, so the cache
        cannot be trusted until the next update resyncs it.
        """
        if event.type != "m.room.member" or not isinstance(event.state_key, str):
            return
        if event.membership() != "join":
            return
        if not self.is_local(event.state_key):
            self.store.forget_remote_user(txn, event.state_key)
        elif self.joined_at is not None and not any(
            self.is_local(m) for m in await self.members(event.room_id_or_create())
        ):
            # Our server's first member (a remote join): the room's remote
            # members came with its state, and their updates while we
            # shared no room with them never reached us either.
            for member in await self.joined_at(event.state_after, txn):
                if not self.is_local(member):
                    self.store.forget_remote_user(txn, member)

    # -- our clients' queries about remote users

    async def query(self, server: str, users: dict[str, list[str]], timeout_ms: int) -> JsonDict:
        """C{E2EKeysHandler.remote_query}: from the cache where it is current, else the server."""
        out: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        ask: dict[str, list[str]] = {}
        for user_id, device_ids in users.items():
            record = await self.store.remote_user(user_id)
            if record is None or not await self.shared_with_us(user_id):
                ask[user_id] = device_ids
                continue
            out["device_keys"][user_id] = {
                device_id: self._client_keys(entry)
                for device_id, entry in record["devices"].items()
                if (not device_ids or device_id in device_ids) and "keys" in entry
            }
            for field, edu_field in SIGNING_FIELDS:
                if edu_field in record:
                    out[field][user_id] = record[edu_field]
        if ask:
            answer = await self.client().post_json(
                server, "/_matrix/federation/v1/user/keys/query", {"device_keys": ask},
                timeout=timeout_ms / 1000,
            )
            if not isinstance(answer, dict):
                raise ValueError(f"{server} answered keys/query with a non-object")
            for field in out:
                value = answer.get(field)
                if isinstance(value, dict):
                    out[field].update((u, v) for u, v in value.items() if u in ask)
        return out

    @staticmethod
    def _client_keys(entry: JsonDict) -> JsonDict:
        keys = dict(entry["keys"])
        name = entry.get("device_display_name")
        keys["unsigned"] = {"device_display_name": name} if name is not None else {}
        return keys

    async def claim(self, server: str, users: dict[str, dict[str, str]], timeout_ms: int) -> JsonDict:
        """C{E2EKeysHandler.remote_claim}: C{POST /user/keys/claim} on the users' server."""
        answer = await self.client().post_json(
            server, "/_matrix/federation/v1/user/keys/claim", {"one_time_keys": users},
            timeout=timeout_ms / 1000,
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("one_time_keys"), dict):
            raise ValueError(f"{server} answered keys/claim without one_time_keys")
        return {"one_time_keys": {u: v for u, v in answer["one_time_keys"].items() if u in users}}

