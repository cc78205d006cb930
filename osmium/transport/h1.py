"""The asyncio side of one HTTP/1.1 connection: one request at a time, keep-alive, h2c upgrade.

Request bodies are buffered up to a limit, then reading pauses until the app consumes them (the
HTTP/1.1 stand-in for flow control); response bytes wait for the socket's write buffer to drain.
Once the connection closes (the client left, or we gave up on it) the app's `send` raises
ClientDisconnected, a send waiting for the buffer to drain included.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from osmium.asgi import ClientDisconnected, HTTPStream, build_scope, plain_response, run_http
from osmium.protocol.events import Body, ConnectionFailed, EndBody, Event, Headers, Request
from osmium.protocol.h1 import H2C_SWITCH, H1Connection, h2c_upgrade_settings
from osmium.protocol.h2 import UpgradeRefused
from osmium.protocol.ws import handshake_problem, is_websocket_request
from osmium.transport.base import REFUSAL_BODIES, ConnectionProtocol, stream_snapshot
from osmium.transport.context import ServerContext
from osmium.transport.drain import ReadGate
from osmium.transport.h2 import H2ServerProtocol
from osmium.transport.ws import WebSocketProtocol

log = logging.getLogger("osmium.connection")

#: Largest request body read before answering an h2c upgrade (RFC 7540 §3.2 lets us decline).
UPGRADE_BODY_LIMIT = 1024 * 1024
#: Seconds a connection answered by the server itself (413, 503) is still read, and what arrives
#: dropped, before it is closed: closing with the client's body still arriving would reset the
#: connection, and the client could lose the answer.
LINGER_TIMEOUT = 5.0
#: Fields of an HTTP/1.1 request that mean nothing on HTTP/2 (RFC 9113 §8.2.2).
HOP_BY_HOP = frozenset(
    {b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"proxy-connection",
     b"transfer-encoding", b"te"}
)  # fmt: skip


class H1ServerProtocol(ConnectionProtocol):
    """One HTTP/1.1 connection; implements `StreamSink` for its (one at a time) stream."""

    _core: H1Connection | None

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._core = None  # made when the connection is, once the scheme is known
        self._stream: HTTPStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._upgrade: tuple[bytes, Headers, bytearray] | None = None
        #: A WebSocket request's fields, until its end arrives and the WebSocket takes over.
        self._websocket: Headers | None = None
        #: Request body bytes buffered for the app (reading pauses past READ_LIMIT).
        self._input = ReadGate()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._last_received_at = self._loop.time()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._adopt(transport)
        fields = self._context.response_fields
        self._core = H1Connection(self._scheme, server_fields=fields.complete)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        assert self._core is not None
        self.tally.bytes_in += len(data)
        self._last_received_at = self._loop.time()
        if self._stream is None and self._upgrade is None and self._header_timer is None:
            # The first bytes of a request: its head must be complete within header_timeout.
            self._header_timer = self._loop.call_later(
                self._limits.header_timeout, self._check_request_head
            )
        self._handle(self._core.receive(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._stream is not None:
            self._stream.disconnect()
        if self._context.admission is not None:
            self._context.admission.forget(self)
        self._forget()

    def _check_request_head(self) -> None:
        self._header_timer = None
        if self._stream is None and self._upgrade is None:
            self._time_out("request head", self._limits.header_timeout)

    # -- events ----------------------------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is Body:
                self._on_body(event)  # type: ignore[arg-type]
            elif kind is Request:
                self._on_request(event)  # type: ignore[arg-type]
            elif kind is EndBody:
                self._on_end_body()
            elif kind is ConnectionFailed:
                self._counters.protocol_errors += 1
                log.info("HTTP/1.1 request refused: %s", event.reason)  # type: ignore[union-attr]
                self._close_transport()
                return
        self._flush()

    def _cancel_timers(self) -> None:
        """The idle and header timers: the connection is gone, a request is in, or answered."""
        for timer in (self._idle_timer, self._header_timer):
            if timer is not None:
                timer.cancel()

    def _on_request(self, event: Request) -> None:
        assert self._core is not None
        self._cancel_timers()
        self._header_timer = None
        settings = (
            h2c_upgrade_settings(event.headers, self._scheme)
            if self._context.http == "auto"
            else None
        )
        if settings is not None:
            self._upgrade = (settings, event.headers, bytearray())
            return
        if is_websocket_request(event.headers):
            self._open_websocket(event.headers)
            return
        if self._start_stream(event.stream_id, event.headers):
            self._core.send_continue()

    def _start_stream(self, stream_id: int, headers: Headers) -> bool:
        """Run the request's handler; False when the server answered it instead (413, 503)."""
        context = self._context
        if context.max_request_body_size or context.concurrency is not None:
            status = self._refusal(headers)
            if status is not None:
                self._reject(status)
                return False
        scope = build_scope(
            headers,
            self._scheme,
            self._client,
            self._server,
            context.lifespan_state,
            self._core.http_version,
            self._extensions,
        )
        self._stream = HTTPStream(self, stream_id, scope)
        # One request at a time on this connection: the default urgency, none to put it before.
        self._task = self._start_handler(self._stream)
        return True

    def _on_body(self, event: Body) -> None:
        if self._upgrade is not None:
            body = self._upgrade[2]
            body += event.data
            if len(body) > UPGRADE_BODY_LIMIT:
                self._decline_upgrade()
            return
        stream = self._stream
        if stream is None:
            return
        limit = self._context.max_request_body_size
        if limit and stream.bytes_in + len(event.data) > limit and not stream.response_finished:
            self._body_too_large(stream)
            return
        stream.feed_body(event.data, event.flow_controlled_length)
        assert self._transport is not None
        self._input.hold(self._transport, event.flow_controlled_length)

    def _body_too_large(self, stream: HTTPStream) -> None:
        """A chunked body grew past max_request_body_size: the app gets no more of it (its
        `receive` says http.disconnect), the client gets 413 unless the response has started,
        and the connection closes (the rest of the body cannot be skipped)."""
        assert self._core is not None
        self._context.refused("max_request_body_size")
        if self._core.response_started:
            self._close_transport()
            return
        stream.disconnect()
        self._reject(413)

    def _reject(self, status: int) -> None:
        """Answer the request in progress for the server (413, 503) and close once the client
        had time to read it: meanwhile what it sends is read and dropped (a close with its body
        still arriving would reset the connection, and could take the answer with it)."""
        assert self._core is not None and self._transport is not None
        body = REFUSAL_BODIES[status]
        self._core.reject(status, plain_response(status, body, self.response_fields())[1:], body)
        self._flush()
        self._cancel_timers()
        if self._transport.can_write_eof():
            self._transport.write_eof()
        # In the header timer's place: no request head is timed (none will be read) meanwhile.
        self._header_timer = self._loop.call_later(LINGER_TIMEOUT, self._close_transport)

    def _on_end_body(self) -> None:
        if self._upgrade is not None:
            self._switch_to_h2()
        elif self._websocket is not None:
            self._switch_to_websocket(self._websocket)
        elif self._stream is not None:
            self._stream.feed_end()

    # -- WebSocket upgrade -----------------------------------------------------------------------

    def _open_websocket(self, headers: Headers) -> None:
        """RFC 6455 §4.2: a request we cannot accept is answered (400, 426) and the connection
        closed; one we can goes to the app once its (empty) body is in."""
        assert self._core is not None
        problem = handshake_problem(headers)
        if problem is None:
            self._websocket = headers
            return
        status, reason, fields = problem
        log.info("WebSocket handshake refused from %s: %s", self.peer_host, reason)
        body = reason.encode()
        head = self.response_fields().complete(
            [*fields, (b"content-length", str(len(body)).encode())]
        )
        self._core.start_response(status, head, close=True)
        self._core.send_data(body)
        self._core.end_response()
        self._close_transport()

    def _switch_to_websocket(self, headers: Headers) -> None:
        """The connection becomes the WebSocket's: its protocol answers the handshake. Past
        --limit-concurrency the server answers 503 instead; under it the WebSocket counts in
        flight until its handler ends."""
        assert self._core is not None and self._transport is not None
        self._websocket = None
        status = self._refusal(headers)
        if status is not None:
            self._reject(status)
            return
        self._context.unregister(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        task = WebSocketProtocol(self._context, self._core, headers).take_over(self._transport, b"")
        concurrency = self._context.concurrency
        if concurrency is not None:
            task.add_done_callback(lambda _task: concurrency.leave())

    # -- h2c upgrade -----------------------------------------------------------------------------

    def _switch_to_h2(self) -> None:
        assert self._upgrade is not None and self._core is not None and self._transport
        settings, headers, body = self._upgrade
        h2_protocol = H2ServerProtocol(self._context)
        try:
            h2_protocol.prepare_upgrade(settings)
        except UpgradeRefused as refusal:
            log.info("h2c upgrade declined: %s", refusal)
            self._decline_upgrade()
            return
        trailing = self._core.accept_upgrade(H2C_SWITCH)
        self._flush()
        self._context.unregister(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        upgraded = [(name, value) for name, value in headers if name not in HOP_BY_HOP]
        h2_protocol.take_over(self._transport, upgraded, bytes(body), trailing)

    def _decline_upgrade(self) -> None:
        """Serve the request over HTTP/1.1 after all, with what was read of its body."""
        assert self._upgrade is not None and self._core is not None
        _settings, headers, body = self._upgrade
        self._upgrade = None
        request_id = self._core.request_id
        if not self._start_stream(request_id, headers):
            return
        if body:
            self._on_body(Body(request_id, bytes(body), 0))
        if self._core.request_complete and self._stream is not None:
            self._stream.feed_end()

    # -- the stream ------------------------------------------------------------------------------

    async def _run_stream(self, stream: HTTPStream, queued: asyncio.Future[bool] | None) -> None:
        """Run the app once the request has a handler slot (`queued`: it waits for one)."""
        try:
            # A lost connection ends the wait with False: the app never sees the request.
            if queued is not None and not (await queued and not stream.client_gone):
                return
            if not await run_http(self._context.app, stream):
                self._counters.app_errors += 1
        finally:
            if self._context.admission is not None:
                self._context.admission.leave(queued)
            if self._context.concurrency is not None:
                self._context.concurrency.leave()
            if self._context.request_stats is not None:
                self._count_request(stream)
            stream.close()
            self._stream = None
            self._task = None
            self._input.forget()
            self._next_request()

    def _next_request(self) -> None:
        """Keep-alive: on to the next (maybe already pipelined) request, or close."""
        if self._closed:
            return
        assert self._core is not None and self._transport is not None
        self._input.resume(self._transport)
        events = None if self._closing else self._core.next_request()
        if events is None:
            self._close_transport()
            return
        self._arm_idle_timer()
        self._handle(events)

    # -- StreamSink ------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self._check_open(stream_id)
        assert self._core is not None
        if self._core.response_started:
            self._core.end_response(headers)  # trailers
        else:
            self._start_response(headers)
            if end_stream:
                self._core.end_response()
        self._schedule_flush()  # a body sent in this turn goes out in the same write

    def _start_response(self, headers: Headers) -> None:
        """The response's head (`:status` first) to the core, written with what follows."""
        assert self._core is not None
        self._core.start_response(int(headers[0][1]), headers[1:], close=self._closing)

    def queue_body(
        self, stream_id: int, data: bytes, end_stream: bool, headers: Headers | None = None
    ) -> bool:
        """Write the response's head (if given) and `data` now. False: the socket's buffer is
        full; the sender awaits `wait_for_room`."""
        self._check_open(stream_id)
        core = self._core
        assert core is not None
        if headers is not None:
            self._start_response(headers)
        core.send_data(data)
        if end_stream:
            core.end_response()
        self._flush()
        return not self._write_gate.paused

    async def wait_for_room(self, stream_id: int) -> None:
        await self._write_gate.wait()  # drained, or the connection is gone
        self._check_open(stream_id)

    def _check_open(self, stream_id: int) -> None:
        # is_closing: a failed write closes the socket before connection_lost runs, and later
        # writes vanish without pausing (an app sending in a loop would never yield).
        if self._closed or self._transport.is_closing():  # type: ignore[union-attr]
            raise ClientDisconnected(f"request {stream_id}: connection closed")

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        self._check_open(stream_id)
        assert self._core is not None
        self._core.send_informational(int(headers[0][1]), headers[1:])
        self._flush()  # now: hints are worth most while the app is still busy with the response

    def push(self, stream_id: int, request_headers: Headers) -> None:
        """HTTP/1.1 has no server push: the message is ignored, as ASGI asks."""

    def end_stream(self, stream_id: int) -> None:
        self._check_open(stream_id)
        assert self._core is not None
        self._core.end_response()
        self._flush()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """HTTP/1.1 cannot abandon one response: the connection goes."""
        self._close_transport()

    def _close_transport(self) -> None:
        super()._close_transport()
        # A bad request, a timeout, a reset: the response in flight will not reach the client.
        if self._stream is not None:
            self._stream.disconnect()

    def acknowledge(self, stream_id: int, size: int) -> None:
        assert self._transport is not None
        self._input.release(self._transport, size)

    # -- connection lifecycle (ServerContext's Connection) ---------------------------------------

    @property
    def last_received_at(self) -> float:
        return self._last_received_at

    def stream_snapshots(self, now: float) -> list[dict[str, Any]]:
        stream = self._stream
        if stream is None:
            return []
        admission = self._context.admission
        waiting = None
        if admission is not None and admission.is_waiting(self, stream.stream_id):
            waiting = "admission"
        elif not stream.response_finished:
            waiting = "socket" if self._write_gate.paused else "app"
        return [
            stream_snapshot(
                stream,
                "half-closed" if stream.request_complete else "open",
                now,
                waiting,
            )
        ]

    @property
    def open_streams(self) -> int:
        return 1 if self._stream is not None else 0

    def shutdown(self) -> None:
        """Close now if idle; otherwise after the response in flight (with Connection: close)."""
        self._closing = True
        if self._stream is None:
            self._close_transport()

    retire = shutdown

    def close_by_operator(self, graceful: bool) -> None:
        """The admin plane closes this connection: after the response in flight, or at once."""
        if graceful:
            self.shutdown()
        else:
            self._close_transport()

    def _arm_idle_timer(self) -> None:
        self._idle_timer = self._loop.call_later(
            self._context.keep_alive_timeout, self._close_when_idle
        )

    def _close_when_idle(self) -> None:
        if self._stream is None and self._upgrade is None:
            self._close_transport()
