"""The asyncio side of one HTTP/2 connection: socket -> protocol core -> ASGI streams -> socket.

The app's `send` queues body bytes in the core, stream by stream; the core frames them in priority
order within the windows when this transport flushes (once per event-loop turn, and again when the
socket drains). A send waits only while its own stream's queue is full. A reset, a GOAWAY with an
error or a lost connection ends that wait at once: the app's `send` raises ClientDisconnected.
Every deadline is the core's (handshake, header block, final GOAWAY, sends without progress, a
socket that takes nothing, keep-alive): one timer, armed at `next_deadline()`. Only a connection
already closed with bytes still unsent gets the base class's timer, to abort it.
The core's clock is time.monotonic(), not loop.time(): uvloop's is cached to the millisecond,
too coarse for a PING's round trip; timers set with call_at still fire in time (loop time never
runs ahead of it).
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any

from osmium.asgi import (
    HTTP1_EXTENSIONS,
    HTTP2_EXTENSIONS,
    ClientDisconnected,
    HTTPStream,
    build_scope,
    plain_response,
    run_http,
)
from osmium.protocol.events import (
    Body,
    ConnectionFailed,
    EndBody,
    ErrorCode,
    Event,
    GoAway,
    Headers,
    IdleTimedOut,
    OutputStalled,
    PingAcknowledged,
    PingTimedOut,
    Request,
    Reset,
    SendTimedOut,
    TimedOut,
    field_value,
)
from osmium.protocol.h2 import ServerConnection, StreamGone
from osmium.protocol.ws import WebSocketSettings
from osmium.transport.base import REFUSAL_BODIES, ConnectionProtocol, stream_snapshot
from osmium.transport.context import ServerContext
from osmium.transport.h2_ws import H2WebSocket
from osmium.websocket import describe, run_websocket, websocket_scope

log = logging.getLogger("osmium.connection")


def acceptable_tls(version: str | None, cipher: tuple[str, str, int] | None) -> bool:
    """RFC 9113 §9.2.2: over TLS 1.2, HTTP/2 needs ephemeral key exchange and an AEAD cipher
    (the cipher suite block list of Appendix A is everything else)."""
    if version != "TLSv1.2" or cipher is None:
        return True
    name = cipher[0]
    ephemeral = name.startswith(("ECDHE-", "DHE-"))
    return ephemeral and any(aead in name for aead in ("-GCM-", "CHACHA20", "-CCM"))


class H2ServerProtocol(ConnectionProtocol):
    """One connection; implements `StreamSink` for its streams."""

    _core: ServerConnection

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._core = ServerConnection(
            context.protocol,
            limits=context.limits,
            debug_frames=context.debug_frames,
            keep_alive_timeout=context.keep_alive_timeout,
            constant_fields=context.response_fields.defaults,
        )
        self._streams: dict[int, HTTPStream] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        #: Senders waiting for room in their stream's queue, by stream.
        self._room_waiters: dict[int, asyncio.Future[None]] = {}
        #: Pushes made by requests still running, by stream (only those that pushed are here).
        self._pushes: dict[int, int] = {}
        #: With max_pushes_per_request 0, push is off: apps are not offered it at all.
        self._extensions = HTTP2_EXTENSIONS if context.max_pushes_per_request else HTTP1_EXTENSIONS
        self._retiring = False
        #: The one timer for the core's deadlines, and the moment it is armed for.
        self._core_timer: asyncio.TimerHandle | None = None
        self._core_timer_at: float | None = None
        #: What operators' `ping()` calls wait on: the next ACK of the core's PING.
        self._ping_answer: asyncio.Future[float | None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._core.start(now=monotonic())
        self._attach(transport)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and not acceptable_tls(tls.version(), tls.cipher()):
            log.info("TLS 1.2 cipher %s refused for HTTP/2", tls.cipher()[0])
            self._core.close(ErrorCode.INADEQUATE_SECURITY)
            self._close_transport()

    def prepare_upgrade(self, settings: bytes) -> None:
        """h2c upgrade, first half: check HTTP2-Settings before the 101 goes out.

        Raises UpgradeRefused for a value RFC 7540 §3.2.1 does not allow.
        """
        self._core.start(upgrade_settings=settings, now=monotonic())

    def take_over(
        self, transport: asyncio.BaseTransport, headers: Headers, body: bytes, trailing: bytes
    ) -> None:
        """h2c upgrade, second half: the connection is ours; stream 1 is the upgraded request."""
        transport.set_protocol(self)
        self._attach(transport, upgraded=True)
        self._core.busy()
        self._on_request(Request(1, headers))
        stream = self._streams.get(1)
        if stream is not None:  # None: the server answered it (413, 503)
            if body:
                self._on_body(Body(1, body, 0))  # sent over HTTP/1.1: no HTTP/2 window to give back
            stream.feed_end()
        if trailing:
            self.data_received(trailing)

    def _attach(self, transport: asyncio.BaseTransport, upgraded: bool = False) -> None:
        self._adopt(transport, upgraded)
        # The server preface goes out at the end of this turn: with the answer to the client's
        # first read, when that came with the connection (a negotiated cleartext one).
        self._schedule_flush()
        self._core.idle(monotonic())
        self._arm_core_timer()

    def data_received(self, data: bytes) -> None:
        self.tally.bytes_in += len(data)
        try:
            events = self._core.receive(data, monotonic())
        except Exception:
            # A bug below us must cost this connection only, with a GOAWAY, not the worker.
            log.exception("internal error while processing data from %s", self._client)
            self._core.close(ErrorCode.INTERNAL_ERROR)
            self._close_transport()
            return
        for event in events:
            self._dispatch(event)
        self._flush_after_handlers()  # with what the handlers started here send first
        if self._closing:
            self._close_if_done()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._core_timer is not None:
            self._core_timer.cancel()
        self._answer_ping(None)
        self._disconnect_streams()
        if self._context.admission is not None:
            self._context.admission.forget(self)
        self._forget()

    def pause_writing(self) -> None:
        # The core gives the peer send_timeout to read (its deadline); replies to what we would
        # read next would pile up unsent meanwhile: stop reading too.
        self._core.output_paused(monotonic())
        self._arm_core_timer()
        assert self._transport is not None
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        assert self._transport is not None
        self._core.output_resumed()
        if not self._closed:
            self._transport.resume_reading()
        super().resume_writing()
        self._schedule_flush()  # room again: the core frames more of the queued bodies

    # -- the core's deadlines --------------------------------------------------------------------

    def _arm_core_timer(self) -> None:
        """One timer, at the core's next deadline or before it. A new deadline later than the
        timer keeps it (it fires, finds nothing due, re-arms), so deadlines that move later with
        every request (the keep-alive) cost no timer each."""
        core = self._core
        deadline, core.new_deadline = core.new_deadline, None
        if deadline is None or self._closed:
            return
        if self._core_timer is not None:
            if self._core_timer_at is not None and self._core_timer_at <= deadline:
                return
            self._core_timer.cancel()
        self._core_timer_at = deadline
        self._core_timer = self._loop.call_at(deadline, self._on_core_deadline)

    def _on_core_deadline(self) -> None:
        self._core_timer = None
        core = self._core
        for event in core.handle_timeout(monotonic()):
            self._dispatch(event)
        if self._closed:
            return
        self._flush()
        self._close_if_done()
        # Whatever is due next, including deadlines that moved later since this timer was set.
        core.new_deadline = core.next_deadline()
        self._arm_core_timer()

    # -- events from the core --------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        kind = type(event)
        if kind is Request:
            self._on_request(event)  # type: ignore[arg-type]
        elif kind is Body:
            self._on_body(event)  # type: ignore[arg-type]
        elif kind is EndBody:
            stream = self._streams.get(event.stream_id)  # type: ignore[union-attr]
            if stream is not None:
                stream.feed_end()
        elif kind is Reset:
            self._on_reset(event.stream_id)  # type: ignore[union-attr]
        elif kind is GoAway:
            self._on_goaway(event)  # type: ignore[arg-type]
        elif kind is ConnectionFailed:
            self._on_connection_failed(event)  # type: ignore[arg-type]
        elif kind is TimedOut:
            self._time_out(event.what, event.seconds)  # type: ignore[union-attr]
        elif kind is SendTimedOut:
            self._on_send_timed_out(event)  # type: ignore[arg-type]
        elif kind is IdleTimedOut:
            self.shutdown()
        elif kind is OutputStalled:
            self._stalled()
        elif kind is PingAcknowledged:
            self._answer_ping(event.rtt)  # type: ignore[union-attr]
        elif kind is PingTimedOut:
            self._answer_ping(None)
            self._context.closed_by_policy("idle-ping", self.peer_host)
            self._time_out("PING ACK", event.seconds)  # type: ignore[union-attr]

    async def ping(self) -> float | None:
        """An operator's PING: its round trip in seconds, or None when the connection closes or
        no ACK comes within ping_timeout (the core then closes it as dead). While a PING of the
        core's is unanswered already, this waits for that one's ACK."""
        if self._closed or self._core.closed:
            return None
        if self._ping_answer is None:
            self._ping_answer = self._loop.create_future()
            self._core.ping(monotonic())
            self._flush()
        answer = asyncio.shield(self._ping_answer)
        try:
            return await asyncio.wait_for(answer, self._limits.ping_timeout)
        except TimeoutError:
            return None

    def _answer_ping(self, rtt: float | None) -> None:
        answer, self._ping_answer = self._ping_answer, None
        if answer is not None and not answer.done():
            answer.set_result(rtt)

    def _on_request(self, event: Request) -> None:
        stream_id = event.stream_id
        context = self._context
        scope = build_scope(
            event.headers,
            self._scheme,
            self._client,
            self._server,
            context.lifespan_state,
            "2",
            self._extensions,
            event.known,
        )
        if scope["method"] == "CONNECT":
            self._on_connect(event)
            return
        if context.max_request_body_size or context.concurrency is not None:
            status = self._refusal(event.headers)
            if status is not None:
                self._answer_alone(stream_id, status, scope["method"] == "HEAD")
                return
        stream = HTTPStream(self, stream_id, scope, event.complete)
        self._streams[stream_id] = stream
        self._tasks[stream_id] = self._start_handler(stream)

    # -- RFC 8441: WebSockets on streams ---------------------------------------------------------

    def _on_connect(self, event: Request) -> None:
        """Extended CONNECT: `:protocol websocket` opens a WebSocket on the stream; another
        protocol, or a plain CONNECT (a tunnel), gets 501 (RFC 8441 §4, RFC 9110 §9.3.6)."""
        stream_id, headers = event.stream_id, event.headers
        if field_value(headers, b":protocol") != b"websocket":
            head = self.response_fields().complete([(b":status", b"501")])
            self._core.send_headers(stream_id, head, True)
            self._schedule_flush()
            return
        status = self._refusal(headers)
        if status is not None:
            self._answer_alone(stream_id, status, False)
            return
        context = self._context
        scope = websocket_scope(
            headers,
            self._scheme,
            self._client,
            self._server,
            context.lifespan_state,
            "2",
            self._extensions.get("tls"),
        )
        websocket = H2WebSocket(self, stream_id, headers, scope)
        self._streams[stream_id] = websocket  # type: ignore[assignment]
        if event.complete:
            websocket.feed_end()
        self._count_websocket()
        self._tasks[stream_id] = self._loop.create_task(self._run_websocket(websocket))

    async def _run_websocket(self, websocket: H2WebSocket) -> None:
        stream_id = websocket.stream_id
        try:
            app = self._context.app
            if not await run_websocket(app, websocket.session, self.peer_host, stream_id):
                self._counters.app_errors += 1
        finally:
            if self._context.concurrency is not None:
                self._context.concurrency.leave()
            self._stream_done(stream_id)

    @property
    def websocket_settings(self) -> WebSocketSettings:
        return self._context.websocket

    def count_timeout(self) -> None:
        """One of our WebSockets timed out (no Pong): counted with the connection timeouts."""
        self._counters.timeouts += 1

    def queue_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Small output that must not wait (a Pong, a Close, a denial's body): queued as is."""
        try:
            if data:
                self._core.send_data(stream_id, data, end_stream)
            elif end_stream:
                self._core.end_stream(stream_id)
        except StreamGone:
            return
        self._schedule_flush()

    def _urgency(self, stream_id: int) -> int:
        return self._core.priority_of(stream_id).urgency

    def _on_body(self, event: Body) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            self._core.acknowledge(event.stream_id, event.flow_controlled_length)
            return
        limit = self._context.max_request_body_size
        if (
            limit
            and type(stream) is HTTPStream  # a WebSocket's messages have their own limit
            and stream.bytes_in + len(event.data) > limit
            and not stream.response_finished
        ):
            self._body_too_large(stream, event.flow_controlled_length)
        else:
            stream.feed_body(event.data, event.flow_controlled_length)

    def _body_too_large(self, stream: HTTPStream, flow_controlled_length: int) -> None:
        """The body grew past max_request_body_size: the app gets no more of it (its `receive`
        says http.disconnect, its sends raise), the client gets 413 and RST_STREAM(NO_ERROR)
        when the response had not started, RST_STREAM(CANCEL) when it had. The connection and
        its other streams go on."""
        stream_id = stream.stream_id
        self._context.refused("max_request_body_size")
        self._core.acknowledge(stream_id, flow_controlled_length)
        if stream.headers_sent:
            self._count_error(ErrorCode.CANCEL)
            self._core.reset(stream_id, ErrorCode.CANCEL)
        else:
            self._answer(stream_id, 413, stream.scope["method"] == "HEAD")
        self._on_reset(stream_id)
        self._schedule_flush()

    def _answer(self, stream_id: int, status: int, head: bool) -> None:
        """The server's own answer (413, 503) to a request, then RST_STREAM(NO_ERROR) once it
        is out: RFC 9113 §8.1's way to ask the client to stop sending a body nobody will read
        (nothing is sent for a stream the client has ended already)."""
        body = REFUSAL_BODIES[status]
        core = self._core
        try:
            core.send_headers(stream_id, plain_response(status, body, self.response_fields()), head)
            if not head:
                core.send_data(stream_id, body, True)
        except StreamGone:
            return
        core.reset_when_sent(stream_id, ErrorCode.NO_ERROR)
        self._schedule_flush()

    def _answer_alone(self, stream_id: int, status: int, head: bool) -> None:
        """`_answer` a request no handler runs for; with no stream running, the keep-alive
        starts again (the request stopped it)."""
        self._answer(stream_id, status, head)
        if not self._streams:
            self._core.idle(monotonic())

    def _on_reset(self, stream_id: int) -> None:
        if self._context.admission is not None:
            self._context.admission.cancel(self, stream_id)
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.disconnect()
        self._wake_sender(stream_id)

    def _count_error(self, error_code: int) -> None:
        errors = self._counters.errors
        try:
            name = ErrorCode(error_code).name
        except ValueError:
            name = str(error_code)
        errors[name] = errors.get(name, 0) + 1

    def _on_send_timed_out(self, event: SendTimedOut) -> None:
        self._count_error(ErrorCode.CANCEL)
        stream = self._streams.get(event.stream_id)
        peer = self.peer_host
        if type(stream) is HTTPStream:
            which = f"{stream.request_line} from {peer}"
        elif stream is not None:  # a WebSocket
            which = describe(stream.scope, event.stream_id, peer)
        else:
            which = f"stream {event.stream_id} from {peer}"
        log.info("%s: no progress sending for %.0f s; resetting it", which, event.seconds)
        self._on_reset(event.stream_id)

    def _on_goaway(self, event: GoAway) -> None:
        if event.error_code != ErrorCode.NO_ERROR:
            log.info("peer sent GOAWAY with error code %d; closing", event.error_code)
            self._close_transport()
        elif self._streams or self._core.queued_size:
            self.shutdown()  # what is in flight is answered first
        else:
            # The client is leaving (as h2load does after its last response) and is owed
            # nothing: the final GOAWAY now, and no PING or deadline for a graceful close.
            self._core.close()
            self._close_transport()

    def _on_connection_failed(self, event: ConnectionFailed) -> None:
        self._counters.protocol_errors += 1
        self._count_error(event.error_code)
        if event.error_code == ErrorCode.ENHANCE_YOUR_CALM:
            self._context.defence_fired(event.reason, self.peer_host)
        log.info(
            "connection error from %s: %s (error code %d)",
            self.peer_host,
            event.reason,
            event.error_code,
        )
        self._flush()
        self._close_transport()

    # -- streams ---------------------------------------------------------------------------------

    async def _run_stream(self, stream: HTTPStream, queued: asyncio.Future[bool] | None) -> None:
        """Run the app once the stream has a handler slot (`queued`: it waits for one)."""
        stream_id = stream.stream_id
        try:
            # A reset or a lost connection ends the wait with False: the app never sees it.
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
            if self._pushes:
                self._pushes.pop(stream_id, None)
            if not stream.request_complete:
                # RFC 9113 §8.1: the response is done; the rest of the request is not needed.
                self._core.reset_when_sent(stream_id, ErrorCode.NO_ERROR)
            stream.close()
            self._stream_done(stream_id)

    def _stream_done(self, stream_id: int) -> None:
        """A stream's task ended: off the books; once none runs, the keep-alive starts (and a
        closing connection may close)."""
        del self._streams[stream_id]
        del self._tasks[stream_id]
        self._schedule_flush()
        if not self._streams:
            self._core.idle(monotonic())
            if self._closing:
                self._close_if_done()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # -- what the admin plane shows and does -----------------------------------------------------

    @property
    def protocol_name(self) -> str:  # type: ignore[override]
        return "h2" if self._scheme == "https" else "h2c"

    @property
    def last_received_at(self) -> float:
        return self._core.last_received_at

    def snapshot(self, now: float) -> dict[str, Any]:
        view = super().snapshot(now)
        send, receive = self._core.windows()
        view["windows"] = {"send": send, "receive": receive}
        view["output_queued"] += self._core.queued_size
        rtt = self._core.ping_rtt
        view["ping_rtt_ms"] = None if rtt is None else rtt * 1000
        return view

    def stream_snapshots(self, now: float) -> list[dict[str, Any]]:
        core = self._core
        admission = self._context.admission
        connection_window = core.windows()[0]
        views = []
        for stream_id, stream in self._streams.items():
            state, window = core.stream_view(stream_id)
            if admission is not None and admission.is_waiting(self, stream_id):
                waiting: str | None = "admission"
            elif core.queued(stream_id):
                blocked = not window or connection_window <= 0
                waiting = "window" if blocked else "socket" if self._write_gate.paused else None
            else:
                waiting = None if stream.response_finished else "app"
            view = stream_snapshot(stream, state, now, waiting)
            priority = core.priority_of(stream_id)
            view["urgency"] = priority.urgency
            view["incremental"] = priority.incremental
            view["send_window"] = window
            views.append(view)
        return views

    def close_by_operator(self, graceful: bool) -> None:
        """The admin plane closes this connection: GOAWAY and let streams finish, or at once."""
        if graceful:
            self.shutdown()
            return
        self._core.close(ErrorCode.NO_ERROR)
        self._close_transport()

    def reset_by_operator(self, stream_id: int) -> bool:
        """The admin plane resets one stream: RST_STREAM(CANCEL) to the client, the app's sends
        raise. False if there is no such stream."""
        if stream_id not in self._streams:
            return False
        self._core.reset(stream_id, ErrorCode.CANCEL)
        self._on_reset(stream_id)
        self._schedule_flush()
        return True

    # -- StreamSink ------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        try:
            self._core.send_headers(stream_id, headers, end_stream)
        except StreamGone:
            raise self._gone(stream_id, "stream closed") from None
        self._schedule_flush()

    def queue_body(
        self, stream_id: int, data: bytes, end_stream: bool, headers: Headers | None = None
    ) -> bool:
        """Queue `data` in the core (after `headers`, if given); the core frames it in priority
        order as windows and the socket allow. False: the stream's queue is full."""
        core = self._core
        if self._closed or self._streams[stream_id].client_gone:
            self._check_open(stream_id)  # raises
        try:
            write_now = not self._transport.get_write_buffer_size()
            if headers is None:
                has_room = core.send_data(stream_id, data, end_stream, write_now)
            else:
                has_room = core.send_response(stream_id, headers, data, end_stream, write_now)
        except StreamGone:
            raise self._gone(stream_id, "stream closed") from None
        self._schedule_flush()
        return has_room

    async def wait_for_room(self, stream_id: int) -> None:
        """Until the stream's queue has room again (or it is reset: then this raises)."""
        core = self._core
        while not core.has_room(stream_id):
            await self._wait_for_room(stream_id)
            self._check_open(stream_id)  # woken by a reset or a lost connection

    def _check_open(self, stream_id: int) -> None:
        """Raise ClientDisconnected if the stream was reset or the connection is going: a reset
        stream's window never opens again, so its sender must not wait for it."""
        if self._closed:
            raise self._gone(stream_id, "connection closed")
        if self._streams[stream_id].client_gone:
            raise ClientDisconnected(f"stream {stream_id}: the client went away")

    def _gone(self, stream_id: int, why: str) -> ClientDisconnected:
        """The stream's client is gone: its later sends raise too; this one raises the result."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.disconnect()
        return ClientDisconnected(f"stream {stream_id}: {why}")

    def _disconnect_streams(self) -> None:
        """The connection is going: every stream's client is gone, and senders waiting for window
        wake up to find that out."""
        for stream in self._streams.values():
            stream.disconnect()
        for waiter in self._room_waiters.values():
            if not waiter.done():
                waiter.set_result(None)

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        try:
            self._core.send_informational(stream_id, headers)
        except StreamGone:
            raise self._gone(stream_id, "stream closed") from None
        self._flush()  # now: hints are worth most while the app is still busy with the response

    def push(self, stream_id: int, request_headers: Headers) -> None:
        """Promise `request_headers` and serve that request as if the client had sent it (same
        scope, same admission), while this request has pushes left and the core can push."""
        pushes = self._pushes.get(stream_id, 0)
        if self._closed or pushes >= self._context.max_pushes_per_request:
            return
        concurrency = self._context.concurrency
        if concurrency is not None and concurrency.full:
            return  # a push is optional: none past --limit-concurrency rather than a pushed 503
        promised_id = self._core.push(stream_id, request_headers)
        if promised_id is None:
            return
        self._pushes[stream_id] = pushes + 1
        # A promised request has no content (§8.4).
        self._on_request(Request(promised_id, request_headers, complete=True))
        self._schedule_flush()

    def end_stream(self, stream_id: int) -> None:
        try:
            self._core.end_stream(stream_id)
        except StreamGone:
            raise self._gone(stream_id, "stream closed") from None
        self._schedule_flush()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """The app failed mid-response: what it sent still goes out, then RST_STREAM."""
        self._core.reset_when_sent(stream_id, error_code)
        self._schedule_flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        self._core.acknowledge(stream_id, size)
        self._schedule_flush()

    async def _wait_for_room(self, stream_id: int) -> None:
        """Until the stream's queue drains a little, or the stream is gone (the core resets it
        after send_timeout without progress: no window, or a peer that does not read)."""
        waiter = self._loop.create_future()
        self._room_waiters[stream_id] = waiter
        try:
            await waiter
        finally:
            del self._room_waiters[stream_id]

    def _wake_sender(self, stream_id: int) -> None:
        waiter = self._room_waiters.get(stream_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- writing and closing ---------------------------------------------------------------------

    def _output(self) -> bytes:
        """What the core has to send, its DATA within the room left under the output cap; then
        the senders whose queues drained get to queue more."""
        assert self._transport is not None
        room = self._limits.max_connection_output - self._transport.get_write_buffer_size()
        core = self._core
        # The time matters only to bodies queued (their send deadline): skip asking when none is.
        tracking = core.queued_size or core.send_deadline is not None
        data = core.data_to_send(room, monotonic() if tracking else 0.0)
        if data and core.output_ready:
            # The room ran out before the windows did. A socket that takes the whole write never
            # pauses, so nothing else would ask for the rest (a peer with windows that need no
            # WINDOW_UPDATE sends nothing that would): ask again after this write.
            self._schedule_flush()
        if self._room_waiters:
            for stream_id, waiter in self._room_waiters.items():
                if not waiter.done() and core.has_room(stream_id):
                    waiter.set_result(None)
        if self._closing and not self._streams and not core.queued_size:
            self._loop.call_soon(self._close_if_done)  # the last queued body just went out
        if core.new_deadline is not None:
            self._arm_core_timer()
        return data

    def _close_if_done(self) -> None:
        """A graceful close ends once no stream runs, no body waits in the core, and the final
        GOAWAY is out."""
        core = self._core
        if self._closing and not self._streams and not core.queued_size and core.goaway_complete:
            self._close_transport()

    def _close_transport(self) -> None:
        super()._close_transport()
        # GOAWAY with an error, a connection error, a timeout: no stream will be answered now.
        self._disconnect_streams()

    def abort(self) -> None:
        """The graceful timeout ran out: WebSockets get Close 1001 first, then the close."""
        for stream in self._streams.values():
            if type(stream) is H2WebSocket:
                stream.abort()
        super().abort()

    def shutdown(self) -> None:
        """Graceful close: GOAWAY now, close once the streams in flight are done."""
        if self._closed or self._closing:
            return
        self._closing = True
        # The final GOAWAY follows the client's PING ACK, or the core's deadline for it.
        self._core.start_graceful_close(monotonic())
        self._flush()
        self._arm_core_timer()

    def retire(self) -> None:
        """Serve on, but GOAWAY as soon as no stream has run for the core's retire timeout."""
        if self._closed or self._closing or self._retiring:
            return
        self._retiring = True
        self._core.retire()
        self._arm_core_timer()
