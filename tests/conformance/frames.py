"""A raw HTTP/2 client for conformance tests: frames in, frames out, nothing hidden.

Unlike a real client library it never fixes up what the test sends: invalid frame types, lengths,
flags and header blocks go on the wire exactly as given. Every read has a deadline, so a server that
stays silent fails the test instead of hanging it; the connection is closed by `close()` (or the
context manager / the `connect` fixture in conftest.py).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import TracebackType

from h2.errors import ErrorCodes as ErrorCode
from hpack import Decoder, Encoder
from hpack.exceptions import HPACKError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Seconds any single wait for the server may take before the test fails.
TIMEOUT = 5.0
MAX_WINDOW = 2**31 - 1
DEFAULT_MAX_FRAME_SIZE = 16_384
DEFAULT_WINDOW = 65_535


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9
    PRIORITY_UPDATE = 0x10  # RFC 9218 §7.1


class Flag:
    END_STREAM = 0x01
    ACK = 0x01
    END_HEADERS = 0x04
    PADDED = 0x08
    PRIORITY = 0x20


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    NO_RFC7540_PRIORITIES = 0x9  # RFC 9218 §2.1


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return hex(code)


# -- building frames by hand ---------------------------------------------------------------------


def raw_frame(
    frame_type: int,
    flags: int = 0,
    stream_id: int = 0,
    payload: bytes = b"",
    *,
    length: int | None = None,
    reserved_bit: bool = False,
) -> bytes:
    """A frame exactly as described: `length` may lie about the payload, R may be set."""
    size = len(payload) if length is None else length
    stream = (stream_id & 0x7FFFFFFF) | (0x80000000 if reserved_bit else 0)
    return struct.pack(">I", size)[1:] + struct.pack(">BBI", frame_type, flags, stream) + payload


def settings_payload(settings: dict[int, int] | Iterable[tuple[int, int]]) -> bytes:
    pairs = settings.items() if isinstance(settings, dict) else settings
    return b"".join(struct.pack(">HI", key, value) for key, value in pairs)


def priority_payload(depends_on: int = 0, weight: int = 16, exclusive: bool = False) -> bytes:
    """Stream dependency (E bit + 31 bits) and weight-1, as in PRIORITY and HEADERS+PRIORITY."""
    return struct.pack(">IB", depends_on | (0x80000000 if exclusive else 0), weight - 1)


def padded(payload: bytes, pad_length: int, *, pad_length_field: int | None = None) -> bytes:
    """Pad Length byte + payload + padding; `pad_length_field` may claim a different length."""
    claimed = pad_length if pad_length_field is None else pad_length_field
    return bytes([claimed]) + payload + b"\0" * pad_length


# -- HPACK by hand (RFC 7541), for blocks the hpack Encoder would never produce --------------------


def hpack_int(value: int, prefix_bits: int, first_byte: int = 0) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; `first_byte` carries the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(value: bytes | str, *, huffman: bool = False) -> bytes:
    """RFC 7541 §5.2 string literal (raw, or Huffman-coded with hpack's table)."""
    data = value.encode() if isinstance(value, str) else value
    if huffman:
        from hpack.huffman import HuffmanEncoder
        from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

        coded = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(data)
        return hpack_int(len(coded), 7, 0x80) + coded
    return hpack_int(len(data), 7) + data


def hpack_indexed(index: int) -> bytes:
    """§6.1 indexed header field."""
    return hpack_int(index, 7, 0x80)


def hpack_literal(
    name: bytes | str | int,
    value: bytes | str,
    *,
    indexing: str = "without",
    huffman: bool = False,
) -> bytes:
    """§6.2 literal: indexing is "incremental" (§6.2.1), "without" (§6.2.2) or "never" (§6.2.3).

    `name` is a literal string or an index into the tables.
    """
    prefix_bits, pattern = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}[
        indexing
    ]
    if isinstance(name, int):
        head = hpack_int(name, prefix_bits, pattern)
    else:
        head = bytes([pattern]) + hpack_string(name, huffman=huffman)
    return head + hpack_string(value, huffman=huffman)


def hpack_size_update(size: int) -> bytes:
    """§6.3 dynamic table size update."""
    return hpack_int(size, 5, 0x20)


# Static table indices used by tests (RFC 7541 Appendix A).
STATIC_AUTHORITY = 1
STATIC_METHOD_GET = 2
STATIC_METHOD_POST = 3
STATIC_PATH_ROOT = 4
STATIC_SCHEME_HTTP = 6
STATIC_PATH_NAME = 4  # ":path" name, for literals with an indexed name


