"""
The keyring: other servers' signing keys, fetched, checked, cached, and
served again as a notary (server-server-api "Retrieving server keys").

Keys are fetched per server, from two kinds of source:

  - the server itself, C{GET /_matrix/key/v2/server} ("Publishing Keys"):
    the response must name the server and be signed by the keys it lists;
  - the notaries of C{trusted_servers}, C{POST /_matrix/key/v2/query}
    ("Querying Keys Through Another Server"): each returned response must
    carry both the origin's self-signature and the notary's signature,
    checked with the notary's own key (which is fetched from the notary
    itself, so no loop arises).

C{query_trusted_key_servers_first} orders them; the next source is tried
while the wanted key is still missing. Accepted keys are recorded in the
database (L{ServerKeyStore}) and an in-memory cache, with their validity
capped at 7 days after the fetch (v5-signing-requirements); old keys are
kept, so signatures on old events remain checkable. One fetch per server
runs at a time: concurrent lookups share it. A server is not asked again
within L{REFETCH_INTERVAL_MS} of the last attempt ("Requesting servers
should limit how frequently they query for certificates"), so unknown key
IDs or notary queries cannot make us hammer a server.

Keys listed in C{ignored_keys} (known compromised) are never trusted:
not for signatures, not for self-signatures, not stored.

Validity per room version: callers pass C{min_valid_until_ts}, the time
a key must still have been valid at; for events that is the event's
C{origin_server_ts} in room v5+ and 0 before (L{min_valid_until_for}).
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol

from nacl.signing import VerifyKey
from twisted.internet.defer import Deferred, gatherResults

from conduit_tw.config import is_valid_server_name
from conduit_tw.events.hashes import decode_base64, encode_base64
from conduit_tw.events.room_versions import RoomVersion
from conduit_tw.events.signing import (
    SignatureError,
    TimedVerifyKey,
    effective_valid_until_ts,
    key_valid_for_event,
    required_signers,
    sign_json,
    verify_event_signatures,
    verify_json,
)
from conduit_tw.federation.errors import KeyNotFound
from conduit_tw.handlers.server_keys import KEY_VALIDITY_MS
from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.server_keys import ServerKeyStore, StoredKey, StoredResponse
from conduit_tw.util.caches import LruCache

__all__ = [
    "KeyNotFound", "SignatureError", "KeyRing", "IgnoredKeys", "key_valid_for",
    "min_valid_until_for",
]

log = get_logger("conduit_tw.federation.keyring")

#: The least time between two fetches of a server's keys that did not
#: give the key asked for.
REFETCH_INTERVAL_MS = 60 * 1000
#: Responses listing more keys than this are refused (a sane bound, not
#: from the spec: servers publish one or a few).
MAX_KEYS_PER_RESPONSE = 100
#: The key endpoints' paths (server-server-api "Retrieving server keys").
SERVER_KEYS_PATH = "/_matrix/key/v2/server"
QUERY_PATH = "/_matrix/key/v2/query"

#: keys.yaml: the version "must have characters matching [a-zA-Z0-9_]".
_KEY_ID = re.compile(r"ed25519:[A-Za-z0-9_]{1,128}")


class FetchJson(Protocol):
    """The federation client's request: JSON in, JSON out."""

    def __call__(
        self,
        destination: str,
        path: str,
        args: dict[str, Any] | None = None,
        *,
        method: str = "GET",
        body: Any = None,
    ) -> Awaitable[Any]: ...


class OwnKeys(Protocol):
    """What the keyring reads of L{conduit_tw.handlers.server_keys.ServerKeys}."""

    server_name: str
    signing_key: Any
    key_id: str
    old_verify_keys: dict[str, dict[str, Any]]

    def response(self) -> dict[str, Any]: ...


class InvalidKeyResponse(ValueError):
    """A key response that is malformed, for another server, or badly signed."""


