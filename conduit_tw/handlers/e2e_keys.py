"""
End-to-end encryption keys (client-server-api "End-to-End Encryption",
"Key management API" and "Cross-signing"; keys.yaml, cross_signing.yaml):
C{/keys/upload}, C{/keys/query}, C{/keys/claim}, C{/keys/changes},
C{/keys/device_signing/upload} and C{/keys/signatures/upload}.

Every signature is checked with L{conduit_tw.events.signing.verify_json}
(appendices "Checking for a Signature"), the one verification path of
the project:

- device keys must be signed by the device's own ed25519 key and name the
  uploading user and device; once a device has keys, a different set for
  it is refused (a device's identity never changes: a client with new
  keys logs in a new device); signed one-time and fallback keys must be
  signed by that key too;
- self-signing and user-signing keys must be signed by the user's master
  key (the one in the same request, else the stored one);
- C{/keys/signatures/upload} accepts a user's self-signing key on their
  own device keys, their devices' keys on their own master key, and
  their user-signing key on another user's master key. Signatures by
  other users are shown only to their signer ("Cross-signing": only
  Alice sees her user-signing key's signature of Bob's master key).

Remote users: their entries in C{/keys/query} and C{/keys/claim} are
answered through L{E2EKeysHandler.remote_query} and
L{E2EKeysHandler.remote_claim} (set by the federation work; federation/
e2ee.py), one call per server, all servers at once; without them, or
when a server fails, they are reported in C{failures} by server name.
Other servers ask about our users through L{E2EKeysHandler.query_for_server},
L{E2EKeysHandler.claim_for_server} and L{E2EKeysHandler.devices_for_server}
(server-server-api "End-to-End Encryption", "Device Management").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from nacl.signing import VerifyKey
from twisted.internet.defer import Deferred, gatherResults

from conduit_tw.errors import Codes, MatrixError
from conduit_tw.events.hashes import decode_base64
from conduit_tw.events.signing import SignatureError, verify_json
from conduit_tw.handlers.sync_token import parse_sync_token
from conduit_tw.handlers.uia import PASSWORD
from conduit_tw.storage.stores.devices import DeviceStore
from conduit_tw.storage.stores.e2e_keys import E2EKeyStore
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.handlers.device_lists import DeviceListTracker
    from conduit_tw.handlers.uia import UIA

JsonDict = dict[str, Any]

#: Request field -> cross-signing key usage (cross_signing.yaml).
CROSS_SIGNING_FIELDS = (
    ("master_key", "master"),
    ("self_signing_key", "self_signing"),
    ("user_signing_key", "user_signing"),
)
#: Cross-signing usage -> the /keys/query response field.
QUERY_FIELDS = {
    "master": "master_keys", "self_signing": "self_signing_keys",
    "user_signing": "user_signing_keys",
}
#: The one-time key algorithm every count includes (0 when none are left),
#: as clients read it without checking for its presence.
SIGNED_CURVE25519 = "signed_curve25519"

#: C{(server name, {user: [device IDs]}, timeout ms)} -> the remote answer.
RemoteQuery = Callable[[str, dict[str, list[str]], int], Awaitable[JsonDict]]
#: C{(server name, {user: {device: algorithm}}, timeout ms)} -> the remote answer.
RemoteClaim = Callable[[str, dict[str, dict[str, str]], int], Awaitable[JsonDict]]

_UNREACHABLE = {"errcode": Codes.UNKNOWN, "error": "Federation is not available on this server yet"}


class _Refused(Exception):
    """One entry of C{/keys/signatures/upload} failed (reported in C{failures})."""

    def __init__(self, errcode: str, msg: str) -> None:
        super().__init__(msg)
        self.body = {"errcode": errcode, "error": msg}


def invalid_signature(msg: str) -> MatrixError:
    """400 M_INVALID_SIGNATURE."""
    return MatrixError(400, Codes.INVALID_SIGNATURE, msg)


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


def signed_by(obj: JsonDict, signer: str, key_id: str, public_key: str) -> bool:
    """Whether C{obj} carries a valid signature of C{signer} with C{key_id} (unpadded base64 key)."""
    raw = decode_base64(public_key) if isinstance(public_key, str) else None
    if raw is None or len(raw) != 32:
        return False
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict) or not isinstance(sigs.get(signer), dict) or key_id not in sigs[signer]:
        return False
    try:
        verify_json(obj, signer, {key_id: VerifyKey(raw)})
    except SignatureError:
        return False
    return True


def _unsigned_part(obj: JsonDict) -> JsonDict:
    """The object without C{signatures} and C{unsigned} (what a signature covers)."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _merge_signatures(base: JsonDict, extra: JsonDict) -> JsonDict:
    out = dict(base)
    sigs = {u: dict(s) for u, s in (base.get("signatures") or {}).items()}
    for user, s in (extra.get("signatures") or {}).items():
        if isinstance(s, dict):
            sigs.setdefault(user, {}).update(s)
    out["signatures"] = sigs
    return out


