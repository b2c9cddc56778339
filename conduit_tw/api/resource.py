"""
The twisted.web side: one leaf resource that routes every request, answers
JSON the Matrix way, and a Site/Request pair that enforces
C{max_request_size} while the body is being read.

Matrix conventions applied to every response (client-server-api "API
standards", "Web Browser Clients"): JSON errors C{{"errcode", "error"}},
CORS headers and OPTIONS pre-flight, HEAD like GET without a body, and
security headers. Upload routes stream their bodies to files
(C{body_spool}) and downloads are streamed from files (L{FileResponse}).
"""

from __future__ import annotations

import gzip
import io
import json
import time
from ipaddress import ip_address, ip_network
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import NoRangeStaticProducer

from conduit_tw.api.router import Router
from conduit_tw.errors import Codes, InteractiveAuthRequired, MatrixError, StorageUnavailable
from conduit_tw.logging import get_logger, is_enabled
from conduit_tw.util.encoded_json import encode_json

__all__ = ["encode_json"]  # re-exported: compact UTF-8 JSON for response bodies

log = get_logger("conduit_tw.api")

_COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Access-Control-Allow-Origin", b"*"),
    (b"Access-Control-Allow-Methods", b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
    (
        b"Access-Control-Allow-Headers",
        b"X-Requested-With, Content-Type, Authorization, Date",
    ),
    (b"Access-Control-Expose-Headers", b"Synapse-Trace-Id, Server"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Content-Security-Policy", b"default-src 'none'; frame-ancestors 'none'; sandbox"),
    (b"Referrer-Policy", b"no-referrer"),
)

#: JSON bodies shorter than this are sent as they are even when gzip is on.
GZIP_MIN_SIZE = 256


def accepts_gzip(request: server.Request) -> bool:
    """
    Whether C{Accept-Encoding} allows gzip: a C{gzip}, C{x-gzip} or C{*}
    coding whose quality is not 0 (RFC 9110, section 12.5.3).
    """
    raw = request.getHeader(b"accept-encoding")
    if not raw:
        return False
    header = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    for item in header.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class MatrixRequest(server.Request):
    """
    A request that stops buffering its body once it exceeds the site's
    C{max_request_size}, so an oversized upload costs no memory; the
    resource then answers 413 M_TOO_LARGE.
    """

    too_large = False
    #: An error decided while the body arrived (e.g. no disk space).
    body_error: MatrixError | None = None
    _received = 0
    _json_cache: Any = None
    #: Set by the resource: the answer may be gzip-compressed.
    gzip_ok = False

    def gotLength(self, length: int | None) -> None:
        """
        Refuse early when the declared length is already too big: answer
        413 M_TOO_LARGE at once and close the connection, without waiting
        for (or reading) the announced body.
        """
        limit = self.channel.site.max_request_size  # type: ignore[attr-defined]
        if length is not None and length > limit:
            self.too_large = True
            self.content = io.BytesIO()
            if self.channel.requests and self.channel.requests[0] is self:
                self._refuse_too_large()
            return
        spool = self._body_spool()
        if spool is not None:
            # The route streams its body to a file of its own (media
            # uploads): never a form to parse, never in memory.
            self._parsePOSTFormSubmission = False
            try:
                self.content = spool(length)
            except MatrixError as e:
                self.body_error = e
                self.content = io.BytesIO()
                if self.channel.requests and self.channel.requests[0] is self:
                    self._refuse_early(e)
            return
        super().gotLength(length)

    def _body_spool(self) -> "Callable[[int | None], Any] | None":
        """
        The C{body_spool} attribute of the handler this request goes to
        (set on upload handlers), found from the request line.
        """
        resource = getattr(self.channel.site, "resource", None)
        router = getattr(resource, "router", None)
        if router is None:
            return None
        method = getattr(self.channel, "_command", b"").decode("ascii", "replace").upper()
        if method not in ("POST", "PUT"):
            return None
        path = getattr(self.channel, "_path", b"").split(b"?", 1)[0]
        try:
            handler, _ = router.resolve(method, path.decode("utf-8"))
        except (MatrixError, UnicodeDecodeError):
            return None
        return getattr(handler, "body_spool", None)

    def _refuse_too_large(self) -> None:
        """Send the 413 before the body arrives; see L{_refuse_early}."""
        self._refuse_early(
            MatrixError(413, Codes.TOO_LARGE, "Request body is larger than allowed")
        )

    def _refuse_early(self, error: MatrixError) -> None:
        """
        Send C{error} before the body arrives; the connection cannot be
        reused (the unread body would follow), so it is closed once the
        response is written.
        """
        channel = self.channel
        # The request line is only copied here once the body is complete.
        self.method = getattr(channel, "_command", b"GET")
        self.uri = getattr(channel, "_path", b"/")
        self.path = self.uri.split(b"?", 1)[0]
        self.clientproto = getattr(channel, "_version", b"HTTP/1.1")
        # No "100 Continue" after the final response.
        self.requestHeaders.removeHeader(b"Expect")
        channel.persistent = False
        for name, value in _COMMON_HEADERS:
            self.setHeader(name, value)
        payload = _error_bytes(self, error)
        self.setHeader(b"Connection", b"close")
        self.setHeader(b"Content-Length", b"%d" % len(payload))
        self.write(payload)
        self.finish()

    def handleContentChunk(self, data: bytes) -> None:
        """Count bytes as they arrive and drop them past the limit."""
        if self.too_large:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_request_size:  # type: ignore[attr-defined]
            self.too_large = True
            self._drop_content()
            return
        super().handleContentChunk(data)
        if getattr(self.content, "out_of_space", False):
            self.body_error = MatrixError(
                413, Codes.TOO_LARGE, "Not enough free disk space for this upload"
            )
            self.too_large = True
            self._drop_content()

    def _drop_content(self) -> None:
        """Release what was received (a spooled upload's file is deleted)."""
        if self.content is not None:
            self.content.close()
        self.content = io.BytesIO()

    @property
    def client_ip(self) -> str:
        """
        The client's address: the peer, or the first untrusted hop of
        C{X-Forwarded-For} when the peer is a configured trusted proxy.
        """
        return self.site.client_ip(self)  # type: ignore[attr-defined]

    def json_body(self) -> Any:
        """
        The request body parsed as JSON.

        @raise MatrixError: 400 M_NOT_JSON if it is not valid JSON.
        """
        if self._json_cache is None:
            raw = self.content.read() if self.content is not None else b""
            self.content.seek(0)
            try:
                self._json_cache = json.loads(raw or b"{}", parse_constant=_refuse_constant)
            except (ValueError, UnicodeDecodeError):
                raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.") from None
        return self._json_cache

    def json_object(self) -> dict[str, Any]:
        """
        The body as a JSON object.

        @raise MatrixError: M_NOT_JSON for invalid JSON, M_BAD_JSON when the
            top level is not an object.
        """
        body = self.json_body()
        if not isinstance(body, dict):
            raise MatrixError(400, Codes.BAD_JSON, "Content must be a JSON object.")
        return body

    def arg(self, name: str, default: str | None = None) -> str | None:
        """One query-string argument, decoded as UTF-8."""
        values = self.args.get(name.encode("ascii"))
        if not values:
            return default
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise MatrixError(
                400, Codes.INVALID_PARAM, f"Query parameter {name!r} is not UTF-8"
            ) from None

    def arg_list(self, name: str) -> list[str]:
        """Every value of a repeated query-string argument."""
        return [v.decode("utf-8", "replace") for v in self.args.get(name.encode("ascii"), [])]

    def int_arg(
        self, name: str, default: int | None = None, minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer query argument, 400 M_INVALID_PARAM when malformed."""
        raw = self.arg(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise MatrixError(
                400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be an integer"
            ) from None
        if minimum is not None and value < minimum:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{name!r} must be >= {minimum}")
        if maximum is not None and value > maximum:
            value = maximum
        return value

    def bool_arg(self, name: str, default: bool = False) -> bool:
        """A C{true}/C{false} (or C{1}/C{0}) query argument, 400 M_INVALID_PARAM otherwise."""
        raw = self.arg(name)
        if raw is None:
            return default
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0"):
            return False
        raise MatrixError(
            400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be true or false"
        )


class MatrixSite(server.Site):
    """
    The HTTP site: L{MatrixRequest}s, the body size limit, trusted proxies,
    a count of in-flight requests for graceful shutdown, the open
    connections (closed at shutdown, keep-alive ones included), and one
    debug line per request instead of the access log.
    """

    requestFactory = MatrixRequest
    noisy = False

    def __init__(
        self,
        resource: Resource,
        max_request_size: int,
        trusted_proxies: Iterable[str] = (),
        tracker: "InFlightTracker | None" = None,
    ) -> None:
        super().__init__(resource)
        self.max_request_size = max_request_size
        self._proxies = [ip_network(p, strict=False) for p in trusted_proxies]
        self.tracker = tracker
        #: The open connections: channel -> its transport.
        self._channels: dict[Any, Any] = {}
        self._all_closed: list[Deferred[None]] = []
        #: Set at shutdown: new requests are answered 503 (L{MatrixResource}).
        self.closing = False

    def buildProtocol(self, addr: Any) -> Any:
        """An HTTP channel, remembered until its connection is lost."""
        channel = super().buildProtocol(addr)
        if channel is None:
            return None
        make, lost = channel.makeConnection, channel.connectionLost

        def makeConnection(transport: Any) -> None:
            self._channels[channel] = transport
            make(transport)

        def connectionLost(reason: Failure) -> None:
            self._channels.pop(channel, None)
            try:
                lost(reason)
            finally:
                if not self._channels:
                    waiters, self._all_closed = self._all_closed, []
                    for d in waiters:
                        d.callback(None)

        channel.makeConnection = makeConnection
        channel.connectionLost = connectionLost
        return channel

    def close_connections(self, reactor: Any, grace: float = 2.0) -> Deferred[None]:
        """
        Close every open connection (other servers keep idle keep-alive
        connections open otherwise) and fire once all are gone; the ones
        still open after C{grace} seconds are aborted.
        """
        self.closing = True
        d: Deferred[None] = Deferred()
        if not self._channels:
            d.callback(None)
            return d
        self._all_closed.append(d)
        for transport in list(self._channels.values()):
            transport.loseConnection()

        def abort() -> None:
            for transport in list(self._channels.values()):
                transport.abortConnection()
            if not d.called:
                self._all_closed.remove(d)
                d.callback(None)

        timer = reactor.callLater(grace, abort)
        d.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        return d

    def client_ip(self, request: server.Request) -> str:
        """See L{MatrixRequest.client_ip}."""
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or "unix"
        if not self._proxies:
            return host
        raw = request.getHeader(b"x-forwarded-for")
        if not raw:
            return host
        forwarded = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        hops = [h.strip() for h in forwarded.split(",") if h.strip()] + [host]
        # Walk from the nearest hop outwards, skipping trusted proxies.
        for hop in reversed(hops):
            try:
                addr = ip_address(hop)
            except ValueError:
                return hop
            if not any(addr in net for net in self._proxies):
                return hop
        return hops[0]

    def log(self, request: server.Request) -> None:
        """One debug line per request (not an access log file)."""
        if is_enabled("conduit_tw.api", LogLevel.debug):
            log.debug(
                "{ip} {method} {path} -> {code}",
                ip=self.client_ip(request),
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "replace"),
                code=request.code,
            )


class InFlightTracker:
    """Counts requests being handled so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: list[Deferred[None]] = []

    def started(self) -> None:
        """A request began."""
        self.count += 1

    def finished(self, _: object = None) -> None:
        """A request ended (answered or connection lost)."""
        self.count -= 1
        if self.count == 0:
            waiters, self._idle = self._idle, []
            for d in waiters:
                d.callback(None)

    def wait_idle(self) -> Deferred[None]:
        """A Deferred that fires when no request is in flight."""
        d: Deferred[None] = Deferred()
        if self.count == 0:
            d.callback(None)
        else:
            self._idle.append(d)
        return d


class MatrixResource(Resource):
    """The root resource: every path goes through the L{Router}."""

    isLeaf = True

    def __init__(self, router: Router, clock: Any = None, gzip_compression: bool = False) -> None:
        super().__init__()
        self.router = router
        self._clock = clock
        #: Compress JSON answers for clients that accept gzip (C{gzip_compression}).
        self.gzip_compression = gzip_compression
        #: Requests that arrived while the server was starting (see L{hold}).
        self._held: list[MatrixRequest] | None = None

    def hold(self) -> None:
        """
        Keep requests waiting until L{release}: twistd binds the listening
        sockets before the server has loaded its state and mounted its
        routes, and a client asking then must get its real answer, not
        M_UNRECOGNIZED.
        """
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Serve the requests held since L{hold}, in arrival order."""
        held, self._held = self._held or [], None
        for request in held:
            if request.finished or getattr(request, "_disconnected", False):
                continue
            result = self.render(request)
            if result is not NOT_DONE_YET:
                request.write(result)
                request.finish()

    def render(self, request: MatrixRequest) -> Any:  # type: ignore[override]
        """Route, run the handler, answer JSON; never leaks a traceback."""
        if self._held is not None:
            self._held.append(request)
            return NOT_DONE_YET
        for name, value in _COMMON_HEADERS:
            request.setHeader(name, value)
        method = request.method.decode("ascii", "replace")
        if method == "OPTIONS":
            request.setResponseCode(204)
            return b""
        if request.too_large or request.body_error is not None:
            return _error_bytes(
                request,
                request.body_error
                or MatrixError(413, Codes.TOO_LARGE, "Request body is larger than allowed"),
            )
        try:
            handler, args = self.router.resolve(method, request.path.decode("utf-8"))
        except MatrixError as e:
            return _error_bytes(request, e)
        except UnicodeDecodeError:
            return _error_bytes(request, MatrixError(400, Codes.UNRECOGNIZED, "Bad path"))
        if getattr(request.site, "closing", False):
            # Shutting down: nothing may reach the handlers (and the
            # database) any more; a federation sender retries a 503.
            request.setHeader(b"connection", b"close")
            return _error_bytes(request, MatrixError(503, Codes.UNKNOWN, "The server is shutting down"))
        tracker = request.site.tracker  # type: ignore[attr-defined]
        if tracker is not None:
            tracker.started()
        if self.gzip_compression:
            request.gzip_ok = accepts_gzip(request)
        d = Deferred.fromCoroutine(handler(request, **args))
        finished = request.notifyFinish()
        finished.addErrback(lambda f: d.cancel())
        if tracker is not None:
            finished.addBoth(tracker.finished)
        d.addCallbacks(_respond, _respond_error, callbackArgs=(request,), errbackArgs=(request,))
        return NOT_DONE_YET


@dataclass
class FileResponse:
    """
    A handler result streamed from a file (media downloads): no JSON, no
    gzip, C{Content-Length} from C{size}; the file is closed at the end.
    """

    file: BinaryIO
    size: int
    headers: dict[bytes, bytes]
    code: int = 200


def _send_file(result: FileResponse, request: MatrixRequest) -> None:
    request.setResponseCode(result.code)
    for name, value in result.headers.items():
        request.setHeader(name, value)
    request.setHeader(b"Content-Length", b"%d" % result.size)
    if request.method == b"HEAD":
        result.file.close()
        request.finish()
        return
    NoRangeStaticProducer(request, result.file).start()


def _respond(result: Any, request: MatrixRequest) -> None:
    if request._disconnected or request.finished:
        if isinstance(result, FileResponse):
            result.file.close()
        return
    if isinstance(result, FileResponse):
        _send_file(result, request)
        return
    if isinstance(result, tuple):
        code, body = result
    else:
        code, body = 200, result
    if isinstance(body, bytes):
        payload = body
    else:
        payload = encode_json(body)
        request.setHeader(b"Content-Type", b"application/json")
    if request.gzip_ok:
        payload = _maybe_gzip(request, payload)
    request.setResponseCode(code)
    request.setHeader(b"Content-Length", b"%d" % len(payload))
    request.write(payload)
    request.finish()


def _maybe_gzip(request: MatrixRequest, payload: bytes) -> bytes:
    """Gzip a JSON C{payload} worth compressing, setting the headers for it."""
    request.setHeader(b"Vary", b"Accept-Encoding")
    content_type = request.responseHeaders.getRawHeaders(b"content-type", [b""])[0]
    if len(payload) < GZIP_MIN_SIZE or not content_type.startswith(b"application/json"):
        return payload
    request.setHeader(b"Content-Encoding", b"gzip")
    return gzip.compress(payload, compresslevel=6)


def _respond_error(failure: Failure, request: MatrixRequest) -> None:
    if request._disconnected or request.finished:
        if not failure.check(CancelledError):
            log.failure("Error after the client went away", failure)
        return
    exc = failure.value
    if isinstance(exc, InteractiveAuthRequired):
        _respond((401, exc.body), request)
        return
    if isinstance(exc, StorageUnavailable):
        # One line, no traceback: the database is down or restarting.
        log.warn(
            "{method} {path}: {error}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            error=str(exc),
        )
        exc = MatrixError(
            503, Codes.UNKNOWN, "The database is unavailable; try again",
            headers={"Retry-After": "1"},
        )
    elif not isinstance(exc, MatrixError):
        log.failure(
            "Unhandled error in {method} {path}",
            failure,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
        )
        exc = MatrixError(500, Codes.UNKNOWN, "Internal server error")
    payload = _error_bytes(request, exc)
    request.setHeader(b"Content-Length", b"%d" % len(payload))
    request.write(payload)
    request.finish()


def _error_bytes(request: MatrixRequest, error: MatrixError) -> bytes:
    request.setResponseCode(error.code)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in error.headers.items():
        request.setHeader(name, value)
    return encode_json(error.to_json())


def now_ms() -> int:
    """Wall-clock time in milliseconds."""
    return int(time.time() * 1000)
