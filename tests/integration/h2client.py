"""A small blocking HTTP/2 client on a raw socket, built on `h2`, for what real clients hide.

httpx, curl and nghttp manage flow control, resets and GOAWAY for us; the tests that must see or
steer those (slow readers, client resets, graceful shutdown) drive this client instead. It is
full-duplex: while it waits for send window it keeps reading, so echo bodies of any size work.
Every wait has a deadline and raises `TimeoutError` with what was seen so far.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

DEFAULT_TIMEOUT = 10.0
Headers = list[tuple[bytes, bytes]]


def request_headers(
    method: str, path: str, authority: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> Headers:
    """A request's pseudo-header fields (cleartext scheme), then `extra`."""
    return [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", authority.encode()),
        (b":path", path.encode()),
        *extra,
    ]


@dataclass
class StreamState:
    """What the server sent on one stream."""

    stream_id: int
    headers: Headers | None = None
    data: bytearray = field(default_factory=bytearray)
    received: int = 0
    trailers: Headers | None = None
    ended: bool = False
    reset_code: int | None = None
    window_updates: int = 0
    #: Sum of the stream's WINDOW_UPDATE increments from the server.
    window_credit: int = 0
    #: Called with each DATA payload as it arrives.
    on_data: Callable[[bytes], None] | None = None
    #: Keep the body in `data` (off for very large bodies, which `on_data` digests instead).
    keep_data: bool = True

    @property
    def done(self) -> bool:
        return self.ended or self.reset_code is not None

    @property
    def status(self) -> int | None:
        return int(self.header(b":status")) if self.headers is not None else None

    def header(self, name: bytes) -> bytes:
        assert self.headers is not None, f"stream {self.stream_id}: no response headers yet"
        for key, value in self.headers:
            if key == name:
                return value
        raise KeyError(name)


