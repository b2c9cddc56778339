"""
The full-text index of room events (client-server-api "Server Side
Search", modules/search.md), filled when an event is persisted, so that
C{POST /search} reads postings ranges and never scans a timeline. It uses
only the generic tree interface, so it works on every backend.

Layout (u64 is 8 big-endian bytes; C{·} is 0xFF)::

    searchterm   u64 shortroomid + key byte + term·u64 order
        -> u64 shorteventid + u16 occurrences

- C{key byte} names the searched field: L{BODY} (C{content.body}),
  L{NAME} (C{content.name} of C{m.room.name}), L{TOPIC}
  (C{content.topic} of C{m.room.topic}), so C{keys} restricts a search
  to one range per key and term.
- Terms come from L{tokenise}: Unicode word runs, case-folded, cut to
  L{MAX_TERM_CHARS}. A query term matches the indexed terms it is a
  prefix of (one range: C{room + key + term}).
- A redaction removes the target's postings in its own batch.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass

from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.keys import SEP, from_u64, u64
from conduit_tw.storage.txn import StoreTxn

SEARCH_TERMS = "searchterm"

BODY, NAME, TOPIC = b"b", b"n", b"t"
#: C{keys} of the search API -> key byte.
KEYS = {"content.body": BODY, "content.name": NAME, "content.topic": TOPIC}

#: Longest indexed term (characters); longer words are cut.
MAX_TERM_CHARS = 64
#: Most distinct terms indexed per field of one event.
MAX_TERMS = 2000

_WORD = re.compile(r"\w+", re.UNICODE)
_VALUE = struct.Struct(">QH")


def tokenise(text: str) -> list[str]:
    """Case-folded Unicode word runs of C{text}, in order (C{_} splits words too)."""
    return [
        w[:MAX_TERM_CHARS]
        for part in _WORD.findall(text.casefold())
        for w in part.split("_")
        if w
    ]


def fields_of(event_type: str, content: object) -> dict[bytes, str]:
    """The searchable fields of an event: key byte -> text."""
    if not isinstance(content, dict):
        return {}
    out = {}
    body = content.get("body")
    if isinstance(body, str):
        out[BODY] = body
    if event_type == "m.room.name" and isinstance(content.get("name"), str):
        out[NAME] = content["name"]
    if event_type == "m.room.topic" and isinstance(content.get("topic"), str):
        out[TOPIC] = content["topic"]
    return out


@dataclass(frozen=True, slots=True)
class Posting:
    """One indexed occurrence of a term in an event."""

    term: str
    order: int
    short: int
    count: int


class SearchStore:
    """See the module docstring."""

    def __init__(self, db: IKeyValueDatabase) -> None:
        self.tree = db.open_tree(SEARCH_TERMS)

    def _postings(
        self, shortroomid: int, event_type: str, content: object, order: int
    ) -> list[tuple[bytes, int]]:
        out = []
        for key, text in fields_of(event_type, content).items():
            counts = Counter(tokenise(text))
            for term, n in list(counts.items())[:MAX_TERMS]:
                out.append((u64(shortroomid) + key + term.encode("utf-8") + SEP + u64(order), n))
        return out

    def index(
        self, txn: StoreTxn, shortroomid: int, short: int, order: int, event_type: str,
        content: object,
    ) -> None:
        """Add an event's terms to the index in C{txn}."""
        for key, n in self._postings(shortroomid, event_type, content, order):
            txn.batch.put(SEARCH_TERMS, key, _VALUE.pack(short, min(n, 0xFFFF)))

    def unindex(
        self, txn: StoreTxn, shortroomid: int, order: int, event_type: str, content: object
    ) -> None:
        """Remove an event's terms (its redaction) in C{txn}."""
        for key, _ in self._postings(shortroomid, event_type, content, order):
            txn.batch.delete(SEARCH_TERMS, key)

    async def lookup(
        self, shortroomid: int, key: bytes, term: str, limit: int
    ) -> list[Posting]:
        """
        Postings of the indexed terms starting with C{term} in one field
        of a room (the exact term's newest first), at most C{limit}.
        """
        prefix = u64(shortroomid) + key + term.encode("utf-8")
        rows = await self.tree.scan_prefix(prefix, reverse=True, limit=limit)
        out = []
        base = len(u64(shortroomid) + key)
        for k, v in rows:
            order = from_u64(k[-8:])
            short, n = _VALUE.unpack(v)
            out.append(Posting(k[base:-9].decode("utf-8", "replace"), order, short, n))
        return out
