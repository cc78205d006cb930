"""RFC 8441: a WebSocket on one HTTP/2 stream (extended CONNECT with `:protocol websocket`).

Its frames travel in the stream's DATA under HTTP/2 flow control: what the app has not taken is
not acknowledged (the peer's window closes), and the app's sends wait for room like a response
body's. The WebSocket's end is the stream's: our Close goes out with END_STREAM; a failed
WebSocket (a forbidden frame) is reset once its Close is out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from osmium.asgi import CONNECTION_SPECIFIC
from osmium.protocol.events import ErrorCode, Headers
from osmium.protocol.ws import (
    ABNORMAL_CLOSURE,
    GOING_AWAY,
    INTERNAL_ERROR,
    Closed,
    Message,
    PongReceived,
    WebSocket,
    accept,
)
from osmium.transport.ws_keepalive import KeepAlive
from osmium.websocket import WebSocketSession, describe

if TYPE_CHECKING:
    from osmium.transport.h2 import H2ServerProtocol

log = logging.getLogger("osmium.connection")

#: Fields of an HTTP/1.1 101 that have no place in HTTP/2's 200 (RFC 8441 §5), nor in any
#: HTTP/2 response (RFC 9113 §8.2.2).
HTTP1_ONLY = CONNECTION_SPECIFIC | {b"sec-websocket-accept"}


class H2WebSocket:
    """The stream face the HTTP/2 transport drives (feed_body, feed_end, disconnect, close) and
    the `WebSocketSink` its session calls."""

    def __init__(
        self, connection: H2ServerProtocol, stream_id: int, headers: Headers, scope: Any
    ) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self._request_headers = headers
        self.scope = scope
        self.session = WebSocketSession(self, scope)
        self._ws: WebSocket | None = None
        self._keepalive: KeepAlive | None = None
        self.client_gone = False
        self.request_complete = False
        #: Flow-controlled bytes of messages the app has not taken yet: acknowledged once it has.
        self._unacknowledged = 0

    @property
    def response_finished(self) -> bool:
        return self.session.state != "handshake"

    # -- the stream face -------------------------------------------------------------------------

    def feed_body(self, data: bytes, flow_controlled_length: int) -> None:
        ws = self._ws
        if ws is None or ws.ended:
            self._connection.acknowledge(self.stream_id, flow_controlled_length)
            return
        events = ws.receive(data)
        complete = False
        for event in events:
            if type(event) is Message:
                complete = True
                self.session.feed(event.data)  # type: ignore[union-attr]
            elif type(event) is PongReceived:
                self._keepalive.pong()  # type: ignore[union-attr]
            elif type(event) is Closed:
                self.session.disconnect(event.code, event.reason)  # type: ignore[union-attr]
        if complete:
            self._unacknowledged += flow_controlled_length
        else:  # part of a message: the app cannot take it yet, so the window must not wait
            self._connection.acknowledge(self.stream_id, flow_controlled_length)
        self._send_pending(end=ws.ended or ws.closing)

    def feed_end(self) -> None:
        """The client ended its side: without a Close first, the WebSocket failed (1006)."""
        self.request_complete = True
        self._stop_pinging()
        self.session.disconnect(ABNORMAL_CLOSURE)

    def disconnect(self) -> None:
        self.client_gone = True
        self._stop_pinging()
        self.session.disconnect(ABNORMAL_CLOSURE)

    def abort(self) -> None:
        """The server stops: Close 1001 (going away)."""
        if self._ws is not None and not self._ws.closing:
            self.session.disconnect(GOING_AWAY)
            self._ws.close(GOING_AWAY, "server shutting down")
            self._send_pending(end=True)

    # -- WebSocketSink ---------------------------------------------------------------------------

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        settings = self._connection.websocket_settings
        acceptance = accept(self._request_headers, subprotocol, headers, settings)
        self._connection.send_headers(self.stream_id, self._head(200, acceptance.headers), False)
        self._ws = WebSocket(settings.max_message_size, acceptance.extensions)
        self._keepalive = KeepAlive(
            asyncio.get_running_loop(),
            settings.ping_interval,
            settings.ping_timeout,
            self._send_ping,
            self._no_pong,
        )
        self._keepalive.start()

    def deny(self, status: int, headers: Headers, body: bytes, finished: bool) -> None:
        if status:  # the app's denial, or the server's 403/500
            response = self._head(status, headers)
            self._connection.send_headers(self.stream_id, response, finished and not body)
        if body or (finished and not status):
            self._connection.queue_data(self.stream_id, body, finished)

    def _head(self, status: int, headers: Headers) -> Headers:
        """A response head for the stream: `headers` less what HTTP/2 forbids, and the server's
        fields they do not name."""
        fields = [(name, value) for name, value in headers if name not in HTTP1_ONLY]
        return self._connection.response_fields().complete(
            [(b":status", str(status).encode()), *fields]
        )

    async def send_message(self, data: str | bytes) -> None:
        ws = self._ws
        assert ws is not None
        ws.send(data)
        if not self._connection.queue_body(self.stream_id, ws.data_to_send(), False):
            await self._connection.wait_for_room(self.stream_id)

    def close(self, code: int, reason: str) -> None:
        if self._ws is not None and not self._ws.closing:
            self._ws.close(code, reason)
            self._send_pending(end=True)

    def consumed(self, size: int) -> None:
        if self._unacknowledged and not self.session.has_unread:
            self._connection.acknowledge(self.stream_id, self._unacknowledged)
            self._unacknowledged = 0

    # -- keep-alive ------------------------------------------------------------------------------

    def _send_ping(self, payload: bytes) -> bool:
        ws = self._ws
        if ws is None or ws.closing or self.client_gone or self.request_complete:
            return False
        ws.ping(payload)
        self._send_pending(end=False)
        return True

    def _no_pong(self) -> None:
        connection = self._connection
        timeout = connection.websocket_settings.ping_timeout
        which = describe(self.scope, self.stream_id, connection.peer_host)
        log.info("closing %s: no Pong within %g s", which, timeout)
        connection.count_timeout()
        self.session.disconnect(INTERNAL_ERROR)
        self.close(INTERNAL_ERROR, "ping timeout")

    def _stop_pinging(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()

    def _send_pending(self, end: bool) -> None:
        """What the WebSocket has to send (pongs, Close); a Close ends our side of the stream,
        and a failed WebSocket is reset once its Close is out."""
        assert self._ws is not None
        data = self._ws.data_to_send()
        failed = self._ws.failed
        if end:
            self._stop_pinging()
        if data or end:
            self._connection.queue_data(self.stream_id, data, end and not failed)
        if end and failed:
            self._connection.reset_stream(self.stream_id, ErrorCode.CANCEL)