def key_valid_for(room_version: RoomVersion, key: TimedVerifyKey, ts: int) -> bool:
    """
    Whether C{key} may verify a signature made at C{ts} in a room of
    C{room_version}: always before v5, only while valid from v5 on
    (rooms v5 "Signing key validity period").
    """
    return key_valid_for_event(key.valid_until_ts, ts, room_version)


def min_valid_until_for(room_version: RoomVersion, origin_server_ts: int) -> int:
    """The C{min_valid_until_ts} to ask for the keys of an event."""
    return origin_server_ts if room_version.enforce_key_validity else 0


class IgnoredKeys:
    """
    The C{ignored_keys} list: each entry is C{server_name:key_id} (one
    server's key), a bare C{key_id} (that ID on every server) or an
    unpadded base64 public key (that key whatever its ID or server).
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.key_ids: set[str] = set()
        self.server_key_ids: set[tuple[str, str]] = set()
        self.public_keys: set[bytes] = set()
        for entry in entries:
            parts = entry.rsplit(":", 2)
            if len(parts) == 3:
                self.server_key_ids.add((parts[0], parts[1] + ":" + parts[2]))
            elif len(parts) == 2:
                self.key_ids.add(entry)
            else:
                raw = decode_base64(entry)
                if raw is None or len(raw) != 32:
                    raise ValueError(f"ignored key {entry!r} is no key ID nor ed25519 key")
                self.public_keys.add(raw)

    def ignores_id(self, server_name: str, key_id: str) -> bool:
        """Whether this key ID of C{server_name} is ignored."""
        return key_id in self.key_ids or (server_name, key_id) in self.server_key_ids

    def ignores(self, server_name: str, key_id: str, public_key: bytes) -> bool:
        """Whether this key is ignored, by ID or by its public key."""
        return self.ignores_id(server_name, key_id) or public_key in self.public_keys


def _ed25519_keys(
    section: Any, what: str, expiry_field: str | None
) -> dict[str, tuple[bytes, int | None]]:
    """The ed25519 keys of C{verify_keys} / C{old_verify_keys}: ID -> (key, expiry)."""
    if not isinstance(section, dict):
        raise InvalidKeyResponse(f"{what} is not an object")
    found: dict[str, tuple[bytes, int | None]] = {}
    for key_id, entry in section.items():
        if not key_id.startswith("ed25519:"):
            continue  # an algorithm we do not know
        if not _KEY_ID.fullmatch(key_id) or not isinstance(entry, dict):
            raise InvalidKeyResponse(f"bad {what} entry {key_id!r}")
        raw = decode_base64(entry.get("key")) if isinstance(entry.get("key"), str) else None
        if raw is None or len(raw) != 32:
            raise InvalidKeyResponse(f"{what} {key_id} is not an ed25519 key")
        expiry = None
        if expiry_field is not None:
            expiry = entry.get(expiry_field)
            if not isinstance(expiry, int) or isinstance(expiry, bool):
                raise InvalidKeyResponse(f"{what} {key_id} has no integer {expiry_field}")
        found[key_id] = (raw, expiry)
    return found


def parse_key_response(
    response: Any, server_name: str, now_ms: int, ignored: IgnoredKeys
) -> dict[str, StoredKey]:
    """
    Check a key response of C{server_name} (keys.yaml) and return the keys
    it vouches for, with validity capped as v5-signing-requirements says.

    The response must name C{server_name}, have an integer
    C{valid_until_ts}, and be signed by C{server_name} with the (not
    ignored) keys of its C{verify_keys} (appendices "Checking for a
    Signature": every such signature must verify, and there must be one).

    @raise InvalidKeyResponse: why it is refused.
    """
    if not isinstance(response, dict):
        raise InvalidKeyResponse("not a JSON object")
    if response.get("server_name") != server_name:
        raise InvalidKeyResponse(
            f"response is for {response.get('server_name')!r}, not {server_name!r}"
        )
    valid_until = response.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise InvalidKeyResponse("valid_until_ts is not an integer")
    current = _ed25519_keys(response.get("verify_keys"), "verify_keys", None)
    old = _ed25519_keys(response.get("old_verify_keys", {}), "old_verify_keys", "expired_ts")
    if len(current) + len(old) > MAX_KEYS_PER_RESPONSE:
        raise InvalidKeyResponse("too many keys")
    signers = {
        key_id: VerifyKey(raw)
        for key_id, (raw, _) in current.items()
        if not ignored.ignores(server_name, key_id, raw)
    }
    if not signers:
        raise InvalidKeyResponse("no usable key in verify_keys")
    try:
        verify_json(response, server_name, signers)
    except SignatureError as e:
        raise InvalidKeyResponse(f"self-signature: {e}") from None
    valid = effective_valid_until_ts(valid_until, now_ms)
    keys = {}
    for key_id, (raw, expired_ts) in old.items():
        if not ignored.ignores(server_name, key_id, raw):
            keys[key_id] = StoredKey(encode_base64(raw), min(expired_ts or 0, valid))
    for key_id, (raw, _) in current.items():
        if not ignored.ignores(server_name, key_id, raw):
            keys[key_id] = StoredKey(encode_base64(raw), valid)
    return keys


def _only_origin_signature(response: dict[str, Any], server_name: str) -> dict[str, Any]:
    """A copy of C{response} keeping only the origin's own signatures."""
    copy = dict(response)
    copy["signatures"] = {server_name: dict(response["signatures"][server_name])}
    return copy


class KeyRing:
    """
    Fetches, checks and caches other servers' keys; serves them as a
    notary. See the module docstring.

    @param store: where fetched keys and responses are kept.
    @param own_keys: returns our L{ServerKeys} (built at start-up, and
        changed by rotation), for our own keys and notary signatures.
    @param clock_ms: the current time in milliseconds.
    @param fetch_json: the federation client's request (L{FetchJson}).
    @param trusted_servers: the notaries (config C{trusted_servers}).
    @param query_trusted_key_servers_first: ask the notaries before the
        server itself.
    @param ignored_keys: the C{ignored_keys} entries (see L{IgnoredKeys}).
    """

    def __init__(
        self,
        store: ServerKeyStore,
        own_keys: Callable[[], OwnKeys],
        clock_ms: Callable[[], int],
        fetch_json: FetchJson,
        *,
        trusted_servers: Iterable[str] = (),
        query_trusted_key_servers_first: bool = True,
        ignored_keys: Iterable[str] = (),
        cache_size: int = 2000,
    ) -> None:
        self.store = store
        self._own_keys = own_keys
        self.clock_ms = clock_ms
        self.fetch_json = fetch_json
        self.trusted_servers = list(trusted_servers)
        self.query_trusted_key_servers_first = query_trusted_key_servers_first
        self.ignored = IgnoredKeys(ignored_keys)
        self._cache: LruCache[str, dict[str, TimedVerifyKey]] = LruCache(cache_size)
        self._inflight: dict[str, Deferred[None]] = {}
        self._last_attempt: dict[str, int] = {}

    # -- looking keys up

    async def get_verify_key(
        self, server_name: str, key_id: str, min_valid_until_ts: int = 0
    ) -> VerifyKey:
        """
        The key C{key_id} of C{server_name}, valid until at least
        C{min_valid_until_ts} (0: any known key), fetched if needed.

        @raise KeyNotFound: no such usable key could be found.
        """
        return (await self.get_timed_key(server_name, key_id, min_valid_until_ts)).verify_key

    async def get_timed_key(
        self, server_name: str, key_id: str, min_valid_until_ts: int = 0
    ) -> TimedVerifyKey:
        """L{get_verify_key}, with the key's validity."""
        own = self._own_keys()
        if server_name == own.server_name:
            return self._own_key(own, key_id)
        if not is_valid_server_name(server_name) or not _KEY_ID.fullmatch(key_id):
            raise KeyNotFound(server_name, key_id, "not a server name and key ID")
        if self.ignored.ignores_id(server_name, key_id):
            raise KeyNotFound(server_name, key_id, "listed in ignored_keys")
        key = await self._known_key(server_name, key_id, min_valid_until_ts)
        if key is None:
            await self._refresh(server_name, key_id, min_valid_until_ts, notaries=True)
            key = await self._known_key(server_name, key_id, min_valid_until_ts)
        if key is None:
            raise KeyNotFound(server_name, key_id, f"none valid until {min_valid_until_ts}")
        return key

    def _own_key(self, own: OwnKeys, key_id: str) -> TimedVerifyKey:
        if key_id == own.key_id:
            return TimedVerifyKey(own.signing_key.verify_key, self.clock_ms() + KEY_VALIDITY_MS)
        old = own.old_verify_keys.get(key_id)
        raw = decode_base64(old["key"]) if old else None
        if old is None or raw is None:
            raise KeyNotFound(own.server_name, key_id, "not one of our keys")
        return TimedVerifyKey(VerifyKey(raw), old["expired_ts"])

    async def _known(self, server_name: str) -> dict[str, TimedVerifyKey]:
        """The keys of C{server_name} we hold (memory, else the database)."""
        keys = self._cache.get(server_name)
        if keys is None:
            stored = await self.store.get_keys(server_name)
            keys = {}
            for key_id, record in stored.items():
                raw = decode_base64(record.key)
                if raw is not None and not self.ignored.ignores(server_name, key_id, raw):
                    keys[key_id] = TimedVerifyKey(VerifyKey(raw), record.valid_until_ts)
            # A backend that answers later may have let another load or a
            # record fill the entry meanwhile: keep the fuller one.
            for key_id, key in (self._cache.get(server_name) or {}).items():
                if key_id not in keys or keys[key_id].valid_until_ts < key.valid_until_ts:
                    keys[key_id] = key
            self._cache.set(server_name, keys)
        return keys

    async def _known_key(
        self, server_name: str, key_id: str, min_valid_until_ts: int
    ) -> TimedVerifyKey | None:
        key = (await self._known(server_name)).get(key_id)
        if key is not None and key.valid_until_ts >= min_valid_until_ts:
            return key
        return None

    # -- verifying

    async def verify_json_for_server(
        self, server_name: str, obj: Mapping[str, Any], min_valid_until_ts: int = 0
    ) -> None:
        """
        Check that C{server_name} signed C{obj} (appendices "Checking for a
        Signature") with keys valid until at least C{min_valid_until_ts},
        fetching the keys it names.

        @raise SignatureError: not signed by the server, or a bad signature.
        @raise KeyNotFound: none of the signing keys could be found.
        """
        signatures = obj.get("signatures")
        by_key = signatures.get(server_name) if isinstance(signatures, dict) else None
        if not isinstance(by_key, dict) or not by_key:
            raise SignatureError(f"not signed by {server_name}")
        keys = await self._keys_for(server_name, by_key, min_valid_until_ts)
        verify_json(obj, server_name, keys)

    async def _keys_for(
        self, server_name: str, by_key: Mapping[str, Any], min_valid_until_ts: int
    ) -> dict[str, TimedVerifyKey]:
        """The usable keys among the key IDs that signed (at least one)."""
        keys = {}
        for key_id in by_key:
            if isinstance(key_id, str) and key_id.startswith("ed25519:"):
                try:
                    keys[key_id] = await self.get_timed_key(
                        server_name, key_id, min_valid_until_ts
                    )
                except KeyNotFound:
                    continue
        if not keys:
            raise KeyNotFound(server_name, ", ".join(map(str, by_key)), "none usable")
        return keys

    async def verify_event(self, pdu: Mapping[str, Any], room_version: RoomVersion) -> None:
        """
        Check the signatures of a received event (server-server-api
        "Validating hashes and signatures on received events"), fetching
        the keys of every required signer; in room v5+ a key must have been
        valid at the event's C{origin_server_ts}.

        @raise SignatureError: or L{KeyNotFound}: the event must be dropped.
        """
        servers = required_signers(pdu, room_version)
        ts = pdu.get("origin_server_ts")
        minimum = min_valid_until_for(room_version, ts if isinstance(ts, int) else 0)
        signatures = pdu.get("signatures")
        if not isinstance(signatures, dict):
            raise SignatureError("event has no signatures")

        async def keys_of(server: str) -> dict[str, TimedVerifyKey]:
            by_key = signatures.get(server)
            if not isinstance(by_key, dict) or not by_key:
                raise SignatureError(f"not signed by {server}")
            return await self._keys_for(server, by_key, minimum)

        ordered = sorted(servers)
        found = await gatherResults(
            [Deferred.fromCoroutine(keys_of(s)) for s in ordered], consumeErrors=True
        ).addErrback(lambda f: f.value.subFailure.raiseException())
        verify_event_signatures(pdu, room_version, dict(zip(ordered, found)), servers)

    # -- fetching

    def _sources(self, server_name: str, notaries: bool) -> list[str | None]:
        """The sources to ask, in order: C{None} is the server itself."""
        if not notaries or server_name in self.trusted_servers:
            # A notary's own keys come from itself: checking what another
            # notary says about it would need its keys first.
            return [None]
        own = self._own_keys().server_name
        others: list[str | None] = [n for n in self.trusted_servers if n != own]
        return others + [None] if self.query_trusted_key_servers_first else [None] + others

    async def _refresh(
        self, server_name: str, key_id: str | None, min_valid_until_ts: int, notaries: bool
    ) -> None:
        """
        Fetch C{server_name}'s keys, unless a fetch is running (then wait
        for it) or the last one was too recent.
        """
        shared = self._inflight.get(server_name)
        if shared is None:
            last = self._last_attempt.get(server_name)
            if last is not None and self.clock_ms() - last < REFETCH_INTERVAL_MS:
                return
            shared = Deferred.fromCoroutine(
                self._fetch(server_name, key_id, min_valid_until_ts, notaries)
            )
            if shared.called:
                return
            self._inflight[server_name] = shared

            def done(result: Any) -> Any:
                self._inflight.pop(server_name, None)
                return result

            shared.addBoth(done)
        waiter: Deferred[None] = Deferred()

        def relay(result: Any) -> Any:
            if not waiter.called:
                waiter.callback(None)
            return result

        shared.addBoth(relay)
        await waiter

    async def _fetch(
        self, server_name: str, key_id: str | None, min_valid_until_ts: int, notaries: bool
    ) -> None:
        """Ask each source in turn until one gives the wanted key; never raises."""
        self._last_attempt[server_name] = self.clock_ms()
        for source in self._sources(server_name, notaries):
            try:
                if source is None:
                    await self._fetch_direct(server_name)
                else:
                    await self._fetch_from_notary(
                        source, server_name, key_id, min_valid_until_ts
                    )
            except Exception as e:
                log.info(
                    "Fetching the keys of {server} from {source} failed: {error}",
                    server=server_name, source=source or "itself", error=e,
                )
                continue
            if key_id is None or await self._known_key(server_name, key_id, min_valid_until_ts):
                return

    async def _fetch_direct(self, server_name: str) -> None:
        """C{GET /_matrix/key/v2/server} of the server itself."""
        response = await self.fetch_json(server_name, SERVER_KEYS_PATH)
        await self._accept(server_name, response)

    async def _fetch_from_notary(
        self, notary: str, server_name: str, key_id: str | None, min_valid_until_ts: int
    ) -> None:
        """
        C{POST /_matrix/key/v2/query} to C{notary}, with
        C{minimum_valid_until_ts} set as v5-signing-requirements asks.
        Each returned response for C{server_name} is accepted if both the
        origin and the notary signed it.
        """
        minimum = max(min_valid_until_ts, self.clock_ms())
        criteria = {key_id: {"minimum_valid_until_ts": minimum}} if key_id else {}
        answer = await self.fetch_json(
            notary, QUERY_PATH, method="POST", body={"server_keys": {server_name: criteria}}
        )
        entries = answer.get("server_keys") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise InvalidKeyResponse(f"{notary} answered no server_keys list")
        accepted = 0
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("server_name") != server_name:
                continue  # only what we asked for
            try:
                keys = parse_key_response(entry, server_name, self.clock_ms(), self.ignored)
                await self.verify_json_for_server(notary, entry, self.clock_ms())
            except (InvalidKeyResponse, SignatureError) as e:
                log.warn(
                    "Refused keys of {server} from notary {notary}: {error}",
                    server=server_name, notary=notary, error=e,
                )
                continue
            await self._record(server_name, keys, entry)
            accepted += 1
        if not accepted:
            raise InvalidKeyResponse(f"{notary} returned no acceptable keys of {server_name}")

    async def _accept(self, server_name: str, response: Any) -> None:
        """Check a server's own key response and record it."""
        keys = parse_key_response(response, server_name, self.clock_ms(), self.ignored)
        await self._record(server_name, keys, response)

    async def _record(
        self, server_name: str, keys: dict[str, StoredKey], response: dict[str, Any]
    ) -> None:
        """
        Store checked keys (a key's validity only grows) and, when it is
        the newest, the response itself, in one write; update the cache.
        """
        known = await self._known(server_name)
        merged = {}
        for key_id, key in keys.items():
            previous = known.get(key_id)
            if previous is None or previous.valid_until_ts < key.valid_until_ts:
                merged[key_id] = key
        stored = await self.store.get_response(server_name)
        newest = None
        if stored is None or stored.response.get("valid_until_ts", 0) <= response["valid_until_ts"]:
            newest = StoredResponse(self.clock_ms(), _only_origin_signature(response, server_name))
        await self.store.store(server_name, merged, newest)
        cached = self._cache.get(server_name)  # not evicted or replaced meanwhile?
        if cached is not None:
            for key_id, key in merged.items():
                raw = decode_base64(key.key)
                assert raw is not None
                cached[key_id] = TimedVerifyKey(VerifyKey(raw), key.valid_until_ts)

    # -- the notary side

    async def query(
        self, criteria: Mapping[str, Mapping[str | None, int]]
    ) -> list[dict[str, Any]]:
        """
        Answer a notary query (C{/_matrix/key/v2/query}): for each server
        (server name -> key ID -> C{minimum_valid_until_ts}; key ID C{None}
        means any key, an empty map any key valid now), the newest response of the server,
        fetched from it when missing, stale (past half of its validity,
        keys_server.yaml) or not covering what was asked, additionally
        signed by us. Our own keys are answered directly. A server that
        cannot be reached and has no cached response is left out.
        """
        servers = list(criteria)
        answers = await gatherResults(
            [Deferred.fromCoroutine(self._notarise(s, criteria[s])) for s in servers],
            consumeErrors=True,
        )
        return [a for a in answers if a is not None]

    async def _notarise(
        self, server_name: str, wanted: Mapping[str | None, int]
    ) -> dict[str, Any] | None:
        own = self._own_keys()
        if server_name == own.server_name:
            return own.response()
        stored = await self.store.get_response(server_name)
        if self._stale(stored, wanted):
            await self._refresh(server_name, None, 0, notaries=False)
            stored = await self.store.get_response(server_name)
        if stored is None:
            return None
        response = dict(stored.response)
        response["signatures"] = {k: dict(v) for k, v in response["signatures"].items()}
        return sign_json(response, own.signing_key, own.server_name)

    def _stale(self, stored: StoredResponse | None, wanted: Mapping[str | None, int]) -> bool:
        """Whether a stored response cannot answer C{wanted} as it is."""
        if stored is None:
            return True
        now = self.clock_ms()
        valid_until = stored.response["valid_until_ts"]
        if now >= stored.fetched_ts + (valid_until - stored.fetched_ts) // 2:
            return True
        listed = set(stored.response.get("verify_keys", {})) | set(
            stored.response.get("old_verify_keys", {})
        )
        minimum = max(wanted.values(), default=now)
        return valid_until < minimum or any(k is not None and k not in listed for k in wanted)
