"""The ASGI `websocket` adapter: one session per WebSocket, its scope, `receive` and `send`.

Like HTTPStream it speaks ASGI messages on one side and calls a small sink (the connection) on
the other, never touching the framing or h11. Until the app accepts, the session can still deny
with an HTTP response (`websocket.http.response.*`, or 403 for a close before accept).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import Any, Protocol

from osmium.asgi import (
    ASGIApp,
    ClientDisconnected,
    Message,
    Scope,
    access_log,
    build_scope,
    log_access,
    request_line,
)
from osmium.protocol.events import Headers
from osmium.protocol.ws import INTERNAL_ERROR, NORMAL_CLOSURE, subprotocols

error_log = logging.getLogger("osmium.error")

WEBSOCKET_EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}


class WebSocketSink(Protocol):
    """What a session needs from its connection."""

    def accept(self, subprotocol: str | None, headers: Headers) -> None: ...
    def deny(self, status: int, headers: Headers, body: bytes, finished: bool) -> None: ...
    async def send_message(self, data: str | bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def consumed(self, size: int) -> None: ...


def handshake_method(scope: Scope) -> str:
    """The opening handshake's method: GET (RFC 6455), or CONNECT on HTTP/2 (RFC 8441)."""
    return "CONNECT" if scope["http_version"] == "2" else "GET"


def describe(scope: Scope, stream_id: int | None, peer: str) -> str:
    """`WebSocket "GET /chat HTTP/1.1" from 10.0.0.7` (HTTP/2: `... HTTP/2" stream 3 from ...`):
    which WebSocket a log line is about."""
    return f"WebSocket {request_line(handshake_method(scope), scope, stream_id)} from {peer}"


def websocket_scope(
    headers: Headers,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    state: dict[str, Any] | None,
    http_version: str,
    tls: dict[str, Any] | None = None,
) -> Scope:
    """The `websocket` scope; `tls`: the connection's ASGI `tls` extension, over TLS."""
    extensions = WEBSOCKET_EXTENSIONS if tls is None else {**WEBSOCKET_EXTENSIONS, "tls": tls}
    scope = build_scope(headers, scheme, client, server, state, http_version, extensions)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scheme == "https" else "ws"
    scope["subprotocols"] = subprotocols(headers)
    del scope["method"]
    return scope


class WebSocketSession:
    """One WebSocket as the app sees it: connect, messages in order, then one disconnect."""

    def __init__(self, sink: WebSocketSink, scope: Scope) -> None:
        self._sink = sink
        self.scope = scope
        self._connect_sent = False
        #: handshake -> accepted | denied; closed once either side has closed.
        self.state = "handshake"
        self._response_started = False
        self._incoming: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        #: The peer's close code once the WebSocket is over for the app.
        self.disconnect_code: int | None = None
        self._disconnect_reason = ""
        #: For the access line: the handshake's answer (101 or HTTP/2's 200, or the denial's
        #: status), and the bytes sent: message payloads (UTF-8 for text) or the denial's body.
        self.status: int | None = None
        self.bytes_out = 0

    # -- fed by the connection -------------------------------------------------------------------

    def feed(self, data: str | bytes) -> None:
        self._incoming.append(data)
        self._wake()

    def disconnect(self, code: int, reason: str = "") -> None:
        if self.disconnect_code is None:
            self.disconnect_code = code
            self._disconnect_reason = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def has_unread(self) -> bool:
        """Messages are waiting for the app's `receive`."""
        return bool(self._incoming)

    # -- the ASGI callables ----------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self._incoming:
                data = self._incoming.popleft()
                self._sink.consumed(len(data))
                if isinstance(data, str):
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            if self.disconnect_code is not None:
                return {
                    "type": "websocket.disconnect",
                    "code": self.disconnect_code,
                    "reason": self._disconnect_reason,
                }
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            await self._send_data(message)
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._close(message.get("code", NORMAL_CLOSURE), message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            self._start_denial(message)
        elif kind == "websocket.http.response.body":
            self._deny_body(message)
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} on a websocket")

    def _accept(self, message: Message) -> None:
        if self.state != "handshake" or self._response_started:
            raise RuntimeError("websocket.accept after the handshake was answered")
        headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        self._sink.accept(message.get("subprotocol"), headers)
        self.state = "accepted"
        self.status = 200 if self.scope["http_version"] == "2" else 101

    async def _send_data(self, message: Message) -> None:
        if self.state != "accepted":
            raise RuntimeError("websocket.send before websocket.accept or after close")
        if self.disconnect_code is not None:
            raise ClientDisconnected(f"websocket closed ({self.disconnect_code})")
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
        if data is None:
            raise RuntimeError("websocket.send without text or bytes")
        if isinstance(data, str):
            self.bytes_out += len(data) if data.isascii() else len(data.encode())
        else:
            self.bytes_out += len(data)
        await self._sink.send_message(data)

    def _close(self, code: int, reason: str) -> None:
        if self.state == "handshake" and not self._response_started:
            self._deny(403, [], b"", True)  # ASGI: a close before accept is a 403
        elif self.state == "accepted":
            self.state = "closed"
            self._sink.close(code, reason)

    def _start_denial(self, message: Message) -> None:
        if self.state != "handshake" or self._response_started:
            raise RuntimeError("websocket.http.response.start after the handshake was answered")
        self._response_started = True
        self.status = int(message["status"])
        self._denial = (
            self.status,
            [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())],
        )

    def _deny_body(self, message: Message) -> None:
        if not self._response_started or self.state not in ("handshake", "denying"):
            raise RuntimeError("websocket.http.response.body without its start")
        status, headers = self._denial
        finished = not message.get("more_body", False)
        self.state = "denying"
        body = bytes(message.get("body", b""))
        self.bytes_out += len(body)
        self._sink.deny(status, headers, body, finished)
        if finished:
            self.state = "denied"

    def _deny(self, status: int, headers: Headers, body: bytes, finished: bool) -> None:
        self.state = "denied"
        self.status = status
        self._sink.deny(status, headers, body, finished)

    # -- after the app returns -------------------------------------------------------------------

    def finish(self, app_raised: bool) -> None:
        """Whatever the app left undone: 500/403 before accept, a Close (1011/1000) after."""
        if self.state == "handshake":
            self._deny(500 if app_raised else 403, [], b"", True)
        elif self.state == "denying":
            self._sink.deny(0, [], b"", True)
            self.state = "denied"
        elif self.state == "accepted":
            self.state = "closed"
            self._sink.close(INTERNAL_ERROR if app_raised else NORMAL_CLOSURE, "")


async def run_websocket(
    app: ASGIApp, session: WebSocketSession, peer: str, stream_id: int | None = None
) -> bool:
    """Run the app for one WebSocket (from `peer`, on HTTP/2 stream `stream_id`); False when it
    raised, logged naming the WebSocket. Its access line is written when it ends."""
    started = monotonic() if access_log.isEnabledFor(logging.INFO) else 0.0
    scope = session.scope
    raised = False
    try:
        await app(scope, session.receive, session.send)
    except Exception as exc:
        if session.disconnect_code is None and not isinstance(exc, ClientDisconnected):
            raised = True
            error_log.exception(
                "%s: exception in ASGI application", describe(scope, stream_id, peer)
            )
    session.finish(raised)
    if started and access_log.isEnabledFor(logging.INFO):
        method = handshake_method(scope)
        log_access(scope, method, session.status, session.bytes_out, started, stream_id)
    return not raised