def request_block(path: str = "/", method: str = "GET", authority: str = "localhost") -> bytes:
    """The four request pseudo-headers with literals that never touch the dynamic table."""
    method_index = {"GET": STATIC_METHOD_GET, "POST": STATIC_METHOD_POST}.get(method)
    method_field = (
        hpack_indexed(method_index)
        if method_index
        else hpack_literal(STATIC_METHOD_GET, method, indexing="without")
    )
    return (
        method_field
        + hpack_indexed(STATIC_SCHEME_HTTP)
        + hpack_literal(STATIC_PATH_NAME, path, indexing="without")
        + hpack_literal(STATIC_AUTHORITY, authority, indexing="without")
    )


# -- the client ----------------------------------------------------------------------------------


class ConnectionClosed(Exception):
    """The server closed the TCP connection (EOF or reset)."""


@dataclass
class StreamState:
    """What the server sent on one stream, as read so far."""

    header_blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    data_frames: list[DataFrame] = field(default_factory=list)
    ended: bool = False
    reset_code: int | None = None


@dataclass
class Response:
    stream_id: int
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] | None
    data_frames: list[DataFrame]

    @property
    def status(self) -> int:
        return int(self.header(":status") or 0)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


def describe(frame: Frame) -> str:
    name = type(frame).__name__.removesuffix("Frame")
    flags = ",".join(sorted(frame.flags))
    extra = ""
    if isinstance(frame, (GoAwayFrame, RstStreamFrame)):
        extra = f" {_code_name(frame.error_code)}"
    if isinstance(frame, GoAwayFrame):
        extra += f" last={frame.last_stream_id} {bytes(frame.additional_data)[:80]!r}"
    if isinstance(frame, WindowUpdateFrame):
        extra = f" +{frame.window_increment}"
    if isinstance(frame, DataFrame):
        extra = f" len={len(frame.data)}"
    return f"{name}(stream={frame.stream_id}{' ' + flags if flags else ''}{extra})"


