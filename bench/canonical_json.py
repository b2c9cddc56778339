"""
Canonical JSON on the hot path: our encoder (conduit_tw.events.canonical_json)
against the C{canonicaljson} library, on events shaped like the ones every send
hashes, signs and stores. Run: .venv/bin/python bench/canonical_json.py
(needs the bench extra: pip install -e '.[bench]').

Why we keep our own (docs/architecture.md, "Canonical JSON"): the library has
no strict parser (duplicate keys, v6+ integer range, lone surrogates) which
room versions 6+ need on receipt, and this bench shows whether its encoder
would be faster on what we encode most.
"""

from __future__ import annotations

import timeit

import canonicaljson

from conduit_tw.events.canonical_json import encode_canonical_json


def sample_event(i: int) -> dict:
    """A message event as persisted: hashes, signatures, unicode body."""
    return {
        "auth_events": ["$" + "a" * 43, "$" + "b" * 43, "$" + "c" * 43],
        "content": {"body": "Grüße aus Köln, Nachricht %d 🎉" % i, "msgtype": "m.text"},
        "depth": 1000 + i,
        "hashes": {"sha256": "x" * 43},
        "origin_server_ts": 1_700_000_000_000 + i,
        "prev_events": ["$" + "d" * 43],
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "signatures": {"example.org": {"ed25519:a_abcd": "s" * 86}},
        "type": "m.room.message",
        "unsigned": {"age_ts": 1_700_000_000_000 + i},
    }


def main() -> None:
    events = [sample_event(i) for i in range(1000)]
    for e in events[:50]:
        assert encode_canonical_json(e) == canonicaljson.encode_canonical_json(e)
    rounds = 20
    ours = min(timeit.repeat(lambda: [encode_canonical_json(e) for e in events], number=rounds, repeat=5))
    ours_strict = min(
        timeit.repeat(lambda: [encode_canonical_json(e, strict=True) for e in events], number=rounds, repeat=5)
    )
    lib = min(
        timeit.repeat(lambda: [canonicaljson.encode_canonical_json(e) for e in events], number=rounds, repeat=5)
    )
    per = 1e6 / (rounds * len(events))
    print(f"ours (lax)      {ours * per:6.2f} µs/event")
    print(f"ours (strict)   {ours_strict * per:6.2f} µs/event")
    print(f"canonicaljson   {lib * per:6.2f} µs/event")
    print(f"library / ours  {lib / ours:5.2f}x")


if __name__ == "__main__":
    main()