def check_user_id(user_id: Any) -> str:
    """A user ID key of a request map (400 M_INVALID_PARAM otherwise)."""
    if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
        raise _bad(f"Invalid user ID {str(user_id)[:64]!r}")
    return user_id


def _split_key_id(full: Any, what: str) -> tuple[str, str]:
    alg, sep, key_id = full.partition(":") if isinstance(full, str) else ("", "", "")
    if not sep or not alg or not key_id:
        raise _bad(f"{what} key IDs must be <algorithm>:<key_id>, not {str(full)[:64]!r}")
    return alg, key_id


def _cross_signing_public_key(key: JsonDict) -> tuple[str, str]:
    """The C{(key ID, public key)} of a stored cross-signing key."""
    ((key_id, public),) = key["keys"].items()
    return key_id, public


class E2EKeysHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: E2EKeyStore,
        devices: DeviceStore,
        globals_store: GlobalsStore,
        device_lists: "DeviceListTracker",
        uia: "UIA",
        is_local: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.devices = devices
        self.globals = globals_store
        self.device_lists = device_lists
        self.uia = uia
        self.is_local = is_local
        #: Set by the federation work: asks a remote server (C{/keys/query}).
        self.remote_query: RemoteQuery | None = None
        #: Set by the federation work: claims on a remote server (C{/keys/claim}).
        self.remote_claim: RemoteClaim | None = None
        #: Whether other servers see device display names (C{allow_device_name_federation}).
        self.federate_device_names = False
        #: Serialises key changes and claims per user (each key claimed once).
        self._lock = Linearizer("e2e_keys")

    # ------------------------------------------------------------------
    # /keys/upload

    async def upload(
        self,
        requester: "Requester",
        device_keys: JsonDict | None,
        one_time: JsonDict,
        fallback: JsonDict,
    ) -> JsonDict:
        """C{POST /keys/upload}: store keys, return the one-time key counts."""
        user_id, device_id = requester.user_id, requester.device_id
        if device_id is None:
            raise _bad("This access token has no device")
        announce = False
        async with self._lock.queue(user_id):
            stored = await self.store.get_device_keys(user_id, device_id)
            new_keys = None
            if device_keys is not None:
                self._check_device_keys(device_keys, user_id, device_id)
                if stored is not None and _unsigned_part(stored) != _unsigned_part(device_keys):
                    raise _bad(
                        "This device already has different device keys; "
                        "new identity keys need a new device (log in again)"
                    )
                merged = _merge_signatures(stored, device_keys) if stored else device_keys
                if merged != stored:
                    new_keys, announce = merged, True
            current = new_keys or stored
            ed25519 = current["keys"].get(f"ed25519:{device_id}") if current else None
            otks = []
            for full_id, key in one_time.items():
                alg, key_id = _split_key_id(full_id, "one_time_keys")
                self._check_key_object(key, user_id, device_id, ed25519, "one_time_keys", full_id)
                old = await self.store.get_one_time_key(user_id, device_id, alg, key_id)
                if old is None:
                    otks.append((alg, key_id, key))
                elif old != key:
                    raise _bad(f"One-time key {full_id} was already uploaded with another value")
            fallbacks: dict[str, tuple[str, Any, bool]] = {}
            old_fallbacks = await self.store.fallback_keys(user_id, device_id) if fallback else {}
            for full_id, key in fallback.items():
                alg, key_id = _split_key_id(full_id, "fallback_keys")
                if alg in fallbacks:
                    raise _bad(f"At most one fallback key per algorithm ({alg})")
                self._check_key_object(key, user_id, device_id, ed25519, "fallback_keys", full_id)
                old = old_fallbacks.get(alg)
                # Re-uploading the same key keeps its "used" mark.
                used = bool(old and old["id"] == key_id and old["key"] == key and old["used"])
                fallbacks[alg] = (key_id, key, used)
            async with self.globals.stream_position(needed=bool(otks)) as position:
                await self.store.put_keys(user_id, device_id, new_keys, otks, fallbacks, position)
        if announce:
            await self.device_lists.key_changed(user_id)
        return {"one_time_key_counts": await self.one_time_key_counts(user_id, device_id)}

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """Algorithm -> unclaimed one-time keys (C{signed_curve25519} always present)."""
        counts = {SIGNED_CURVE25519: 0}
        counts.update(await self.store.one_time_key_counts(user_id, device_id))
        return counts

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        """The algorithms of the device's fallback keys not yet given out by a claim."""
        keys = await self.store.fallback_keys(user_id, device_id)
        return sorted(alg for alg, entry in keys.items() if not entry["used"])

    @staticmethod
    def _check_device_keys(keys: JsonDict, user_id: str, device_id: str) -> None:
        if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
            raise _bad("device_keys must name the uploading user and device")
        algorithms = keys.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise MatrixError(400, Codes.BAD_JSON, "device_keys.algorithms must be a list of strings")
        key_map = keys.get("keys")
        if not isinstance(key_map, dict) or not all(isinstance(v, str) for v in key_map.values()):
            raise MatrixError(400, Codes.BAD_JSON, "device_keys.keys must map key IDs to strings")
        ed25519 = key_map.get(f"ed25519:{device_id}")
        if ed25519 is None:
            raise _bad(f"device_keys.keys must hold the device's key ed25519:{device_id}")
        if not signed_by(keys, user_id, f"ed25519:{device_id}", ed25519):
            raise invalid_signature("device_keys are not signed by the device's ed25519 key")

    @staticmethod
    def _check_key_object(
        key: Any, user_id: str, device_id: str, ed25519: str | None, where: str, full_id: str
    ) -> None:
        """
        A one-time or fallback key: a string (e.g. C{curve25519}), or for
        C{signed_*} algorithms a signed object with a string C{key}
        ("Key algorithms").
        """
        if isinstance(key, str) and not full_id.startswith("signed_"):
            return
        if not isinstance(key, dict) or not isinstance(key.get("key"), str):
            raise MatrixError(400, Codes.BAD_JSON, f"{where}.{full_id} must be a string or a key object")
        if ed25519 is None:
            raise _bad("Upload the device keys before (or with) signed one-time keys")
        if not signed_by(key, user_id, f"ed25519:{device_id}", ed25519):
            raise invalid_signature(f"{where}.{full_id} is not signed by the device's ed25519 key")

    # ------------------------------------------------------------------
    # /keys/query

    async def query(self, requester: "Requester", wanted: JsonDict, timeout: int) -> JsonDict:
        """C{POST /keys/query}: C{wanted} is the C{device_keys} map."""
        viewer = requester.user_id
        out: JsonDict = {"device_keys": {}, "failures": {}}
        for field in QUERY_FIELDS.values():
            out[field] = {}
        remote: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in wanted.items():
            check_user_id(user_id)
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise MatrixError(400, Codes.BAD_JSON, "device_keys values must be lists of device IDs")
            if not self.is_local(user_id):
                remote.setdefault(user_id.partition(":")[2], {})[user_id] = device_ids
                continue
            out["device_keys"][user_id] = await self._local_device_keys(viewer, user_id, device_ids)
            cross = await self.store.cross_signing_keys(user_id)
            for usage, key in cross.items():
                if usage == "user_signing" and user_id != viewer:
                    continue
                key_id, public = _cross_signing_public_key(key)
                out[QUERY_FIELDS[usage]][user_id] = await self._visible(key, user_id, public, viewer)
        await self._ask_remotes(out, remote, self.remote_query, timeout)
        return out

    async def _local_device_keys(
        self, viewer: str, user_id: str, device_ids: list[str], with_names: bool = True
    ) -> dict[str, JsonDict]:
        all_keys = await self.store.all_device_keys(user_id)
        names = {
            d.device_id: d.display_name if with_names else None
            for d in await self.devices.list(user_id)
        }
        result = {}
        for device_id in device_ids or list(all_keys):
            keys = all_keys.get(device_id)
            if keys is None or device_id not in names:
                continue
            keys = await self._visible(keys, user_id, device_id, viewer)
            keys["unsigned"] = (
                {"device_display_name": names[device_id]} if names[device_id] is not None else {}
            )
            result[device_id] = keys
        return result

    async def _visible(self, key: JsonDict, owner: str, key_name: str, viewer: str) -> JsonDict:
        """C{key} with the uploaded signatures C{viewer} may see (the owner's and the viewer's)."""
        extra = {
            signer: sigs
            for signer, sigs in (await self.store.signatures_of(owner, key_name)).items()
            if signer in (owner, viewer)
        }
        return _merge_signatures(key, {"signatures": extra}) if extra else dict(key)

    async def _ask_remotes(self, out: JsonDict, remote: dict[str, Any], ask: Any, timeout: int) -> None:
        """Ask every server at once; each answer is merged into C{out} as it comes."""
        if remote:
            await gatherResults([
                Deferred.fromCoroutine(self._ask_remote(out, server, ask, request, timeout))
                for server, request in remote.items()
            ])

    async def _ask_remote(
        self, out: JsonDict, server: str, ask: Any, request: Any, timeout: int
    ) -> None:
        if ask is None:
            out["failures"][server] = dict(_UNREACHABLE)
            return
        try:
            answer = await ask(server, request, timeout)
        except Exception as e:  # a remote failure is reported, never a 500
            out["failures"][server] = {"errcode": Codes.UNKNOWN, "error": str(e)[:200]}
            return
        for key, value in answer.items():
            if isinstance(value, dict) and key in out and key != "failures":
                # Only the server's own users (it speaks for no one else).
                out[key].update(
                    (u, v) for u, v in value.items()
                    if isinstance(u, str) and u.partition(":")[2] == server
                )

    async def query_for_server(self, wanted: Any) -> JsonDict:
        """
        C{POST /_matrix/federation/v1/user/keys/query}: our users' device
        keys (display names per C{allow_device_name_federation}), master and
        self-signing keys with their owners' signatures; other users are
        left out (user_keys.yaml).
        """
        out: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        for user_id, device_ids in wanted.items():
            if not isinstance(user_id, str) or not self.is_local(user_id):
                continue
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise MatrixError(400, Codes.BAD_JSON, "device_keys values must be lists of device IDs")
            out["device_keys"][user_id] = await self._local_device_keys(
                user_id, user_id, device_ids, self.federate_device_names
            )
            for field, key in (await self.cross_signing_for_server(user_id)).items():
                out[field][user_id] = key
        return out

    async def cross_signing_for_server(self, user_id: str) -> JsonDict:
        """C{{"master_keys"|"self_signing_keys": key}} of a local user, as other servers see them."""
        out = {}
        for usage, key in (await self.store.cross_signing_keys(user_id)).items():
            if usage != "user_signing":
                public = _cross_signing_public_key(key)[1]
                out[QUERY_FIELDS[usage]] = await self._visible(key, user_id, public, user_id)
        return out

    async def devices_for_server(self, user_id: str) -> list[JsonDict]:
        """
        C{GET /_matrix/federation/v1/user/devices/{userId}}'s C{devices}:
        every device of a local user that has keys (user_devices.yaml).
        """
        keys = await self._local_device_keys(user_id, user_id, [], self.federate_device_names)
        out = []
        for device_id, device_keys in sorted(keys.items()):
            entry = {"device_id": device_id, "keys": dict(device_keys)}
            name = entry["keys"].pop("unsigned", {}).get("device_display_name")
            if name is not None:
                entry["device_display_name"] = name
            out.append(entry)
        return out

    # ------------------------------------------------------------------
    # /keys/claim

    async def claim(self, requester: "Requester", wanted: JsonDict, timeout: int) -> JsonDict:
        """
        C{POST /keys/claim} (C{wanted}: the C{one_time_keys} map): one key
        per device, each one-time key given out once.
        """
        out: JsonDict = {"one_time_keys": {}, "failures": {}}
        remote: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            check_user_id(user_id)
            if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
                raise MatrixError(400, Codes.BAD_JSON, "one_time_keys values must map device IDs to algorithms")
            if not self.is_local(user_id):
                remote.setdefault(user_id.partition(":")[2], {})[user_id] = devices
                continue
            claimed = await self._claim_local(user_id, devices)
            if claimed:
                out["one_time_keys"][user_id] = claimed
        await self._ask_remotes(out, remote, self.remote_claim, timeout)
        return out

    async def claim_for_server(self, wanted: Any) -> JsonDict:
        """
        C{POST /_matrix/federation/v1/user/keys/claim}: claims on our
        users' devices, atomic as the client endpoint's; others are left out.
        """
        out: JsonDict = {"one_time_keys": {}}
        for user_id, devices in wanted.items():
            if not isinstance(user_id, str) or not self.is_local(user_id):
                continue
            if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
                raise MatrixError(400, Codes.BAD_JSON, "one_time_keys values must map device IDs to algorithms")
            claimed = await self._claim_local(user_id, devices)
            if claimed:
                out["one_time_keys"][user_id] = claimed
        return out

    async def _claim_local(self, user_id: str, devices: dict[str, str]) -> dict[str, JsonDict]:
        claimed: dict[str, JsonDict] = {}
        async with self._lock.queue(user_id):
            for device_id, algorithm in devices.items():
                found = await self.store.claim(user_id, device_id, algorithm)
                if found is not None:
                    claimed[device_id] = {found[0]: found[1]}
        return claimed

    # ------------------------------------------------------------------
    # /keys/changes

    async def changes(self, requester: "Requester", from_token: str, to_token: str) -> JsonDict:
        """C{GET /keys/changes}: whose device lists changed between two sync tokens."""
        since = parse_sync_token(from_token).position
        to = parse_sync_token(to_token).position
        changed, left = await self.device_lists.changes(requester.user_id, since, to)
        return {"changed": sorted(changed), "left": sorted(left)}

    # ------------------------------------------------------------------
    # Cross-signing

    async def upload_signing_keys(
        self, requester: "Requester", body: JsonDict, keys: dict[str, JsonDict]
    ) -> JsonDict:
        """
        C{POST /keys/device_signing/upload} of C{keys} (usage -> key; C{body}
        for UIA). UIA unless the user has no master key yet or the request
        holds only the keys already stored (cross_signing.yaml, v1.11), or
        the caller is an appservice (v1.17).
        """
        user_id = requester.user_id
        for field, usage in CROSS_SIGNING_FIELDS:
            if usage in keys:
                self._check_cross_signing_key(keys[usage], user_id, usage, field)
        existing = await self.store.cross_signing_keys(user_id)
        new = {usage: key for usage, key in keys.items() if existing.get(usage) != key}
        if "master" in existing and new and requester.appservice_id is None:
            await self.uia.authenticate(
                body, "keys/device_signing/upload", [[PASSWORD]], user_id=user_id,
                operation=tuple(sorted((u, _cross_signing_public_key(k)[1]) for u, k in new.items())),
            )
        if not new:
            return {}
        master = keys.get("master") or existing.get("master")
        if master is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "No master signing key is available")
        master_id, master_public = _cross_signing_public_key(master)
        for usage in ("self_signing", "user_signing"):
            if usage in keys and not signed_by(keys[usage], user_id, master_id, master_public):
                raise invalid_signature(f"The {usage} key is not signed by the master key")
        for usage, key in new.items():
            if await self.devices.exists(user_id, _cross_signing_public_key(key)[1]):
                raise MatrixError(403, Codes.FORBIDDEN, "Key ID in use")
        async with self._lock.queue(user_id):
            await self.store.put_cross_signing_keys(user_id, new)
        await self.device_lists.key_changed(user_id)
        return {}

    @staticmethod
    def _check_cross_signing_key(key: JsonDict, user_id: str, usage: str, field: str) -> None:
        if key.get("user_id") != user_id:
            raise _bad(f"{field}.user_id must be the uploading user")
        usages = key.get("usage")
        if not isinstance(usages, list) or usage not in usages:
            raise _bad(f"{field}.usage must include {usage!r}")
        key_map = key.get("keys")
        if not isinstance(key_map, dict) or len(key_map) != 1:
            raise _bad(f"{field}.keys must hold exactly one key")
        ((key_id, public),) = key_map.items()
        raw = decode_base64(public) if isinstance(public, str) else None
        if key_id != f"ed25519:{public}" or raw is None or len(raw) != 32:
            raise _bad(f"{field}.keys must be ed25519:<unpadded base64 public key> -> that key")
        if "signatures" in key and not isinstance(key["signatures"], dict):
            raise MatrixError(400, Codes.BAD_JSON, f"{field}.signatures must be an object")

    async def upload_signatures(self, requester: "Requester", body: JsonDict) -> JsonDict:
        """C{POST /keys/signatures/upload}: per-key failures in C{failures}."""
        user_id = requester.user_id
        for target, objects in body.items():
            check_user_id(target)
            if not isinstance(objects, dict) or not all(isinstance(o, dict) for o in objects.values()):
                raise MatrixError(400, Codes.BAD_JSON, "Each user must map key IDs to signed objects")
        failures: JsonDict = {}
        entries: list[tuple[str, str, str, dict[str, str]]] = []
        async with self._lock.queue(user_id):
            own = await self.store.cross_signing_keys(user_id)
            for target, objects in body.items():
                for key_name, obj in objects.items():
                    try:
                        sigs = await self._accepted_signatures(user_id, own, target, key_name, obj)
                    except _Refused as e:
                        failures.setdefault(target, {})[key_name] = e.body
                        continue
                    entries.append((target, key_name, user_id, sigs))
            await self.store.add_signatures(entries)
        targets = {target for target, _, _, _ in entries}
        if user_id in targets:
            await self.device_lists.key_changed(user_id)
        others = targets - {user_id}
        if others:
            await self.device_lists.signatures_changed(user_id, others)
        return {"failures": failures}

    async def _accepted_signatures(
        self, user_id: str, own: dict[str, JsonDict], target: str, key_name: str, obj: JsonDict
    ) -> dict[str, str]:
        """
        The requester's signatures on one object that verify with a key
        allowed to sign it (see the module docstring).

        @raise _Refused: the reason, for C{failures}.
        """
        new = (obj.get("signatures") or {}).get(user_id) if isinstance(obj.get("signatures"), dict) else None
        if not isinstance(new, dict) or not new:
            raise _Refused(Codes.INVALID_PARAM, "No signature by the uploading user")
        # The stored object and the keys allowed to sign it: {key ID: public key}.
        signers: dict[str, str] = {}
        if not self.is_local(target):
            raise _Refused(Codes.UNKNOWN, "Signing keys of remote users is not available yet")
        if target == user_id:
            master = own.get("master")
            if master is not None and _cross_signing_public_key(master)[1] == key_name:
                stored = master
                for device_id, dkeys in (await self.store.all_device_keys(user_id)).items():
                    public = dkeys.get("keys", {}).get(f"ed25519:{device_id}")
                    if isinstance(public, str):
                        signers[f"ed25519:{device_id}"] = public
            else:
                stored = await self.store.get_device_keys(user_id, key_name)
                if stored is None:
                    raise _Refused(Codes.NOT_FOUND, "Unknown key")
                if "self_signing" in own:
                    signers.update([_cross_signing_public_key(own["self_signing"])])
        else:
            master = (await self.store.cross_signing_keys(target)).get("master")
            if master is None or _cross_signing_public_key(master)[1] != key_name:
                raise _Refused(Codes.NOT_FOUND, "Unknown key")
            stored = master
            if "user_signing" in own:
                signers.update([_cross_signing_public_key(own["user_signing"])])
        if _unsigned_part(obj) != _unsigned_part(stored):
            raise _Refused(Codes.INVALID_PARAM, "The signed object does not match the stored key")
        accepted = {}
        for key_id, signature in new.items():
            public = signers.get(key_id)
            single = dict(_unsigned_part(obj), signatures={user_id: {key_id: signature}})
            if public is not None and signed_by(single, user_id, key_id, public):
                accepted[key_id] = signature
        if not accepted:
            raise _Refused(Codes.INVALID_SIGNATURE, "Invalid signature")
        return accepted

    # ------------------------------------------------------------------
    # Hooks

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """C{DeviceHandler.on_devices_deleted}: drop their keys, announce the change."""
        had_keys = False
        async with self._lock.queue(user_id):
            for device_id in device_ids:
                had_keys = await self.store.delete_device(user_id, device_id) or had_keys
        if had_keys:
            await self.device_lists.key_changed(user_id)

    async def user_deactivated(self, user_id: str, erase: bool = False) -> None:
        """
        C{AccountHandler.on_deactivated}: a deactivated user has no identity
        left to verify (their devices and device keys are already gone).
        """
        async with self._lock.queue(user_id):
            removed = await self.store.delete_cross_signing_keys(user_id)
        if removed:
            await self.device_lists.key_changed(user_id)

    async def is_cross_signing_key(self, user_id: str, device_id: str) -> bool:
        """
        C{DeviceHandler.device_id_reserved}: device IDs must not collide
        with the user's cross-signing public keys ("Cross-signing").
        """
        keys = await self.store.cross_signing_keys(user_id)
        return any(device_id in key["keys"].values() for key in keys.values())
