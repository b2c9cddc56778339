"""
Shared test data: the spec's signing key and a real federated event.
"""

from __future__ import annotations

import copy
from typing import Any

from signedjson.key import decode_signing_key_base64

#: appendices "Cryptographic Test Vectors": seed of the ed25519 test key.
SPEC_KEY_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SERVER = "domain"
SPEC_KEY_ID = "ed25519:1"


def spec_signing_key() -> Any:
    """The appendices' test signing key (server "domain", key "ed25519:1")."""
    return decode_signing_key_base64("ed25519", "1", SPEC_KEY_SEED)


#: A real m.room.create event (room version 5) made by Synapse on jki.re,
#: as served over federation. Its event ID is known in both hash formats.
JKI_CREATE_JSON = (
    b'{"auth_events": [], "prev_events": [], "type": "m.room.create", '
    b'"room_id": "!uXDCzlYgCTHtiWCkEx:jki.re", "sender": "@erikj:jki.re", '
    b'"content": {"room_version": "5", "predecessor": {"room_id": '
    b'"!gdRMqOrTFdOCYHNwOo:half-shot.uk", "event_id": '
    b'"$LP7ROBc4b+cMc1UE9haIz8q5AK2AIW4eJ90FfKLvyZI"}, "creator": '
    b'"@erikj:jki.re"}, "depth": 1, "prev_state": [], "state_key": "", '
    b'"origin": "jki.re", "origin_server_ts": 1560284621137, "hashes": '
    b'{"sha256": "IX6zuNiJpJPNf70BLleL3HSCpjKeq9Uhu7uUpyDjBmc"}, '
    b'"signatures": {"jki.re": {"ed25519:auto": '
    b'"O4IyFfF2PPtGp5uaDm8t57dZbdh8vc8Q64LgCwvzYRVItAMI0uisfiAFaxkVT7MRpzh6N2QNN5NMRXZKmgPYDA"}}, '
    b'"unsigned": {"age": 1321650}}'
)
JKI_CREATE_ID_V3 = "$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438"
JKI_CREATE_ID_V4 = "$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"


def minimal_pdu(version_has_event_id: bool = False, **overrides: Any) -> dict[str, Any]:
    """A well-formed message PDU; C{overrides} replace or add keys."""
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1700000000000,
        "content": {"msgtype": "m.text", "body": "hi"},
        "depth": 5,
        "hashes": {"sha256": "ThisHashCoversAllFieldsInCaseThisIsRedacted"},
        "signatures": {"example.org": {"ed25519:a": "c2ln"}},
        "prev_events": ["$prev"],
        "auth_events": ["$create", "$pl", "$member"],
    }
    if version_has_event_id:
        pdu["event_id"] = "$abc:example.org"
        pdu["prev_events"] = [["$prev:example.org", {"sha256": "aGFzaA"}]]
        pdu["auth_events"] = [["$create:example.org", {"sha256": "aGFzaA"}]]
    pdu.update(overrides)
    return copy.deepcopy(pdu)
