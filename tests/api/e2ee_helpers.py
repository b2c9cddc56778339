"""
Helpers for the end-to-end encryption tests: devices with real ed25519
keys, signed with signedjson (an independent implementation of the
spec's signing), and shortcuts for the key endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import signedjson.key
import signedjson.sign
from signedjson.key import encode_verify_key_base64, get_verify_key

from tests.api.rooms import V3
from tests.api.sync_helpers import SyncTestCase
from tests.federation.fake_client import FakeFederationClient
from tests.server import Response


@dataclass
class Device:
    """A logged-in device with its own ed25519 key."""

    user_id: str
    device_id: str
    token: str
    signing_key: Any = None
    otk_serial: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signing_key = signedjson.key.generate_signing_key(self.device_id)

    @property
    def ed25519(self) -> str:
        return encode_verify_key_base64(get_verify_key(self.signing_key))

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return signedjson.sign.sign_json(obj, self.user_id, self.signing_key)

    def device_keys(self, curve: str = "curve25519+key") -> dict[str, Any]:
        return self.sign({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{self.device_id}": curve, f"ed25519:{self.device_id}": self.ed25519},
        })

    def one_time_keys(self, n: int, fallback: bool = False) -> dict[str, Any]:
        out = {}
        for _ in range(n):
            self.otk_serial += 1
            key: dict[str, Any] = {"key": f"otk{self.otk_serial}"}
            if fallback:
                key["fallback"] = True
            out[f"signed_curve25519:K{self.otk_serial:04d}"] = self.sign(key)
        return out


def cross_signing_key(user_id: str, usage: str) -> tuple[dict[str, Any], Any]:
    """An unsigned cross-signing key object and its signing key."""
    sk = signedjson.key.generate_signing_key("x")
    public = encode_verify_key_base64(get_verify_key(sk))
    sk.version = public  # key ID ed25519:<public key>
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}, sk


class E2EETestCase(SyncTestCase):
    """Sync and rooms helpers plus devices with keys."""

    async def _start(self) -> None:
        await super()._start()
        #: Other servers, as the federation client sees them (no answer set:
        #: every request fails as an unknown endpoint would).
        self.federation = FakeFederationClient()
        self.hs.federation_client = self.federation

    async def device(self, name: str, device_id: str | None = None) -> Device:
        """Register C{name} (or log in a new device when C{device_id} is given)."""
        if device_id is None:
            device_id = name.upper() + "1"
            body = await self.register(name, device_id=device_id)
        else:
            r = await self.login(name, device_id=device_id)
            self.assertEqual(r.code, 200, r.body)
            body = r.json
        return Device(body["user_id"], body["device_id"], body["access_token"])

    async def upload(self, device: Device, expect: int = 200, **body: Any) -> Response:
        r = await self.request("POST", V3 + "/keys/upload", body, access_token=device.token)
        self.assertEqual(r.code, expect, r.body)
        return r

    async def upload_device_keys(self, device: Device, otks: int = 0, fallback: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"device_keys": device.device_keys()}
        if otks:
            body["one_time_keys"] = device.one_time_keys(otks)
        if fallback:
            body["fallback_keys"] = device.one_time_keys(1, fallback=True)
        return (await self.upload(device, **body)).json

    async def query(self, device: Device, wanted: dict[str, list[str]], expect: int = 200) -> dict[str, Any]:
        r = await self.request("POST", V3 + "/keys/query", {"device_keys": wanted}, access_token=device.token)
        self.assertEqual(r.code, expect, r.body)
        return r.json

    async def claim(self, device: Device, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
        r = await self.request("POST", V3 + "/keys/claim", {"one_time_keys": wanted}, access_token=device.token)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def send_to_device(
        self, device: Device, messages: dict[str, Any], txn: str | None = None,
        event_type: str = "m.test", expect: int = 200,
    ) -> Response:
        txn = txn or self.next_txn()
        r = await self.request(
            "PUT", f"{V3}/sendToDevice/{event_type}/{txn}", {"messages": messages},
            access_token=device.token,
        )
        self.assertEqual(r.code, expect, r.body)
        return r
