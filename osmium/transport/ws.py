"""The asyncio side of one WebSocket on an upgraded HTTP/1.1 connection.

It answers the opening handshake through the connection's HTTP/1.1 core (101, or the app's denial),
then moves bytes between the socket and the sans-IO WebSocket: the app's sends wait while the
socket's buffer is over its cap (a peer that does not read costs bounded memory), reading pauses
while the app has not taken what came, and one timer each keeps pings and the closing handshake.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from osmium.asgi import ClientDisconnected
from osmium.protocol.events import Headers
from osmium.protocol.h1 import H1Connection
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
from osmium.transport.base import ConnectionProtocol
from osmium.transport.context import ServerContext
from osmium.transport.drain import ReadGate
from osmium.transport.ws_keepalive import KeepAlive
from osmium.websocket import WebSocketSession, describe, run_websocket, websocket_scope

log = logging.getLogger("osmium.connection")

#: Seconds the peer gets to answer our Close before the TCP connection is closed anyway.
CLOSE_TIMEOUT = 5.0
#: Output the app's sends may pile up within one loop turn before they are written at once (and
#: the app waits if the socket does not take them).
FLUSH_AT = 64 * 1024
#: Bytes a client may send before the handshake is answered (it should send none).
EARLY_DATA_LIMIT = 64 * 1024


class WebSocketProtocol(ConnectionProtocol):
    """One WebSocket; implements `WebSocketSink` for its session."""

    protocol_name = "websocket"

    def __init__(self, context: ServerContext, h1: H1Connection, headers: Headers) -> None:
        super().__init__(context)
        self._h1 = h1
        self._request_headers = headers
        self._settings = context.websocket
        self._ws: WebSocket | None = None
        self._early = bytearray()
        self._session: WebSocketSession | None = None
        self._task: asyncio.Task[bool] | None = None
        #: Message bytes the app has not taken (reading pauses past READ_LIMIT).
        self._input = ReadGate()
        self._last_received_at = 0.0
        self._keepalive = KeepAlive(
            self._loop,
            self._settings.ping_interval,
            self._settings.ping_timeout,
            self._send_ping,
            self._no_pong,
        )
        self._close_timer: asyncio.TimerHandle | None = None

    def take_over(self, transport: asyncio.BaseTransport, trailing: bytes) -> asyncio.Task[bool]:
        """The HTTP/1.1 connection is ours now; the app decides on the handshake. Returns the
        app's task (the WebSocket is in flight until it ends)."""
        transport.set_protocol(self)
        self._adopt(transport, upgraded=True)
        self._last_received_at = self._loop.time()
        context = self._context
        scope = websocket_scope(
            self._request_headers,
            self._scheme,
            self._client,
            self._server,
            context.lifespan_state,
            "1.1",
            self._extensions.get("tls"),
        )
        self._session = WebSocketSession(self, scope)
        self._count_websocket()
        self._task = self._loop.create_task(
            run_websocket(context.app, self._session, self.peer_host)
        )
        self._task.add_done_callback(self._app_done)
        if trailing:
            self.data_received(trailing)
        return self._task

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.tally.bytes_in += len(data)
        self._last_received_at = self._loop.time()
        if self._ws is None:
            self._early += data
            if len(self._early) > EARLY_DATA_LIMIT:
                self._close_transport()
            return
        self._handle(self._ws.receive(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._keepalive.stop()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._session is not None:
            self._session.disconnect(ABNORMAL_CLOSURE)
        self._forget()

    def _handle(self, events: list[Any]) -> None:
        session = self._session
        assert session is not None and self._ws is not None
        for event in events:
            kind = type(event)
            if kind is Message:
                data = event.data
                session.feed(data)
                assert self._transport is not None
                self._input.hold(self._transport, len(data))
            elif kind is PongReceived:
                self._keepalive.pong()
            elif kind is Closed:
                session.disconnect(event.code, event.reason)
        self._flush()
        if self._ws.ended:
            self._end()
        elif self._ws.closing:
            self._await_close()

    # -- WebSocketSink ---------------------------------------------------------------------------

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        settings = self._settings
        acceptance = accept(self._request_headers, subprotocol, headers, settings)
        trailing = self._h1.accept_upgrade(acceptance.headers)
        self._flush()  # the 101: from here on only the WebSocket writes
        self._ws = WebSocket(settings.max_message_size, acceptance.extensions)
        self._keepalive.start()
        early = bytes(self._early) + trailing
        self._early.clear()
        if early:
            self._handle(self._ws.receive(early))

    def deny(self, status: int, headers: Headers, body: bytes, finished: bool) -> None:
        h1 = self._h1
        if status:  # the app's denial, or the server's 403/500: the server's fields added
            h1.start_response(status, self.response_fields().complete(headers), close=True)
        h1.send_data(body)
        if finished:
            h1.end_response()
            self._close_transport()
        else:
            self._flush()

    async def send_message(self, data: str | bytes) -> None:
        ws = self._ws
        assert ws is not None
        # A socket whose write failed is closing before connection_lost runs, and writes to it
        # vanish without ever pausing: an app that sends without other awaits must learn here.
        if self._closed or ws.closing or self._transport.is_closing():  # type: ignore[union-attr]
            raise ClientDisconnected("the WebSocket is closed")
        ws.send(data)
        if ws.pending_output < FLUSH_AT:
            # Small messages sent in one loop turn leave in one write (one system call).
            self._schedule_flush()
            return
        self._flush()
        if self._write_gate.paused:
            await self._write_gate.wait()  # drained, or the connection is gone

    def close(self, code: int, reason: str) -> None:
        if self._ws is None or self._closed:
            return
        self._ws.close(code, reason)
        self._flush()
        self._await_close()

    def consumed(self, size: int) -> None:
        if self._transport is not None and not self._closed:
            self._input.release(self._transport, size)

    def _output(self) -> bytes:
        if self._ws is None:
            return self._h1.data_to_send()
        return self._ws.data_to_send()

    # -- pings and closing -----------------------------------------------------------------------

    def _send_ping(self, payload: bytes) -> bool:
        if self._ws is None or self._ws.closing or self._closed:
            return False
        self._ws.ping(payload)
        self._flush()
        return True

    def _no_pong(self) -> None:
        session = self._session
        assert session is not None
        which = describe(session.scope, None, self.peer_host)
        log.info("closing %s: no Pong within %g s", which, self._settings.ping_timeout)
        self._counters.timeouts += 1
        session.disconnect(INTERNAL_ERROR)
        self.close(INTERNAL_ERROR, "ping timeout")

    def _end(self) -> None:
        """Both Closes are through, or the WebSocket failed: the server ends the TCP connection
        (RFC 6455 §7.1.1). It half-closes where it can (not over TLS), so a peer still sending
        (the rest of an oversized message, say) reads our Close before the connection goes
        rather than a reset; the peer's end of the connection, or CLOSE_TIMEOUT, finishes it."""
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
            self._await_close()
        else:
            self._close_transport()

    def _await_close(self) -> None:
        """Our Close is out: the peer's answer ends the connection, or CLOSE_TIMEOUT does."""
        if self._close_timer is None and not self._closed:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self._close_transport)

    def _app_done(self, task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and task.result() is False:
            self._counters.app_errors += 1

    # -- ServerContext's Connection --------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return 0 if self._closed else 1

    @property
    def last_received_at(self) -> float:
        return self._last_received_at

    def stream_snapshots(self, now: float) -> list[dict[str, Any]]:
        return []

    def shutdown(self) -> None:
        """A stop: WebSockets run on until the graceful timeout (then `abort`: 1001)."""

    retire = shutdown

    def close_by_operator(self, graceful: bool) -> None:
        if self._ws is None or not graceful:
            self._close_transport()
        else:
            self._session.disconnect(GOING_AWAY)  # type: ignore[union-attr]
            self.close(GOING_AWAY, "closed by the operator")

    def abort(self) -> None:
        """The graceful timeout ran out: Close 1001 (going away), then the TCP connection."""
        if self._ws is not None and not self._ws.closing and not self._closed:
            self._session.disconnect(GOING_AWAY)  # type: ignore[union-attr]
            self._ws.close(GOING_AWAY, "server shutting down")
        self._close_transport()
