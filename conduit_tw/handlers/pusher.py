"""
Pushers and delivery to HTTP push gateways (client-server-api "Push
Notifications" / pusher.yaml; push-gateway-api C{POST /_matrix/push/v1/notify}).

L{PusherHandler.set_pusher} and L{PusherHandler.list_pushers} serve
C{/pushers}; a pusher is removed with the device that created it (logout,
device deletion) and all of a user's on deactivation, as Synapse does.
L{PusherHandler.deliver} sends one notification to every
HTTP pusher of a user: one request per pusher (each has its own URL and
data), the full event or only IDs for C{format: event_id_only}. A failed
request (connection error, timeout, 5xx, 429) is retried with exponential
backoff; a 2xx answer's C{rejected} pushkeys have their pushers removed,
as the spec requires. Other 4xx answers and redirects (never followed)
are not retried. Requests go through the server's shared outgoing client
(L{conduit_tw.http.client}): a gateway resolving only to addresses in
C{ip_range_denylist} is never connected to and is treated like an
unreachable one.

Deviation: the spec says the URL MUST be HTTPS; plain HTTP is accepted too
(self-hosted and test gateways), as Synapse does. The path must be
C{/_matrix/push/v1/notify}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import urlsplit

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    FirstError,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from conduit_tw.errors import Codes, MatrixError, invalid_param
from conduit_tw.handlers.push_rules import PushResult, result_for
from conduit_tw.http.errors import DeniedDestinationError
from conduit_tw.logging import get_logger

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.http.client import OutgoingHTTPClient
    from conduit_tw.storage.stores.pushers import PusherStore

log = get_logger("conduit_tw.push")

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_CHARS = 64
#: A gateway answers C{{"rejected": [...]}} for one pusher: small.
MAX_GATEWAY_RESPONSE_BYTES = 64 * 1024
_REQUIRED_WHEN_SET = ("app_display_name", "device_display_name", "lang", "data")
#: Fields shown by C{GET /pushers}.
_CLIENT_FIELDS = (
    "pushkey", "kind", "app_id", "app_display_name", "device_display_name",
    "profile_tag", "lang", "data",
)


class PusherHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: "PusherStore",
        reactor: IReactorTime,
        clock_ms: Any,
        http_client: "OutgoingHTTPClient",
        request_timeout_s: float | None = None,
        max_attempts: int = 10,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 600.0,
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.clock_ms = clock_ms
        #: The server's shared outgoing client (denylist, TLS, size cap).
        self.http_client = http_client
        #: Per-request total timeout; None: the client's C{request_timeout}.
        self.request_timeout_s = request_timeout_s
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._in_flight: set[Deferred[None]] = set()
        #: Set by L{stop}: nothing is delivered or retried any more.
        self._stopped = False

    # -- the client API

    async def list_pushers(self, user_id: str) -> list[dict[str, Any]]:
        """C{GET /pushers}: the user's pushers as the client sees them."""
        return [
            {k: p[k] for k in _CLIENT_FIELDS if p.get(k) is not None}
            for p in await self.store.for_user(user_id)
        ]

    async def set_pusher(self, requester: "Requester", body: dict[str, Any]) -> None:
        """C{POST /pushers/set}: create, replace or (C{kind: null}) delete."""
        missing = [k for k in ("kind", "app_id", "pushkey") if k not in body]
        kind = body.get("kind")
        if "kind" in body and kind is not None:
            missing += [k for k in _REQUIRED_WHEN_SET if k not in body]
        if missing:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameters: " + ", ".join(missing))
        app_id, pushkey = body["app_id"], body["pushkey"]
        if not isinstance(app_id, str) or not app_id or len(app_id) > MAX_APP_ID_CHARS:
            raise invalid_param(f"'app_id' must be a string of 1 to {MAX_APP_ID_CHARS} characters.")
        if not isinstance(pushkey, str) or not pushkey or len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
            raise invalid_param(f"'pushkey' must be a string of 1 to {MAX_PUSHKEY_BYTES} bytes.")
        if kind is None:
            await self.store.delete(requester.user_id, app_id, pushkey)
            return
        if kind != "http":
            raise invalid_param(f"Unsupported pusher kind {kind!r}: only 'http' is supported.")
        for k in ("app_display_name", "device_display_name", "lang"):
            if not isinstance(body[k], str):
                raise invalid_param(f"'{k}' must be a string.")
        if "profile_tag" in body and not isinstance(body["profile_tag"], str):
            raise invalid_param("'profile_tag' must be a string.")
        data = body["data"]
        if not isinstance(data, dict):
            raise invalid_param("'data' must be an object.")
        check_gateway_url(data.get("url"))
        if "format" in data and not isinstance(data["format"], str):
            raise invalid_param("'data.format' must be a string.")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise invalid_param("'append' must be a boolean.")
        pusher = {
            "user_id": requester.user_id,
            "device_id": requester.device_id,
            "kind": kind,
            "app_id": app_id,
            "pushkey": pushkey,
            "pushkey_ts": self.clock_ms(),
            "app_display_name": body["app_display_name"],
            "device_display_name": body["device_display_name"],
            "profile_tag": body.get("profile_tag"),
            "lang": body["lang"],
            "data": data,
        }
        await self.store.set(pusher, remove_other_users=not append)

    # -- hooks (registered by the HomeServer)

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """C{DeviceHandler.on_devices_deleted}: a logged-out device's pushers go too."""
        gone = set(device_ids)
        for p in await self.store.for_user(user_id):
            if p.get("device_id") in gone:
                await self.store.delete(user_id, p["app_id"], p["pushkey"])

    async def user_deactivated(self, user_id: str, erase: bool = False) -> None:
        """C{AccountHandler.on_deactivated}: remove every pusher of the user."""
        for p in await self.store.for_user(user_id):
            await self.store.delete(user_id, p["app_id"], p["pushkey"])

    async def has_pushers(self, user_id: str) -> bool:
        """Whether the user has any pusher (worth building a notification for)."""
        return bool(await self.store.for_user(user_id))

    # -- delivery

    def dispatch(
        self,
        user_id: str,
        event: Mapping[str, Any],
        actions: PushResult | Sequence[Any],
        counts: Mapping[str, int],
        **extra: Any,
    ) -> Deferred[None]:
        """
        Start L{deliver} in the background (retries may take minutes) and
        return its Deferred; failures are logged, never raised. This is
        what event persistence should call. After L{stop}, nothing is sent.
        """
        if self._stopped:
            return succeed(None)
        d = Deferred.fromCoroutine(self.deliver(user_id, event, actions, counts, **extra))
        d.addErrback(self._delivery_failed, user_id)
        self._in_flight.add(d)
        d.addBoth(lambda r: (self._in_flight.discard(d), r)[1])
        return d

    def _delivery_failed(self, failure: Any, user_id: str) -> None:
        if failure.check(FirstError):  # from deliver's gatherResults
            failure = failure.value.subFailure
        if not (self._stopped and failure.check(CancelledError)):
            log.failure("Push delivery for {user} failed", failure, user=user_id)

    async def stop(self) -> None:
        """
        Shutdown: cancel the deliveries in flight (a request or a retry
        backoff) and wait until they have finished, so none touches the
        store or the HTTP client once this returns.
        """
        self._stopped = True
        while self._in_flight:
            pending = list(self._in_flight)
            for d in pending:
                d.cancel()
            await DeferredList(pending, consumeErrors=True)

    async def deliver(
        self,
        user_id: str,
        event: Mapping[str, Any] | None,
        actions: PushResult | Sequence[Any],
        counts: Mapping[str, int],
        *,
        sender_display_name: str | None = None,
        room_name: str | None = None,
        room_alias: str | None = None,
    ) -> None:
        """
        Notify every HTTP pusher of C{user_id} about C{event} (None: a
        counts-only badge update), with the tweaks of C{actions} (a
        L{PushResult} or the matched rule's action list) and C{counts}
        (C{unread}, C{missed_calls}; zeros are omitted). Nothing is sent
        for an event whose actions do not include C{notify}.
        """
        result = actions if isinstance(actions, PushResult) else result_for("", actions)
        if event is not None and not result.notify:
            return
        pushers = [p for p in await self.store.for_user(user_id) if p.get("kind") == "http"]
        if not pushers:
            return
        # Concurrently: a gateway being retried must not hold up the others.
        await gatherResults([
            Deferred.fromCoroutine(self._send(p, build_notification(
                p, event, result, counts, user_id, sender_display_name, room_name, room_alias,
            )))
            for p in pushers
        ], consumeErrors=True)

    async def _send(self, pusher: dict[str, Any], body: dict[str, Any]) -> None:
        url = pusher["data"]["url"]
        delay = self.backoff_initial_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self.http_client.post_json(
                    url, body, max_size=MAX_GATEWAY_RESPONSE_BYTES, timeout=self.request_timeout_s
                )
                code = response.code
                if 200 <= code < 300:
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = {}
                    rejected = answer.get("rejected") if isinstance(answer, dict) else None
                    if isinstance(rejected, list) and pusher["pushkey"] in rejected:
                        log.info(
                            "Push gateway rejected pushkey of {app_id}; removing the pusher of {user}",
                            app_id=pusher["app_id"], user=pusher["user_id"],
                        )
                        await self.store.delete(pusher["user_id"], pusher["app_id"], pusher["pushkey"])
                    return
                if 300 <= code < 400 or (400 <= code < 500 and code != 429):
                    # Redirects are never followed (conduit_tw/http/client.py).
                    log.warn("Push gateway {url} answered {code}; not retrying", url=url, code=code)
                    return
                reason = f"HTTP {code}"
            except DeniedDestinationError as e:
                # Treated like an unreachable gateway: retried (DNS may change), never connected.
                if attempt == 1:
                    log.warn("Push gateway {url} refused: {reason}", url=url, reason=str(e))
                reason = str(e)
            except Exception as e:  # connection refused, DNS, timeout, TLS, oversized ...
                reason = repr(e)
            if self._stopped:  # cancelled by stop(): no retry
                return
            if attempt == self.max_attempts:
                log.warn("Giving up pushing to {url} after {n} attempts: {reason}",
                         url=url, n=attempt, reason=reason)
                return
            log.debug("Push to {url} failed ({reason}); retrying in {delay}s",
                      url=url, reason=reason, delay=delay)
            await deferLater(self.reactor, delay, lambda: None)
            delay = min(delay * 2, self.backoff_max_s)


