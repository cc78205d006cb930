"""The ASGI 3 `http` adapter: one HTTPStream per request, its scope, `receive` and `send`.

It speaks ASGI messages on one side and calls a small `StreamSink` (the connection) on the other;
it never touches h2 objects, so the protocol core stays behind the transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from time import monotonic
from typing import Any, Protocol
from urllib.parse import quote, unquote

from osmium.protocol.events import ErrorCode, Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

error_log = logging.getLogger("osmium.error")
access_log = logging.getLogger("osmium.access")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
# RFC 9113 §8.2.2: connection-specific fields must not appear in HTTP/2 responses.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
INTERNAL_ERROR_BODY = b"Internal Server Error"
#: `server` field of every response whose app sent none (unless --no-server-header).
SERVER_FIELD = (b"server", b"osmium")
#: The ASGI extensions a request is offered, by protocol; each scope gets its own copy of the
#: table (the empty option dicts in it are shared: the spec defines none, nothing writes them).
HTTP1_EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.trailers": {},
    "http.response.early_hint": {},
}
HTTP2_EXTENSIONS: dict[str, dict[str, Any]] = {**HTTP1_EXTENSIONS, "http.response.push": {}}
#: What a path keeps unencoded when it becomes a pushed request's :path (RFC 3986 §3.3 pchar).
PATH_SAFE = "/:@!$&'()*+,;="
_STATUS_BYTES = {status: str(status).encode() for status in range(100, 600)}
#: The fields of an access line: --access-log-format's names and the JSON keys (README: Logs).
ACCESS_FIELDS = (
    "client", "method", "target", "path", "query", "protocol", "status", "reason", "bytes",
    "duration_ms", "stream",
)  # fmt: skip
_REASONS = {status.value: status.phrase for status in HTTPStatus}
#: Whether requests are timed for their access line: settled once at start-up, after logging is
#: configured (`time_requests`), so that a request with the access log off asks nothing more.
_timed = False


class ResponseFields:
    """The fields the server adds to every response that does not name them itself: `date`,
    `server` (unless --no-server-header) and the --header defaults.

    Built once per worker: a response costs one set lookup per field the app sent, and, when it
    named none of these, the date and one list extend.
    """

    __slots__ = ("date", "defaults", "names")

    def __init__(self, date: Callable[[], bytes], defaults: Headers) -> None:
        #: The current Date value (formatted at most once a second by its owner).
        self.date = date
        self.defaults = defaults
        #: The names a response's own fields are checked against: the connection-specific ones
        #: (dropped) and the server's (the app's own wins).
        self.names = CONNECTION_SPECIFIC | {b"date"} | {name for name, _ in defaults}

    def add_missing(self, headers: Headers, named: list[bytes]) -> None:
        """Add to `headers` the server's fields but those the app `named`."""
        if b"date" not in named:
            headers.append((b"date", self.date()))
        headers += [(name, value) for name, value in self.defaults if name not in named]

    def complete(self, headers: Headers) -> Headers:
        """`headers` (lower-case names, pseudo-fields first) and after them the server's fields
        they do not name: for the answers that bypass HTTPStream (WebSocket handshakes and
        denials, protocol refusals), so that they too name the server, once."""
        completed = list(headers)
        self.add_missing(completed, [name for name, _ in headers if name in self.names])
        return completed


def plain_response(status: int, body: bytes, fields: ResponseFields) -> Headers:
    """The head of a short text/plain response the server makes itself (500, 503, 413)."""
    headers = [
        (b":status", _STATUS_BYTES[status]),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"date", fields.date()),
    ]
    headers += fields.defaults
    return headers


class Milliseconds(float):
    """A duration that reads with two decimals ("0.41", "12.00") and stays a number in JSON."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self:.2f}"


class _Absent:
    """A field an access line has no value for (no response, no stream on HTTP/1.1): "-" in
    text whatever the template's format spec, null in JSON."""

    __slots__ = ()

    def __format__(self, spec: str) -> str:
        return "-"

    def __repr__(self) -> str:
        return "-"


ABSENT = _Absent()