class _ClientH2Connection(h2.connection.H2Connection):
    """h2, but a GOAWAY(NO_ERROR) does not close our side: streams in flight may still finish.

    Stock h2 moves the connection to CLOSED on any GOAWAY and then treats the server's remaining
    DATA frames as a protocol error; RFC 9113 §6.8 lets streams up to last_stream_id complete.
    """

    #: Open streams past the server's SETTINGS_MAX_CONCURRENT_STREAMS (to see it refuse them).
    ignore_stream_limit = False

    @property
    def open_outbound_streams(self) -> int:
        return 0 if self.ignore_stream_limit else super().open_outbound_streams

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list, list]:
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:  # a code RFC 9113 does not define is still reported, as a number
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class H2Client:
    """One HTTP/2 (h2c) connection. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        settings: dict[int, int] | None = None,
        connection_window: int | None = None,
        auto_ack: bool = True,
        authority: str | None = None,
        ignore_stream_limit: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.authority = authority or f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=DEFAULT_TIMEOUT)
        self.sock.setblocking(False)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = _ClientH2Connection(config=config)
        self.conn.ignore_stream_limit = ignore_stream_limit
        if settings:
            values = {h2.settings.SettingCodes.ENABLE_PUSH: 0, **settings}
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
        self.auto_ack = auto_ack
        self.streams: dict[int, StreamState] = {}
        #: The server's SETTINGS as received (setting code -> value).
        self.remote_settings: dict[int, int] = {}
        self.settings_frames = 0
        self.goaways: list[h2.events.ConnectionTerminated] = []
        self.connection_window_updates = 0
        self.connection_window_credit = 0
        self.ping_acks: set[bytes] = set()
        self.eof = False
        self.events: list[h2.events.Event] = []
        self._outbox = bytearray()
        self.conn.initiate_connection()
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self.flush()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        headers: Headers | None = None,
        *,
        end_stream: bool = True,
        on_data: Callable[[bytes], None] | None = None,
        keep_data: bool = True,
    ) -> int:
        """Send a request header block; returns the new stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        block = request_headers(method, path, self.authority, headers or [])
        self.streams[stream_id] = StreamState(stream_id, on_data=on_data, keep_data=keep_data)
        self.conn.send_headers(stream_id, block, end_stream=end_stream)
        self.flush()
        return stream_id

    def send_body(
        self, stream_id: int, data: bytes, *, end_stream: bool = False, timeout: float = 30.0
    ) -> int:
        """Send `data`, waiting (and reading) whenever the send window is closed.

        Returns how many times it had to wait for a WINDOW_UPDATE.
        """
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        waits = 0
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                waits += 1
                self._wait_for_send_window(stream_id, deadline)
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, chunk.tobytes(), end_stream=end_stream and not view)
            self.flush()
            # Keep reading what the server sends back, so neither side's window stalls.
            self._pump(0)
        if end_stream and not data:
            self.conn.end_stream(stream_id)
            self.flush()
        return waits

    def _wait_for_send_window(self, stream_id: int, deadline: float) -> None:
        while self.conn.local_flow_control_window(stream_id) <= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"stream {stream_id}: send window stayed closed")
            self._check_alive(stream_id)
            self._pump(min(remaining, 0.5))

    def _check_alive(self, stream_id: int) -> None:
        stream = self.streams[stream_id]
        if stream.reset_code is not None:
            raise ConnectionError(f"stream {stream_id} was reset with code {stream.reset_code}")
        if self.eof:
            raise ConnectionError("server closed the connection")

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        self.conn.reset_stream(stream_id, error_code)
        self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Open the stream and connection windows by exactly `size` bytes, now."""
        self.conn.increment_flow_control_window(size)
        if stream_id in self.conn.streams and not self.conn.streams[stream_id].closed:
            self.conn.increment_flow_control_window(size, stream_id=stream_id)
        self.flush()

    def open_connection_window(self, size: int) -> None:
        """WINDOW_UPDATE on the connection only."""
        self.conn.increment_flow_control_window(size)
        self.flush()

    def ping(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """PING and wait for its ACK: everything we sent before it has been processed."""
        payload = os.urandom(8)
        self.conn.ping(payload)
        self.flush()
        self.wait_for(lambda: payload in self.ping_acks, timeout, f"PING ACK {payload.hex()}")

    def response(self, stream_id: int, timeout: float = DEFAULT_TIMEOUT) -> StreamState:
        """Wait until the stream ended or was reset."""
        stream = self.streams[stream_id]
        self.wait_for(lambda: stream.done, timeout, f"end of stream {stream_id}")
        return stream

    def get(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> StreamState:
        return self.response(self.request("GET", path), timeout)

    # -- I/O -------------------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out waiting for {what or condition}; events: {self.events[-10:]}"
                )
            if self.eof:
                raise ConnectionError(f"connection closed while waiting for {what or condition}")
            self._pump(min(remaining, 0.5))

    def wait_for_eof(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the server did not close the connection")
            self._pump(min(remaining, 0.5))

    def read_for(self, seconds: float) -> None:
        """Keep reading for `seconds` (to show that nothing arrives in that time)."""
        deadline = time.monotonic() + seconds
        while not self.eof and (remaining := deadline - time.monotonic()) > 0:
            self._pump(remaining)

    def flush(self) -> None:
        self._outbox += self.conn.data_to_send()
        while self._outbox and not self.eof:
            _, writable, _ = select.select([], [self.sock], [], DEFAULT_TIMEOUT)
            if not writable:
                raise TimeoutError("socket not writable")
            try:
                sent = self.sock.send(self._outbox)
            except BlockingIOError:
                continue
            except OSError:
                self.eof = True
                return
            del self._outbox[:sent]
            # Read while writing: the server may be blocked on us reading its data.
            self._pump(0, flush=False)

    def _pump(self, timeout: float, *, flush: bool = True) -> None:
        """Read what is available (waiting up to `timeout` for the first bytes) and process it."""
        if self.eof:
            return
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                break
            for event in self.conn.receive_data(data):
                self._handle(event)
            self._outbox += self.conn.data_to_send()
        if flush and self._outbox:
            self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        self.events.append(event)
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            assert stream is not None
            stream.headers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            assert stream is not None
            stream.received += len(event.data)
            if stream.keep_data:
                stream.data += event.data
            if stream.on_data is not None:
                stream.on_data(event.data)
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            assert stream is not None
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            assert stream is not None
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.reset_code = int(event.error_code)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                self.connection_window_updates += 1
                self.connection_window_credit += event.delta
            elif stream is not None:
                stream.window_updates += 1
                stream.window_credit += event.delta
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_frames += 1
            for code, change in event.changed_settings.items():
                self.remote_settings[int(code)] = change.new_value
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks.add(event.ping_data)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaways.append(event)
