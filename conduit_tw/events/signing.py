"""
Signing and verifying JSON objects and events with ed25519 keys.

appendices "Signing Details" and "Checking for a Signature";
server-server-api "Adding hashes and signatures to outgoing events" and
"Validating hashes and signatures on received events"; rooms/fragments
v5-signing-requirements (key validity). Keys are signedjson / PyNaCl
objects; verification takes the keys as an argument, so this module does
no I/O: the keyring fetches keys, then calls L{verify_event_signatures}.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Union

from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from conduit_tw.events.canonical_json import InvalidJson, encode_canonical_json
from conduit_tw.events.hashes import add_content_hash, decode_base64, encode_base64
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import RoomVersion

JsonDict = dict[str, Any]

#: The only signing algorithm the spec defines.
ED25519 = "ed25519"
_ED25519_PREFIX = ED25519 + ":"
#: v5-signing-requirements: a key's validity is capped at 7 days after it
#: was fetched.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000

_NOT_SIGNED = frozenset({"signatures", "unsigned"})


class SignatureError(ValueError):
    """A required signature is missing, uses no known key, or is invalid."""


@dataclass(frozen=True, slots=True)
class TimedVerifyKey:
    """
    A server's verify key with the time until which it may be used.

    @ivar verify_key: the public key.
    @ivar valid_until_ts: C{valid_until_ts} of the key response (or
        C{expired_ts} of an old key), already capped by the keyring with
        L{effective_valid_until_ts}; milliseconds since the epoch.
    """

    verify_key: VerifyKey
    valid_until_ts: int


#: What verification accepts per key ID: a plain key (always usable) or a
#: key with its validity period.
KeyLike = Union[VerifyKey, TimedVerifyKey]


def server_name_of(identifier: str) -> str:
    """
    The server name of a user, event (v1-2) or room (pre-v12) ID: what
    follows the first C{:} (appendices "Common Identifier Format").

    @raise SignatureError: the identifier has no server name.
    """
    if isinstance(identifier, str):
        _, sep, server = identifier.partition(":")
        if sep and server:
            return server
    raise SignatureError("%r has no server name" % (identifier,))


def key_id_of(signing_key: SigningKey) -> str:
    """The C{algorithm:version} key ID of a signedjson signing key."""
    return "%s:%s" % (signing_key.alg, signing_key.version)  # type: ignore[attr-defined]


def _signable_bytes(obj: Mapping[str, Any]) -> bytes:
    try:
        return encode_canonical_json({k: v for k, v in obj.items() if k not in _NOT_SIGNED})
    except InvalidJson as e:
        raise SignatureError("cannot encode object: %s" % e) from None


def sign_json(obj: JsonDict, signing_key: SigningKey, server_name: str) -> JsonDict:
    """
    Sign a JSON object in place (appendices "Signing Details"): the
    signature covers everything but C{signatures} and C{unsigned} and is
    added under C{signatures[server_name][key_id]}.

    @param signing_key: a signedjson signing key (has C{alg} and C{version}).
    @return: C{obj}, for convenience.
    """
    signature = signing_key.sign(_signable_bytes(obj)).signature
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        sigs = obj["signatures"] = {}
    sigs.setdefault(server_name, {})[key_id_of(signing_key)] = encode_base64(signature)
    return obj


def compute_event_signature(
    pdu: Mapping[str, Any],
    room_version: RoomVersion,
    signing_key: SigningKey,
    server_name: str,
) -> dict[str, dict[str, str]]:
    """
    Sign the redacted form of an event without changing it.

    @param pdu: the event, which must already carry its content hash.
    @return: C{{server_name: {key_id: signature}}}.
    """
    message = _signable_bytes(redact_pdu(pdu, room_version))
    signature = signing_key.sign(message).signature
    return {server_name: {key_id_of(signing_key): encode_base64(signature)}}


def hash_and_sign_event(
    pdu: JsonDict,
    room_version: RoomVersion,
    signing_key: SigningKey,
    server_name: str,
) -> bytes:
    """
    Add the content hash, then sign the redacted event and add the
    signature to C{pdu} (server-server-api "Adding hashes and signatures to
    outgoing events"). Existing signatures are kept.

    @return: the reference hash of the signed event (its event ID in room
        v3+, L{conduit_tw.events.event_ids.event_id_from_reference_hash}):
        the signed bytes, the redacted event without C{signatures} and
        C{unsigned}, are exactly what the reference hash covers, so the
        event is redacted and encoded once for both.
    """
    add_content_hash(pdu)
    message = _signable_bytes(redact_pdu(pdu, room_version))
    signature = signing_key.sign(message).signature
    sigs = pdu.get("signatures")
    if not isinstance(sigs, dict):
        sigs = pdu["signatures"] = {}
    sigs.setdefault(server_name, {})[key_id_of(signing_key)] = encode_base64(signature)
    return hashlib.sha256(message).digest()


def effective_valid_until_ts(valid_until_ts: int, fetched_at_ts: int) -> int:
    """
    The validity a keyring must record for a fetched key: the lesser of its
    C{valid_until_ts} and 7 days after the fetch (v5-signing-requirements).
    """
    return min(valid_until_ts, fetched_at_ts + MAX_KEY_VALIDITY_MS)


def key_valid_for_event(
    valid_until_ts: int, origin_server_ts: int, room_version: RoomVersion
) -> bool:
    """
    Whether a key may verify an event's signature.

    Room v5+ (C{room_version.enforce_key_validity}) require the key's
    C{valid_until_ts} to be at least the event's C{origin_server_ts}
    (v5-signing-requirements); earlier versions accept any known key.
    """
    return not room_version.enforce_key_validity or valid_until_ts >= origin_server_ts


def _verify_server(
    message: bytes,
    signatures: Any,
    server_name: str,
    keys: Mapping[str, KeyLike],
    origin_server_ts: int | None,
    room_version: RoomVersion | None,
) -> None:
    """Check one server's signatures on C{message}; see L{verify_json}."""
    by_key = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    if not isinstance(by_key, Mapping) or not by_key:
        raise SignatureError("not signed by %s" % server_name)
    verified = 0
    for key_id, sig_b64 in by_key.items():
        if not isinstance(key_id, str) or not key_id.startswith(_ED25519_PREFIX):
            continue  # unknown algorithm: ignored
        key = keys.get(key_id)
        if key is None:
            continue  # unknown key: skipped
        if isinstance(key, TimedVerifyKey):
            if (
                origin_server_ts is not None
                and room_version is not None
                and not key_valid_for_event(
                    key.valid_until_ts, origin_server_ts, room_version
                )
            ):
                continue  # expired before the event: skipped
            key = key.verify_key
        signature = decode_base64(sig_b64)
        if signature is None:
            raise SignatureError("signature %s of %s is not base64" % (key_id, server_name))
        try:
            key.verify(message, signature)
        except (CryptoError, ValueError):
            raise SignatureError(
                "invalid signature %s from %s" % (key_id, server_name)
            ) from None
        verified += 1
    if not verified:
        raise SignatureError("no signature from %s with a known, valid key" % server_name)


def verify_json(
    obj: Mapping[str, Any], server_name: str, keys: Mapping[str, KeyLike]
) -> None:
    """
    Check that C{server_name} signed a JSON object (appendices "Checking for
    a Signature").

    Signatures with unknown algorithms or key IDs missing from C{keys} are
    ignored; every remaining one must verify, and there must be at least
    one. L{TimedVerifyKey} validity is not checked here (no event time).

    @param keys: the server's keys by key ID (C{"ed25519:abc"}).
    @raise SignatureError: why the check failed.
    """
    _verify_server(
        _signable_bytes(obj), obj.get("signatures"), server_name, keys, None, None
    )


def required_signers(pdu: Mapping[str, Any], room_version: RoomVersion) -> set[str]:
    """
    The servers whose signatures a received event must carry
    (server-server-api "Validating hashes and signatures on received
    events"):

      - the sender's server, unless the event is a third-party invite
        (C{m.room.member}, C{invite}, with C{content.third_party_invite});
      - rooms v1-2: the server of the C{event_id};
      - rooms v8+ (C{restricted_joins}): for a C{join} with
        C{content.join_authorised_via_users_server}, that user's server
        (v8 auth rule 4.2).

    @raise SignatureError: a needed ID has no server name.
    """
    content = pdu.get("content")
    if not isinstance(content, Mapping):
        content = {}
    is_member = pdu.get("type") == "m.room.member"
    membership = content.get("membership") if is_member else None
    servers: set[str] = set()
    if not (membership == "invite" and "third_party_invite" in content):
        servers.add(server_name_of(pdu.get("sender")))  # type: ignore[arg-type]
    if room_version.event_id_in_event:
        servers.add(server_name_of(pdu.get("event_id")))  # type: ignore[arg-type]
    if room_version.restricted_joins and membership == "join":
        via = content.get("join_authorised_via_users_server")
        if via is not None:
            servers.add(server_name_of(via))
    return servers


def verify_event_signatures(
    pdu: Mapping[str, Any],
    room_version: RoomVersion,
    keys: Mapping[str, Mapping[str, KeyLike]],
    servers: set[str] | None = None,
) -> None:
    """
    Check an event's signatures (step 2 of "Checks performed on receipt of
    a PDU"; an event that fails is dropped).

    The event is redacted first, so the full and the redacted copy both
    pass. For each required server, signatures from unknown keys and, in
    room v5+, from keys that expired before the event's
    C{origin_server_ts} are skipped; all others must verify and at least
    one must remain.

    @param keys: server name -> key ID -> key, as known to the keyring.
    @param servers: the servers to check; L{required_signers} by default.
    @raise SignatureError: why the check failed.
    """
    if servers is None:
        servers = required_signers(pdu, room_version)
    redacted = redact_pdu(pdu, room_version)
    signatures = redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    try:
        message = encode_canonical_json(redacted)
    except InvalidJson as e:
        raise SignatureError("cannot encode event: %s" % e) from None
    ts = pdu.get("origin_server_ts")
    ts = ts if isinstance(ts, int) else 0
    for server in sorted(servers):
        _verify_server(message, signatures, server, keys.get(server, {}), ts, room_version)