def request_line(method: str, scope: Scope, stream_id: int | None) -> str:
    """`"GET /path HTTP/2" stream 5` for log lines (the stream id only where there are many)."""
    target = scope["raw_path"].decode("ascii", "backslashreplace")
    version = scope["http_version"]
    line = f'"{method} {target} HTTP/{version}"'
    return f"{line} stream {stream_id}" if version == "2" and stream_id is not None else line


def access_fields(
    scope: Scope, method: str, status: int | None, sent: int, seconds: float, stream_id: int | None
) -> dict[str, Any]:
    """An access line's fields (ACCESS_FIELDS), from the scope the app saw (its client, after
    --proxy-headers) and how the exchange went: `sent` body bytes in `seconds`."""
    client = scope["client"]
    if client is None:
        peer = "-"
    elif ":" in client[0]:
        peer = f"[{client[0]}]:{client[1]}"
    else:
        peer = f"{client[0]}:{client[1]}"
    path = scope["raw_path"].decode("ascii", "backslashreplace")
    query = scope["query_string"].decode("ascii", "backslashreplace")
    version = scope["http_version"]
    return {
        "client": peer,
        "method": method,
        "target": f"{path}?{query}" if query else path,
        "path": path,
        "query": query,
        "protocol": f"HTTP/{version}",
        "status": ABSENT if status is None else status,
        "reason": _REASONS.get(status, ""),  # type: ignore[arg-type]
        "bytes": sent,
        "duration_ms": Milliseconds(round(seconds * 1000, 2)),
        "stream": stream_id if version == "2" and stream_id is not None else ABSENT,
    }


def time_requests(on: bool) -> None:
    """Time each request from its head on (for its access line), or not: osmium.logs says which
    once the access logger's level is known."""
    global _timed
    _timed = on


def log_access(
    scope: Scope, method: str, status: int | None, sent: int, started: float, stream_id: int | None
) -> None:
    """One access line, for an exchange that began at `started` (time.monotonic()); the fields
    are the record's message, which osmium.logs renders with --access-log-format."""
    access_log.info(access_fields(scope, method, status, sent, monotonic() - started, stream_id))


class ClientDisconnected(OSError):
    """`send` after the client went away (ASGI spec 2.4: a server-specific OSError)."""


def _gone(stream_id: int) -> ClientDisconnected:
    return ClientDisconnected(f"stream {stream_id}: the client went away")


class StreamSink(Protocol):
    """What a stream needs from its connection: queue response parts, acknowledge request bytes."""

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None: ...
    def queue_body(
        self, stream_id: int, data: bytes, end_stream: bool, headers: Headers | None = None
    ) -> bool:
        """Queue body bytes, after `headers` (the response's head) when it has not gone out:
        one call for the common response. Returns whether the stream may queue more now; if
        not, the sender awaits `wait_for_room` (no coroutine a send, when it need not wait)."""

    async def wait_for_room(self, stream_id: int) -> None: ...
    def end_stream(self, stream_id: int) -> None: ...
    def reset_stream(self, stream_id: int, error_code: int) -> None: ...
    def acknowledge(self, stream_id: int, size: int) -> None: ...
    def response_fields(self) -> ResponseFields: ...
    def send_informational(self, stream_id: int, headers: Headers) -> None: ...
    def push(self, stream_id: int, request_headers: Headers) -> None: ...


def build_scope(
    headers: Headers,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
    state: dict[str, Any] | None,
    http_version: str = "2",
    extensions: dict[str, dict[str, Any]] = HTTP2_EXTENSIONS,
    known: dict | None = None,
) -> Scope:
    """The `http` scope for one validated request (HTTP/2 pseudo-headers plus fields).

    `known`: the Request's memo (events.Request): what the scope takes from the header list
    alone is kept there, for the next equal list."""
    parts = known.get("scope") if known else None
    if parts is None:
        parts = _scope_parts(headers)
        if known is not None:
            known["scope"] = parts
    method, path, raw_path, query_string, fields = parts
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": "",
        "headers": list(fields),
        "client": client,
        "server": server,
        "extensions": extensions.copy(),
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def _scope_parts(headers: Headers) -> tuple[str, str, bytes, bytes, tuple]:
    """What a scope takes from a request's header list: method, path (decoded), raw path,
    query string, and the fields without pseudo-headers (`host` first from `:authority`)."""
    method = path = b""
    authority = None
    has_host = False
    fields: Headers = []
    for name, value in headers:
        if name[0] != 58:  # b":"
            fields.append((name, value))
            if name == b"host":
                has_host = True
        elif name == b":method":
            method = value
        elif name == b":path":
            path = value
        elif name == b":authority":
            authority = value
    if authority is not None and not has_host:
        fields.insert(0, (b"host", authority))
    raw_path, _, query_string = path.partition(b"?")
    decoded_path = raw_path.decode("ascii", "replace")
    decoded_path = unquote(decoded_path) if "%" in decoded_path else decoded_path
    return method.decode("ascii"), decoded_path, raw_path, query_string, tuple(fields)


