"""
The client side of the C{m.megolm_backup.v1.curve25519-aes-sha2} backup
algorithm (client-server-api "Backup algorithm:
m.megolm_backup.v1.curve25519-aes-sha2"), for tests that store real
encrypted session keys in a backup: matrix-nio has no key backup API, and
the server only ever sees the result as opaque JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


def b64(data: bytes) -> str:
    """Unpadded base64."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes:
    """Decode unpadded base64."""
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(shared: bytes) -> tuple[bytes, bytes, bytes]:
    # Step 3: HKDF-SHA-256, 32 zero bytes of salt, empty info -> AES key, MAC key, IV.
    okm = HKDF(algorithm=hashes.SHA256(), length=80, salt=b"\0" * 32, info=b"").derive(shared)
    return okm[:32], okm[32:64], okm[64:]


def _mac(mac_key: bytes) -> bytes:
    # Step 5: the HMAC of an empty string (libolm's behaviour, kept by the spec).
    return hmac.new(mac_key, b"", hashlib.sha256).digest()[:8]


class BackupKey:
    """A backup's curve25519 key pair, as the client that creates the backup holds it."""

    def __init__(self) -> None:
        self.private = X25519PrivateKey.generate()

    @property
    def public_b64(self) -> str:
        """The C{auth_data.public_key} of the backup."""
        return b64(self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @staticmethod
    def encrypt(public_b64: str, session: dict[str, Any]) -> dict[str, str]:
        """The C{session_data} for a BackedUpSessionData, encrypted to C{public_b64}."""
        ephemeral = X25519PrivateKey.generate()
        aes_key, mac_key, iv = _derive(ephemeral.exchange(X25519PublicKey.from_public_bytes(unb64(public_b64))))
        padder = padding.PKCS7(128).padder()
        plain = padder.update(json.dumps(session).encode("utf-8")) + padder.finalize()
        enc = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
        return {
            "ephemeral": b64(ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
            "ciphertext": b64(enc.update(plain) + enc.finalize()),
            "mac": b64(_mac(mac_key)),
        }

    def decrypt(self, data: dict[str, str]) -> dict[str, Any]:
        """
        The BackedUpSessionData of a C{session_data}.

        @raise ValueError: when the MAC does not match.
        """
        ephemeral = X25519PublicKey.from_public_bytes(unb64(data["ephemeral"]))
        aes_key, mac_key, iv = _derive(self.private.exchange(ephemeral))
        if not hmac.compare_digest(unb64(data["mac"]), _mac(mac_key)):
            raise ValueError("bad MAC")
        dec = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(dec.update(unb64(data["ciphertext"])) + dec.finalize())
        return json.loads(plain + unpadder.finalize())


def megolm_session() -> dict[str, Any]:
    """A BackedUpSessionData with random key material of the right sizes."""
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": b64(os.urandom(32)),
        "session_key": b64(os.urandom(229)),
        "sender_claimed_keys": {"ed25519": b64(os.urandom(32))},
        "forwarding_curve25519_key_chain": [],
    }


def backup_upload(public_b64: str, sessions: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The body of C{PUT /room_keys/keys} for C{{(room_id, session_id): BackedUpSessionData}}."""
    upload: dict[str, Any] = {"rooms": {}}
    for (room, session_id), plain in sessions.items():
        upload["rooms"].setdefault(room, {"sessions": {}})["sessions"][session_id] = {
            "first_message_index": 0, "forwarded_count": 0, "is_verified": True,
            "session_data": BackupKey.encrypt(public_b64, plain),
        }
    return upload


def restore(key: BackupKey, backup: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Decrypt every session of a C{GET /room_keys/keys} answer."""
    return {
        (room, session_id): key.decrypt(data["session_data"])
        for room, room_data in backup["rooms"].items()
        for session_id, data in room_data["sessions"].items()
    }