class RawClient:
    """One TCP connection to the server, speaking HTTP/2 frame by frame."""

    def __init__(
        self, host: str, port: int, *, timeout: float = TIMEOUT, tls: ssl.SSLContext | None = None
    ) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            assert self.sock.selected_alpn_protocol() == "h2", "ALPN did not pick h2"
        self.authority = f"{host}:{port}"
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 24
        #: The largest frame we accept: our SETTINGS_MAX_FRAME_SIZE (checked on every frame).
        self.max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self.server_settings: dict[int, int] = {}
        self.received: list[Frame] = []
        self.streams: dict[int, StreamState] = {}
        #: DATA bytes read (by any helper) and not yet given back with WINDOW_UPDATE, by stream.
        self._unreplenished: dict[int, int] = {}
        self.closed_by_peer = False
        self._buffer = bytearray()
        self._header_block: list[Frame] = []
        self._stream_ids = itertools.count(1, 2)
        self._ping_ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def handshake(self, settings: dict[int, int] | None = None) -> None:
        """Preface + SETTINGS; wait for the server's SETTINGS (ACKed) and the ACK of ours."""
        settings = settings or {}
        if Setting.MAX_FRAME_SIZE in settings:
            self.max_frame_size = settings[Setting.MAX_FRAME_SIZE]
        self.send_raw(PREFACE + raw_frame(FrameType.SETTINGS, 0, 0, settings_payload(settings)))
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            frame = self.wait_for(lambda f: isinstance(f, SettingsFrame), "server SETTINGS")
            if "ACK" in frame.flags:
                got_ack = True
            else:
                got_settings = True

    def next_stream_id(self) -> int:
        return next(self._stream_ids)

    # -- sending ---------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame: Frame) -> None:
        self.send_raw(frame.serialize())

    def encode(self, headers: Sequence[tuple[str, str]]) -> bytes:
        """A header block from this connection's stateful encoder (so it may use the table)."""
        return self.encoder.encode(list(headers))

    def request_headers(
        self, path: str = "/", method: str = "GET", extra: Iterable[tuple[str, str]] = ()
    ) -> list[tuple[str, str]]:
        return [
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            *extra,
        ]

    def send_headers(
        self,
        stream_id: int,
        headers: Sequence[tuple[str, str]] | None = None,
        *,
        block: bytes | None = None,
        end_stream: bool = True,
        end_headers: bool = True,
        priority: bytes | None = None,
        pad_length: int | None = None,
        reserved_bit: bool = False,
    ) -> None:
        """HEADERS with `headers` (encoded here) or a ready-made `block`, exactly as asked."""
        payload = block if block is not None else self.encode(headers or [])
        flags = (Flag.END_STREAM if end_stream else 0) | (Flag.END_HEADERS if end_headers else 0)
        if priority is not None:
            flags |= Flag.PRIORITY
            payload = priority + payload
        if pad_length is not None:
            flags |= Flag.PADDED
            payload = padded(payload, pad_length)
        self.send_raw(
            raw_frame(FrameType.HEADERS, flags, stream_id, payload, reserved_bit=reserved_bit)
        )

    def send_continuation(self, stream_id: int, block: bytes, *, end_headers: bool = True) -> None:
        flags = Flag.END_HEADERS if end_headers else 0
        self.send_raw(raw_frame(FrameType.CONTINUATION, flags, stream_id, block))

    def send_data(
        self,
        stream_id: int,
        data: bytes,
        *,
        end_stream: bool = True,
        pad_length: int | None = None,
    ) -> None:
        """One DATA frame (no splitting: the test decides the frame size)."""
        flags = Flag.END_STREAM if end_stream else 0
        payload = data
        if pad_length is not None:
            flags |= Flag.PADDED
            payload = padded(data, pad_length)
        self.send_raw(raw_frame(FrameType.DATA, flags, stream_id, payload))

    def send_body(self, stream_id: int, data: bytes, *, end_stream: bool = True) -> None:
        """`data` in DATA frames no larger than the server's SETTINGS_MAX_FRAME_SIZE."""
        size = self.server_settings.get(Setting.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE)
        frames = [data[start : start + size] for start in range(0, len(data), size)] or [b""]
        for index, chunk in enumerate(frames):
            self.send_data(stream_id, chunk, end_stream=end_stream and index == len(frames) - 1)

    def send_settings(self, settings: dict[int, int] | None = None, *, ack: bool = False) -> None:
        payload = settings_payload(settings or {})
        self.send_raw(raw_frame(FrameType.SETTINGS, Flag.ACK if ack else 0, 0, payload))

    def send_ping(self, payload: bytes = b"\0" * 8, *, ack: bool = False) -> None:
        self.send_raw(raw_frame(FrameType.PING, Flag.ACK if ack else 0, 0, payload))

    def send_window_update(self, stream_id: int, increment: int) -> None:
        payload = struct.pack(">I", increment)
        self.send_raw(raw_frame(FrameType.WINDOW_UPDATE, 0, stream_id, payload))

    def send_rst_stream(self, stream_id: int, error_code: int) -> None:
        payload = struct.pack(">I", error_code)
        self.send_raw(raw_frame(FrameType.RST_STREAM, 0, stream_id, payload))

    def send_priority(
        self, stream_id: int, depends_on: int = 0, weight: int = 16, exclusive: bool = False
    ) -> None:
        payload = priority_payload(depends_on, weight, exclusive)
        self.send_raw(raw_frame(FrameType.PRIORITY, 0, stream_id, payload))

    def send_priority_update(self, prioritized_stream_id: int, value: bytes) -> None:
        """RFC 9218 §7.1: new priority parameters for a request stream, sent on stream 0."""
        payload = struct.pack(">I", prioritized_stream_id) + value
        self.send_raw(raw_frame(FrameType.PRIORITY_UPDATE, 0, 0, payload))

    def send_goaway(self, last_stream_id: int, error_code: int, debug: bytes = b"") -> None:
        payload = struct.pack(">II", last_stream_id, error_code) + debug
        self.send_raw(raw_frame(FrameType.GOAWAY, 0, 0, payload))

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        *,
        end_stream: bool = True,
    ) -> int:
        """Open a stream with the next odd id and return it; without a body, HEADERS ends it."""
        stream_id = self.next_stream_id()
        fields = self.request_headers(path, method, headers)
        self.send_headers(stream_id, fields, end_stream=end_stream and body is None)
        if body is not None:
            self.send_body(stream_id, body, end_stream=end_stream)
        return stream_id

    # -- receiving -------------------------------------------------------------------------------

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as error:
            if error.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
                self.closed_by_peer = True
                raise ConnectionClosed from error
            raise
        if not chunk:
            self.closed_by_peer = True
            raise ConnectionClosed
        self._buffer += chunk

    def read_raw_until_closed(self, timeout: float | None = None) -> bytes:
        """Every byte the server sends until it closes (for replies that are not frames)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while True:
                self._recv(deadline)
        except ConnectionClosed:
            return bytes(self._buffer)

    def read_frame(self, timeout: float | None = None) -> Frame:
        """The next frame from the server; TimeoutError after `timeout`, ConnectionClosed at EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._buffer) < 9:
            self._recv(deadline)
        frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:9])))
        assert length <= self.max_frame_size, (
            f"RFC 9113 §4.2: server sent a {length}-byte {describe(frame)} frame, "
            f"over our SETTINGS_MAX_FRAME_SIZE {self.max_frame_size}"
        )
        while len(self._buffer) < 9 + length:
            self._recv(deadline)
        frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
        del self._buffer[: 9 + length]
        self.received.append(frame)
        self._track(frame)
        return frame

    def _track(self, frame: Frame) -> None:
        """Keep HPACK state and per-stream results in sync with every frame read."""
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, ContinuationFrame):
                assert self._header_block, (
                    f"server sent a CONTINUATION out of a header block: {frame}"
                )
            self._header_block.append(frame)
            if "END_HEADERS" not in frame.flags:
                return
            first, *_ = self._header_block
            block = b"".join(bytes(f.data) for f in self._header_block)
            self._header_block = []
            try:
                headers = self.decoder.decode(block)
            except HPACKError as error:
                raise AssertionError(
                    f"server sent an undecodable header block: {error!r}"
                ) from error
            state = self.streams.setdefault(first.stream_id, StreamState())
            state.header_blocks.append(list(headers))
            if "END_STREAM" in first.flags:
                state.ended = True
        elif self._header_block:
            raise AssertionError(
                f"RFC 9113 §6.10: server interleaved {describe(frame)} inside a header block"
            )
        elif isinstance(frame, DataFrame):
            size = frame.flow_controlled_length
            self._unreplenished[0] = self._unreplenished.get(0, 0) + size
            if "END_STREAM" not in frame.flags:
                pending = self._unreplenished.get(frame.stream_id, 0) + size
                self._unreplenished[frame.stream_id] = pending
            state = self.streams.setdefault(frame.stream_id, StreamState())
            state.data += frame.data
            state.data_frames.append(frame)
            if "END_STREAM" in frame.flags:
                state.ended = True
        elif isinstance(frame, RstStreamFrame):
            self.streams.setdefault(frame.stream_id, StreamState()).reset_code = frame.error_code
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.server_settings.update(frame.settings)

    def _history(self) -> str:
        return ", ".join(describe(frame) for frame in self.received[-30:]) or "nothing"

    def wait_for(
        self,
        predicate: Callable[[Frame], bool],
        what: str = "a matching frame",
        timeout: float | None = None,
    ) -> Frame:
        """Read frames (ACKing the server's SETTINGS and PINGs, as §6.5 and §6.7 require) until
        one matches; fail on EOF or timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(
                    f"timed out waiting for {what}; received: {self._history()}"
                ) from None
            except ConnectionClosed:
                raise AssertionError(
                    f"connection closed while waiting for {what}; received: {self._history()}"
                ) from None
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self._ack_settings()
            if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                with contextlib.suppress(OSError):
                    self.send_ping(frame.opaque_data, ack=True)
            if predicate(frame):
                return frame

    def _ack_settings(self) -> None:
        # The server may already have closed; the caller sees that on its next read.
        with contextlib.suppress(OSError):
            self.send_settings(ack=True)

    # -- expectations ----------------------------------------------------------------------------

    def expect_goaway(self, error_code: int, *, last_stream_id: int | None = None) -> GoAwayFrame:
        """The next GOAWAY has `error_code` (and `last_stream_id`, if given)."""
        frame = self.wait_for(
            lambda f: isinstance(f, GoAwayFrame), f"GOAWAY({_code_name(error_code)})"
        )
        assert frame.error_code == error_code, (
            f"expected GOAWAY {_code_name(error_code)}, got {describe(frame)}"
        )
        if last_stream_id is not None:
            assert frame.last_stream_id == last_stream_id, describe(frame)
        return frame

    def expect_closed(self, timeout: float | None = None) -> list[Frame]:
        """The server closes the connection; returns the frames it sent before that."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        start = len(self.received)
        while True:
            try:
                self.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            except ConnectionClosed:
                return self.received[start:]
            except TimeoutError:
                raise AssertionError(
                    f"server did not close the connection; received: {self._history()}"
                ) from None

    def expect_connection_error(self, error_code: int) -> GoAwayFrame:
        """RFC 9113 §5.4.1: GOAWAY with `error_code`, then the TCP connection is closed."""
        frame = self.expect_goaway(error_code)
        self.expect_closed()
        return frame

    def expect_rst(self, stream_id: int, error_code: int) -> RstStreamFrame:
        """Exactly RST_STREAM(error_code) on `stream_id` (a GOAWAY instead fails)."""
        frame = self.wait_for(
            lambda f: (
                isinstance(f, GoAwayFrame)
                or (isinstance(f, RstStreamFrame) and f.stream_id == stream_id)
            ),
            f"RST_STREAM({_code_name(error_code)}) on stream {stream_id}",
        )
        assert isinstance(frame, RstStreamFrame), (
            f"expected RST_STREAM {_code_name(error_code)} on stream {stream_id}, "
            f"got {describe(frame)}"
        )
        assert frame.error_code == error_code, (
            f"expected RST_STREAM {_code_name(error_code)}, got {describe(frame)}"
        )
        return frame

    def expect_stream_error(self, stream_id: int, error_code: int) -> Frame:
        """RFC 9113 §5.4.2, or §5.4.1 escalation: RST_STREAM or GOAWAY carrying `error_code`."""
        frame = self.wait_for(
            lambda f: (
                isinstance(f, GoAwayFrame)
                or (isinstance(f, RstStreamFrame) and f.stream_id == stream_id)
            ),
            f"RST_STREAM/GOAWAY({_code_name(error_code)}) for stream {stream_id}",
        )
        assert frame.error_code == error_code, (
            f"expected stream error {_code_name(error_code)} on stream {stream_id}, "
            f"got {describe(frame)}"
        )
        return frame

    def expect_error_or_close(self, error_code: int) -> None:
        """Connection error where RFC 9113 lets GOAWAY be omitted (e.g. a bad preface, §3.4)."""
        frames = self.expect_closed()
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        for goaway in goaways:
            assert goaway.error_code == error_code, describe(goaway)

    def ping(self, timeout: float | None = None) -> list[Frame]:
        """Round trip a PING; returns the frames read before its ACK. Fails on GOAWAY or EOF.

        A server handles frames in order, so everything it did in reply to earlier frames is
        on the wire before this ACK: what is not in the result was not sent.
        """
        payload = struct.pack(">Q", 0x6F736D69_00000000 + next(self._ping_ids))
        start = len(self.received)
        self.send_ping(payload)
        self.wait_for(
            lambda f: (
                isinstance(f, GoAwayFrame)
                or (isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == payload)
            ),
            "PING ACK",
            timeout,
        )
        frames = self.received[start:]
        last = frames.pop()
        assert not isinstance(last, GoAwayFrame), (
            f"expected the connection to stay open, got {describe(last)}"
        )
        return frames

    def assert_ignored(self) -> None:
        """The server answered nothing but the PING: no RST_STREAM, no GOAWAY."""
        frames = self.ping()
        errors = [f for f in frames if isinstance(f, (RstStreamFrame, GoAwayFrame))]
        assert not errors, f"expected the frame to be ignored, got {[describe(f) for f in errors]}"

    def read_response(self, stream_id: int, *, replenish: bool = True) -> Response:
        """Frames until `stream_id` ends; WINDOW_UPDATEs returned for DATA when `replenish`.

        Fails if the stream is reset or the connection fails first.
        """
        state = self.streams.setdefault(stream_id, StreamState())
        while not state.ended:
            assert state.reset_code is None, (
                f"stream {stream_id} was reset with {_code_name(state.reset_code)}; "
                f"received: {self._history()}"
            )
            if replenish:
                self._replenish()
            frame = self.wait_for(lambda f: True, f"the end of stream {stream_id}")
            if isinstance(frame, GoAwayFrame) and frame.error_code != ErrorCode.NO_ERROR:
                raise AssertionError(
                    f"connection failed while reading stream {stream_id}: {describe(frame)}"
                )
        assert state.header_blocks, f"stream {stream_id} ended without a HEADERS frame"
        headers = state.header_blocks[0]
        trailers = state.header_blocks[1] if len(state.header_blocks) > 1 else None
        return Response(stream_id, headers, bytes(state.data), trailers, state.data_frames)

    def _replenish(self) -> None:
        """WINDOW_UPDATE for every DATA byte read so far, also by helpers such as `ping()`."""
        for stream_id, size in self._unreplenished.items():
            if size and not (stream_id and self.streams.get(stream_id, StreamState()).ended):
                self.send_window_update(stream_id, size)
        self._unreplenished.clear()

    def get(self, path: str = "/", headers: Iterable[tuple[str, str]] = ()) -> Response:
        return self.read_response(self.request(path, headers=headers))