class HTTPStream:
    """One request/response exchange as the app sees it: ordered messages with backpressure."""

    __slots__ = (
        "_body_chunks",
        "_body_delivered",
        "_body_finished",
        "_closed",
        "_expects_trailers",
        "_is_head",
        "_receive_waiter",
        "_response_headers",
        "_sink",
        "_unacknowledged",
        "bytes_in",
        "bytes_out",
        "client_gone",
        "headers_sent",
        "request_complete",
        "scope",
        "started_at",
        "status",
        "stream_id",
    )

    def __init__(
        self, sink: StreamSink, stream_id: int, scope: Scope, request_complete: bool = False
    ) -> None:
        """`request_complete`: the request came whole with its head (it has no body)."""
        self._sink = sink
        self.stream_id = stream_id
        self.scope = scope
        self._is_head = scope["method"] == "HEAD"
        self._body_chunks: deque[tuple[bytes, int]] = deque()
        self._unacknowledged = 0
        #: The request's body (and trailers) came whole: the client sends no more.
        self.request_complete = request_complete
        self._body_delivered = False
        #: The exchange is over for the app: response finished, app returned, or client gone.
        self._closed = False
        #: The client reset the stream or the connection is gone: every send raises.
        self.client_gone = False
        self._receive_waiter: asyncio.Future[None] | None = None
        self.status: int | None = None
        self._response_headers: Headers = []
        self._expects_trailers = False
        self._body_finished = False
        self.headers_sent = False
        #: Body bytes each way (admin plane, access line), and when the request's head arrived
        #: (0.0 unless the access log or the admin plane asks).
        self.bytes_in = 0
        self.bytes_out = 0
        self.started_at = monotonic() if _timed else 0.0

    # -- fed by the connection -------------------------------------------------------------------

    def feed_body(self, data: bytes, flow_controlled_length: int) -> None:
        if self._closed:
            self._sink.acknowledge(self.stream_id, flow_controlled_length)
            return
        self._body_chunks.append((data, flow_controlled_length))
        self.bytes_in += len(data)
        self._unacknowledged += flow_controlled_length
        self._wake_receiver()

    def feed_end(self) -> None:
        self.request_complete = True
        if self._receive_waiter is not None:
            self._wake_receiver()

    def disconnect(self) -> None:
        """The client went away (reset, GOAWAY with an error, connection lost): from now on every
        `send` raises ClientDisconnected and `receive` returns http.disconnect."""
        self.client_gone = True
        self.close()

    def close(self) -> None:
        """The exchange is over (response finished, or the app returned): the app reads no more."""
        if not self._closed:
            self._closed = True
            if self._unacknowledged or self._body_chunks:
                self.release_unconsumed()
            if self._receive_waiter is not None:
                self._wake_receiver()

    def release_unconsumed(self) -> None:
        """Return window for body bytes the app will never read, so the connection keeps flowing."""
        if self._unacknowledged:
            self._sink.acknowledge(self.stream_id, self._unacknowledged)
            self._unacknowledged = 0
        self._body_chunks.clear()

    @property
    def response_finished(self) -> bool:
        """The app sent a whole response, or the client went away before it could."""
        return self._closed

    @property
    def request_line(self) -> str:
        """`"GET /path HTTP/2" stream 5`: which request a log line is about."""
        return request_line(self.scope["method"], self.scope, self.stream_id)

    def _wake_receiver(self) -> None:
        waiter = self._receive_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the ASGI callables ----------------------------------------------------------------------

    async def receive(self) -> Message:
        while True:
            if self._closed:
                # Whatever body was still unread has been dropped: no partial or empty body now.
                return {"type": "http.disconnect"}
            if self._body_chunks:
                data, size = self._body_chunks.popleft()
                self._unacknowledged -= size
                self._sink.acknowledge(self.stream_id, size)
                more_body = bool(self._body_chunks) or not self.request_complete
                self._body_delivered = not more_body
                return {"type": "http.request", "body": data, "more_body": more_body}
            if self.request_complete and not self._body_delivered:
                self._body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self._receive_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._receive_waiter
            finally:
                self._receive_waiter = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            await self._send_body(message.get("body", b""), message.get("more_body", False))
        elif kind == "http.response.start":
            self._start_response(message)
        elif kind == "http.response.trailers":
            self._send_trailers(message)
        elif kind == "http.response.early_hint":
            self._send_early_hint(message)
        elif kind == "http.response.push":
            self._push(message)
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} on an http stream")

    def _start_response(self, message: Message) -> None:
        if self.status is not None:
            raise RuntimeError("http.response.start sent twice")
        if self.client_gone:
            raise _gone(self.stream_id)
        status = message["status"]
        status_bytes = _STATUS_BYTES.get(status)
        if status_bytes is None:
            raise RuntimeError(f"invalid HTTP status {status!r}")
        self.status = status
        self._expects_trailers = bool(message.get("trailers", False))
        headers: Headers = [(b":status", status_bytes)]
        fields = self._sink.response_fields()
        names = fields.names
        named: list[bytes] | None = None  # the server's field names the app sent itself
        # bytes() only for what is not bytes already (a bytearray, say): a call to a type is
        # not free, and a response has a few fields.
        for name, value in message.get("headers", ()):
            name = (name if type(name) is bytes else bytes(name)).lower()
            if name in names:
                if name in CONNECTION_SPECIFIC:
                    continue
                if named is None:
                    named = [name]
                else:
                    named.append(name)
            headers.append((name, value if type(value) is bytes else bytes(value)))
        if named is None:
            headers.append((b"date", fields.date()))
            headers += fields.defaults
        else:
            fields.add_missing(headers, named)
        self._response_headers = headers

    async def _send_body(self, body: bytes, more_body: bool) -> None:
        if self.status is None:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self.client_gone:
            raise _gone(self.stream_id)
        if self._is_head:
            # RFC 9110 §9.3.2: same headers as GET, no content; the app's body is dropped.
            self._body_finished = not more_body
            if not self.headers_sent:
                self.headers_sent = True
                self._sink.send_headers(self.stream_id, self._response_headers, True)
                self._finish_response()
            return
        if self._body_finished:
            raise RuntimeError("http.response.body sent after the response body ended")
        ends_stream = not more_body and not self._expects_trailers
        if not more_body:
            self._body_finished = True
        head = None
        if not self.headers_sent:
            self.headers_sent = True
            head = self._response_headers
            if not body:
                self._sink.send_headers(self.stream_id, head, ends_stream)
                if ends_stream:
                    self._finish_response()
                return
        if body:
            self.bytes_out += len(body)
            if not self._sink.queue_body(self.stream_id, body, ends_stream, head):
                await self._sink.wait_for_room(self.stream_id)
        elif ends_stream:
            self._sink.end_stream(self.stream_id)
        if ends_stream:
            self._finish_response()

    def _send_trailers(self, message: Message) -> None:
        if not self._expects_trailers or not self._body_finished:
            raise RuntimeError("http.response.trailers needs trailers=True and a finished body")
        if self.client_gone:
            raise _gone(self.stream_id)
        if self._is_head:
            return
        if self._closed:
            raise RuntimeError("http.response.trailers sent twice")
        trailers = [(bytes(name).lower(), bytes(value)) for name, value in message["headers"]]
        self._sink.send_headers(self.stream_id, trailers, True)
        self._finish_response()

    def _send_early_hint(self, message: Message) -> None:
        """103 Early Hints (RFC 8297), one `link` field per link, ahead of the response."""
        if self.status is not None:
            raise RuntimeError("http.response.early_hint sent after http.response.start")
        if self.client_gone:
            raise _gone(self.stream_id)
        hints: Headers = [(b":status", b"103")]
        hints += [(b"link", bytes(link)) for link in message["links"]]
        if len(hints) > 1:
            self._sink.send_informational(self.stream_id, hints)

    def _push(self, message: Message) -> None:
        """Server push: the connection promises a GET of `path` with `headers` (under this
        request's scheme and authority) and serves it as a request of its own. Ignored where
        no push can be made: HTTP/1.1, a client that disabled push, a finished response."""
        if self.client_gone:
            raise _gone(self.stream_id)
        path = message["path"]
        if not path.startswith("/"):
            raise RuntimeError(f"http.response.push path {path!r} does not start with '/'")
        authority = next((v for name, v in self.scope["headers"] if name == b"host"), None)
        if self._closed or authority is None:
            return
        request: Headers = [
            (b":method", b"GET"),
            (b":scheme", self.scope["scheme"].encode()),
            (b":authority", authority),
            (b":path", quote(path, safe=PATH_SAFE).encode()),
        ]
        for name, value in message.get("headers", ()):
            name = bytes(name).lower()
            if name[:1] != b":" and name not in CONNECTION_SPECIFIC:
                request.append((name, bytes(value)))
        self._sink.push(self.stream_id, request)

    def _finish_response(self) -> None:
        """The response is complete: for the app, that ends the exchange (ASGI http.disconnect)."""
        self.close()

    # -- after the app returns -------------------------------------------------------------------

    async def finish_after_app(self, app_raised: bool) -> None:
        """Make the wire consistent whatever the app did: 500, reset, or a clean end."""
        if self._closed:
            return
        if not self.headers_sent:
            if not app_raised:
                error_log.error("%s: application returned without a response", self.request_line)
            await self._send_internal_error()
        else:
            if not app_raised:
                error_log.error("%s: application returned mid-response", self.request_line)
            self._sink.reset_stream(self.stream_id, ErrorCode.INTERNAL_ERROR)
            self.close()

    async def _send_internal_error(self) -> None:
        self.headers_sent = True
        self.status = 500
        headers = plain_response(500, INTERNAL_ERROR_BODY, self._sink.response_fields())
        self._sink.send_headers(self.stream_id, headers, self._is_head)
        self._finish_response()
        if not self._is_head:
            self.bytes_out += len(INTERNAL_ERROR_BODY)
            if not self._sink.queue_body(self.stream_id, INTERNAL_ERROR_BODY, True):
                await self._sink.wait_for_room(self.stream_id)