def check_gateway_url(url: Any) -> None:
    """400 M_INVALID_PARAM unless C{url} is an http(s) URL to the notify path."""
    if not isinstance(url, str):
        raise invalid_param("'data.url' is required for HTTP pushers.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a bad port
        url.encode("ascii")
    except ValueError:
        raise invalid_param("'data.url' is not a valid URL.") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise invalid_param("'data.url' must be an http(s) URL with a host.")
    if parts.path != NOTIFY_PATH:
        raise invalid_param(f"'data.url' must have the path {NOTIFY_PATH}.")


def build_notification(
    pusher: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    result: PushResult,
    counts: Mapping[str, int],
    user_id: str,
    sender_display_name: str | None = None,
    room_name: str | None = None,
    room_alias: str | None = None,
) -> dict[str, Any]:
    """The C{/notify} request body for one pusher (push-gateway-api)."""
    data = {k: v for k, v in pusher["data"].items() if k != "url"}
    device = {
        "app_id": pusher["app_id"],
        "pushkey": pusher["pushkey"],
        "pushkey_ts": int(pusher.get("pushkey_ts", 0)) // 1000,
        "data": data,
        "tweaks": dict(result.tweaks),
    }
    notification: dict[str, Any] = {"devices": [device]}
    shown_counts = {k: v for k, v in counts.items() if v}
    if shown_counts:
        notification["counts"] = shown_counts
    if event is None:
        return {"notification": notification}
    high = event.get("type") == "m.room.encrypted" or result.highlight or "sound" in result.tweaks
    notification["event_id"] = event.get("event_id")
    notification["room_id"] = event.get("room_id")
    notification["prio"] = "high" if high else "low"
    if data.get("format") == "event_id_only":
        return {"notification": notification}
    notification["type"] = event.get("type")
    notification["sender"] = event.get("sender")
    if sender_display_name is not None:
        notification["sender_display_name"] = sender_display_name
    if room_name is not None:
        notification["room_name"] = room_name
    if room_alias is not None:
        notification["room_alias"] = room_alias
    if event.get("type") == "m.room.member":
        notification["user_is_target"] = event.get("state_key") == user_id
    content = event.get("content")
    if isinstance(content, dict) and content:
        notification["content"] = content
    return {"notification": notification}
