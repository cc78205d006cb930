"""What the HTTP/2 and HTTP/1.1 connection protocols share: their server context, the socket
they adopt, the one way bytes go out, and the limits on output a peer leaves unread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from osmium.asgi import HTTP1_EXTENSIONS, HTTPStream, ResponseFields
from osmium.protocol.events import Headers, field_value
from osmium.protocol.priority import DEFAULT_PRIORITY
from osmium.tls.scope import tls_extension
from osmium.transport.context import ConnectionTally, ServerContext
from osmium.transport.drain import WriteGate

log = logging.getLogger("osmium.connection")

#: The body of each answer the server gives a request no handler runs for (or runs no more for).
REFUSAL_BODIES = {413: b"Content Too Large", 503: b"Service Unavailable"}


class OutputCore(Protocol):
    def data_to_send(self) -> bytes: ...


def tls_view(tls: Any) -> dict[str, Any]:
    """The TLS facts of a connection (any back-end's `ssl_object`) for the admin API."""
    cipher = tls.cipher()
    return {
        "version": tls.version(),
        "cipher": cipher[0] if cipher else None,
        "alpn": tls.selected_alpn_protocol(),
        "sni": getattr(tls, "server_name_indicated", None),
    }


def stream_snapshot(
    stream: HTTPStream, state: str, now: float, waiting: str | None
) -> dict[str, Any]:
    """One stream as the admin API shows it: the path without its query, never a body."""
    scope = stream.scope
    return {
        "id": stream.stream_id,
        "method": scope.get("method", "CONNECT"),  # a WebSocket's scope has none
        "path": scope["path"],
        "state": state,
        "urgency": None,
        "incremental": None,
        "bytes_in": stream.bytes_in,
        "bytes_out": stream.bytes_out,
        "age": now - stream.started_at if stream.started_at else None,
        "waiting": waiting,
        "send_window": None,
    }


def declared_size(headers: Headers) -> int:
    """The request's content-length, 0 without one (h11 and h2 checked it is a number)."""
    value = field_value(headers, b"content-length")
    return int(value) if value is not None and value.isdigit() else 0


def address(info: object) -> tuple[str, int] | None:
    """A TCP peer or local address as (host, port); None for anything else (a unix socket's
    peer has no address)."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


def server_address(info: object) -> tuple[str, int | None] | None:
    """The scope's `server`: (host, port), or (path, None) on a unix socket (ASGI)."""
    if isinstance(info, str) and info:
        return info, None
    return address(info)


#: What a request handler's task is called (asyncio.current_task().get_name()).
HANDLER_TASK_NAME = "osmium-request"


class ConnectionProtocol(asyncio.Protocol):
    """Base of one connection's protocol; subclasses own a sans-IO core and its events.

    Output a peer does not read is bounded three ways: above `max_connection_output` the app's
    sends wait (asyncio pauses writing); a connection paused for `send_timeout`, or closed with
    bytes still unsent for that long, is aborted; the worker's total is `ServerContext`'s budget.
    """

    _core: OutputCore | None
    #: The subclass's handler run for one stream, once `queued` (None: at once) admits it.
    _run_stream: Callable[[HTTPStream, asyncio.Future[bool] | None], Coroutine[Any, Any, None]]

    def __init__(self, context: ServerContext) -> None:
        self._context = context
        self._counters = context.counters
        self._limits = context.limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._scheme = "http"
        #: The scope's `extensions` on this connection (with `tls` over TLS).
        self._extensions: dict[str, dict[str, Any]] = HTTP1_EXTENSIONS
        self._client: tuple[str, int] | None = None
        self._server: tuple[str, int | None] | None = None
        self._write_gate = WriteGate(self._loop)
        #: The flush scheduled for the end of this loop turn (None: none is).
        self._flush_handle: asyncio.Handle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        #: This connection's share of the worker's output tally (ServerContext.track_output).
        self.reported_output = 0
        self.tally = ConnectionTally()
        self._closing = False
        self._closed = False
        self._dropped = False

    def _adopt(self, transport: asyncio.BaseTransport, upgraded: bool = False) -> None:
        """Take the socket: buffer limits, scheme, addresses, and a place among the connections."""
        self._transport = transport  # type: ignore[assignment]
        # asyncio pauses above `high`; one byte less makes "at the cap" mean "paused".
        transport.set_write_buffer_limits(high=self._limits.max_connection_output - 1)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            self._scheme = "https"
            self._extensions = {**self._extensions, "tls": tls_extension(tls)}
        self._client = address(transport.get_extra_info("peername"))
        self._server = server_address(transport.get_extra_info("sockname"))
        self.tally.opened_at = self._loop.time()
        self._context.register(self, new=not upgraded)  # type: ignore[arg-type]

    def _start_handler(self, stream: HTTPStream) -> asyncio.Task[None]:
        """Count the request, then run its handler (`_run_stream`) once admission lets it: at
        once below the worker's cap, else when a slot frees (the future `_run_stream` awaits)."""
        context = self._context
        counters = self._counters
        counters.requests += 1
        self.tally.requests += 1
        if context.request_stats is not None:
            stream.started_at = time.monotonic()
        if counters.requests == context.max_requests and context.on_max_requests:
            context.on_max_requests()
        queued = None
        admission = context.admission
        if admission is not None and not admission.try_enter():
            queued = admission.wait(self, stream.stream_id, self._urgency(stream.stream_id))
        handler = self._run_stream(stream, queued)
        if self._loop.get_task_factory() is None:
            # Named: Python 3.11 formats a "Task-<n>" name for each task made without one.
            return asyncio.Task(handler, loop=self._loop, name=HANDLER_TASK_NAME)
        return self._loop.create_task(handler)

    def _refusal(self, headers: Headers) -> int | None:
        """Whether the server answers this request (or WebSocket) itself, before any handler
        runs: 413 for a content-length over max_request_body_size, 503 past --limit-concurrency
        (counted either way). None: it goes on, and counts in flight until its handler ends."""
        context = self._context
        limit = context.max_request_body_size
        if limit and declared_size(headers) > limit:
            context.refused("max_request_body_size", 413)
            return 413
        concurrency = context.concurrency
        if concurrency is not None and not concurrency.try_enter():
            context.refused("limit_concurrency", 503)
            return 503
        return None

    def _count_websocket(self) -> None:
        """A WebSocket counts as a request; it takes no handler slot (it may live for hours)."""
        self._counters.requests += 1
        self.tally.requests += 1

    def _count_request(self, stream: HTTPStream) -> None:
        """The admin plane is on: the request's status and time from arrival to its end."""
        stats = self._context.request_stats
        assert stats is not None
        stats.record(stream.status, time.monotonic() - stream.started_at)

    def _urgency(self, stream_id: int) -> int:
        """Where a waiting stream goes among its connection's others (RFC 9218 urgency)."""
        return DEFAULT_PRIORITY.urgency

    def _schedule_flush(self) -> None:
        """Write at the end of this loop turn: what the app sends in one turn (a response's head
        and its body, say) leaves in one write, so one segment, not two that wait on Nagle."""
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush_after_handlers(self) -> None:
        """`_schedule_flush`, behind the handlers started so far in this turn: a write already
        due (a new connection's preface, say) waits for their first steps, which often answer."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Everything the core has to send now, in one write."""
        self._flush_handle = None
        data = self._output()
        if data and not self._closed:
            transport = self._transport
            assert transport is not None
            transport.write(data)
            self.tally.bytes_out += len(data)
            buffered = transport.get_write_buffer_size()
            if buffered or self.reported_output:
                self._context.track_output(self, buffered)  # type: ignore[arg-type]

    def _output(self) -> bytes:
        assert self._core is not None
        return self._core.data_to_send()

    # -- what the admin plane shows ---------------------------------------------------------------

    #: "h2", "h2c" or "http/1.1"
    protocol_name = "http/1.1"

    @property
    def last_received_at(self) -> float:
        """When the peer last sent bytes (loop time)."""
        raise NotImplementedError

    def snapshot(self, now: float) -> dict[str, Any]:
        """This connection as the admin API shows it (times in loop time: `now` is loop time)."""
        transport = self._transport
        tls = transport.get_extra_info("ssl_object") if transport is not None else None
        tally = self.tally
        return {
            "peer": f"{self._client[0]}:{self._client[1]}" if self._client else None,
            "protocol": self.protocol_name,
            "tls": None if tls is None else tls_view(tls),
            "age": now - tally.opened_at,
            "idle": now - self.last_received_at,
            "requests": tally.requests,
            "streams_open": self.open_streams,
            "bytes_in": tally.bytes_in,
            "bytes_out": tally.bytes_out,
            "windows": None,
            "output_queued": self.output_buffered,
            "ping_rtt_ms": None,
        }

    def stream_snapshots(self, now: float) -> list[dict[str, Any]]:
        """The streams open now, as the admin API shows them."""
        raise NotImplementedError

    @property
    def open_streams(self) -> int:
        raise NotImplementedError

    @property
    def peer_host(self) -> str:
        """The client's address, for log lines."""
        return self._client[0] if self._client else "?"

    @property
    def output_buffered(self) -> int:
        """Bytes written but not yet taken by the socket."""
        if self._transport is None or self._closed:
            return 0
        return self._transport.get_write_buffer_size()

    # -- a peer that does not read ---------------------------------------------------------------

    def pause_writing(self) -> None:
        self._write_gate.pause()
        self._stall_timer = self._loop.call_later(self._limits.send_timeout, self._stalled)

    def resume_writing(self) -> None:
        if self._stall_timer is not None and not self._closed:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._context.track_output(self, self.output_buffered)  # type: ignore[arg-type]
        self._write_gate.resume()

    def _stalled(self) -> None:
        log.info(
            "closing connection from %s: %d bytes unread for %.0f s",
            self.peer_host,
            self.output_buffered,
            self._limits.send_timeout,
        )
        self.drop()

    def _time_out(self, what: str, seconds: float) -> None:
        """A handshake or request header section that came too slowly: close, counted."""
        if self._closed:
            return
        log.info(
            "closing connection from %s: %s not complete within %g s",
            self.peer_host,
            what,
            seconds,
        )
        self._counters.timeouts += 1
        self._close_transport()

    def drop(self) -> None:
        """Close at once and discard unsent output: the peer is not reading it."""
        if self._transport is None or self._dropped:
            return
        self._dropped = self._closed = True
        self._counters.connections_dropped += 1
        self._transport.abort()

    # -- closing ---------------------------------------------------------------------------------

    def _close_transport(self) -> None:
        if self._closed or self._transport is None:
            return
        self._flush()
        self._closed = True
        if self._transport.get_write_buffer_size() and self._stall_timer is None:
            # close() waits for the buffer to drain, which a peer that never reads prevents.
            self._stall_timer = self._loop.call_later(self._limits.send_timeout, self.drop)
        self._transport.close()

    def _forget(self) -> None:
        """connection_lost: off the worker's books, timers cancelled, waiting senders woken."""
        self._closed = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._context.track_output(self, 0)  # type: ignore[arg-type]
        self._context.unregister(self)  # type: ignore[arg-type]
        self._write_gate.resume()

    def abort(self) -> None:
        """Close now, whatever is in flight (the graceful timeout ran out)."""
        self._close_transport()

    def response_fields(self) -> ResponseFields:
        # A method, not a property: Python 3.11 specialises a method call, not a property read.
        return self._context.response_fields