async def run_http(app: ASGIApp, stream: HTTPStream) -> bool:
    """Run the app for one stream; a failure becomes a 500 or RST_STREAM, logged with the request,
    and the exchange one access line (when the access log is on: `started_at` is set then).

    Returns False when the app failed (raised, or returned without a complete response); an app
    that stops because its client went away has not failed.
    """
    failed = gone = False
    try:
        await app(stream.scope, stream.receive, stream.send)
    except Exception as exc:
        # Frameworks wrap our ClientDisconnected in their own exception (Starlette's
        # ClientDisconnect), and an app may fail otherwise once its peer is gone: normal traffic.
        if stream.client_gone or isinstance(exc, ClientDisconnected):
            error_log.info("%s: client went away (%s)", stream.request_line, type(exc).__name__)
            gone = True
        else:
            # Only a flag is kept: holding `exc` here would tie this frame, the app's frames and
            # what they hold (a streaming response's generator) in a cycle that only gc breaks.
            failed = True
            error_log.exception("%s: exception in ASGI application", stream.request_line)
    succeeded = gone or (not failed and stream.response_finished)
    if not gone:
        try:  # noqa: SIM105 (contextlib.suppress would cost a context manager per request)
            await stream.finish_after_app(failed)
        except ClientDisconnected:
            pass  # the client left while the server ended the exchange: nothing is owed now
    if stream.started_at and access_log.isEnabledFor(logging.INFO):
        scope = stream.scope
        log_access(
            scope, scope["method"], stream.status, stream.bytes_out, stream.started_at,
            stream.stream_id,
        )  # fmt: skip
    return succeeded
