"""A WebSocket client on a raw socket, for what the `websockets` library will not send or skip.

RFC 6455 by hand: the opening handshake (§4.1), frames with any opcode, flag, length and mask (§5.2)
and frames read back with deadlines, so a test can send malformed frames, stall, or ignore Pings.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import ssl
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from enum import IntEnum

from tests.integration.apps.http1_raw import RawConnection, RawResponse, request_bytes
from tests.server_process import ServerProcess

DEFAULT_TIMEOUT = 10.0
#: RFC 6455 §1.3: the GUID the server appends to Sec-WebSocket-Key to prove it read it.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: RFC 6455 §5.5: the most payload a control frame may carry.
MAX_CONTROL_PAYLOAD = 125
_READ_SIZE = 1024 * 1024


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


@dataclass(frozen=True)
class Frame:
    """One frame as the server sent it (payload unmasked; a server never masks, §5.1)."""

    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False

    @property
    def close_code(self) -> int | None:
        """A Close frame's status code; None when it carries none (1005, §7.1.5)."""
        assert self.opcode == Opcode.CLOSE, f"not a Close frame: {self}"
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self) -> str:
        shown = self.payload[:40] + (b"..." if len(self.payload) > 40 else b"")
        return f"Frame(fin={self.fin}, opcode={self.opcode:#x}, rsv1={self.rsv1}, {shown!r})"


# -- building ------------------------------------------------------------------------------------


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_token(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest()).decode()


def handshake_headers(
    key: str | None,
    version: str = "13",
    extensions: str | None = None,
    connection: str = "Upgrade",
) -> list[tuple[str, str]]:
    """The upgrade request's fields; `key=None` leaves Sec-WebSocket-Key out."""
    headers = [("Upgrade", "websocket"), ("Connection", connection)]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    headers.append(("Sec-WebSocket-Version", version))
    if extensions is not None:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return headers


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte masking key (§5.3), done as one big-integer XOR: fast for MiBs."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(payload), "big")


def frame_header(
    opcode: int,
    length: int,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask_key: bytes | None = None,
) -> bytes:
    """The header of a frame of `length` payload bytes; the shortest length encoding (§5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if mask_key is not None else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    return header + (mask_key or b"")


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    masked: bool = True,
) -> bytes:
    """A whole frame; `masked=False` makes the unmasked client frame §5.1 forbids."""
    if not masked:
        return frame_header(opcode, len(payload), fin=fin, rsv1=rsv1) + payload
    key = os.urandom(4)
    return frame_header(opcode, len(payload), fin=fin, rsv1=rsv1, mask_key=key) + mask(payload, key)


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


# -- the connection ------------------------------------------------------------------------------


class HandshakeRefused(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, response: RawResponse) -> None:
        super().__init__(f"upgrade answered {response.status}: {response.body[:200]!r}")
        self.response = response


class WebSocketConnection:
    """One upgraded connection: write raw bytes or frames, read frames with deadlines."""

    def __init__(
        self,
        sock: socket.socket,
        response: RawResponse,
        buffered: bytes = b"",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.sock = sock
        #: The 101 response, for its Sec-WebSocket-* fields.
        self.response = response
        self.buffer = bytearray(buffered)
        self.timeout = timeout
        self.eof = False

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        path: str = "/ws/echo",
        *,
        extensions: str | None = None,
        context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> WebSocketConnection:
        """A new connection, upgraded (see `upgrade_on`)."""
        connection = open_raw(host, port, context, timeout)
        try:
            return cls.upgrade_on(connection, path, extensions=extensions)
        except BaseException:
            connection.close()
            raise

    @classmethod
    def upgrade_on(
        cls,
        connection: RawConnection,
        path: str = "/ws/echo",
        *,
        extensions: str | None = None,
        connection_field: str = "Upgrade",
        early: bytes = b"",
    ) -> WebSocketConnection:
        """Upgrade an open HTTP/1.1 connection and check the 101's Sec-WebSocket-Accept.

        `early`: bytes written in the same send as the request (frames that do not wait for
        the 101). `HandshakeRefused` if the answer is not 101.
        """
        key = new_key()
        headers = handshake_headers(key, extensions=extensions, connection=connection_field)
        host, port = connection.sock.getpeername()[:2]
        connection.send(request_bytes("GET", path, f"{host}:{port}", headers) + early)
        response = connection.read_response()
        if response.status != 101:
            raise HandshakeRefused(response)
        assert response.header(b"sec-websocket-accept") == accept_token(key).encode(), response
        return cls(connection.sock, response, connection.take_buffer(), connection.timeout)

    def __enter__(self) -> WebSocketConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def abort(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0): no Close frame, no FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **flags: bool) -> None:
        self.send(build_frame(opcode, payload, **flags))

    def send_close(self, code: int, reason: str = "") -> None:
        self.send_frame(Opcode.CLOSE, close_payload(code, reason))

    # -- reading ---------------------------------------------------------------------------------

    def _fill(self, needed: int, deadline: float, what: str) -> bool:
        """Read until `needed` bytes are buffered; False if the server closed first."""
        while len(self.buffer) < needed:
            if self.eof:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}; buffered {len(self.buffer)} B")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(_READ_SIZE)
            except TimeoutError:
                raise TimeoutError(
                    f"timed out waiting for {what}; buffered {len(self.buffer)} B"
                ) from None
            except (ConnectionResetError, ssl.SSLEOFError):
                data = b""
            if not data:
                self.eof = True
            self.buffer += data
        return True

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None if the connection ended (FIN or RST) before one began."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self._fill(2, deadline, "a frame header"):
            if self.buffer:
                raise ConnectionError(f"connection ended inside a frame: {bytes(self.buffer)!r}")
            return None
        first, second = self.buffer[0], self.buffer[1]
        assert not second & 0x80, "the server masked a frame (RFC 6455 §5.1 forbids it)"
        length, offset = second & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if not self._fill(2 + size, deadline, "an extended payload length"):
                raise ConnectionError("connection ended inside a frame header")
            length = int.from_bytes(self.buffer[2 : 2 + size], "big")
            offset += size
        if not self._fill(offset + length, deadline, f"a {length}-byte payload"):
            raise ConnectionError(f"connection ended inside a {length}-byte payload")
        payload = bytes(self.buffer[offset : offset + length])
        del self.buffer[: offset + length]
        return Frame(
            fin=bool(first & 0x80), opcode=first & 0x0F, payload=payload, rsv1=bool(first & 0x40)
        )

    def expect_frame(self, timeout: float | None = None) -> Frame:
        frame = self.read_frame(timeout)
        assert frame is not None, "the server closed the connection instead of sending a frame"
        return frame

    def read_message(self, timeout: float | None = None) -> tuple[int, bytes]:
        """(opcode, payload) of the next data message, its fragments joined; Pings skipped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        opcode, parts = None, []
        while True:
            frame = self.expect_frame(deadline - time.monotonic())
            if frame.opcode in (Opcode.PING, Opcode.PONG):
                continue
            assert frame.opcode != Opcode.CLOSE, f"Close instead of a message: {frame}"
            if opcode is None:
                opcode = frame.opcode
            parts.append(frame.payload)
            if frame.fin:
                return opcode, b"".join(parts)

    def read_until_close(self, timeout: float | None = None) -> tuple[list[Frame], Frame]:
        """(frames before it, the Close frame); fails if the TCP connection ends first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before: list[Frame] = []
        while (frame := self.read_frame(deadline - time.monotonic())) is not None:
            if frame.opcode == Opcode.CLOSE:
                return before, frame
            before.append(frame)
        raise AssertionError(f"TCP closed without a Close frame; frames before: {before}")

    def wait_for_eof(self, timeout: float | None = None) -> None:
        """Discard what arrives until the server closes the TCP connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            self.buffer.clear()
            self._fill(1, deadline, "the server to close the TCP connection")


def open_raw(
    host: str, port: int, context: ssl.SSLContext | None = None, timeout: float = DEFAULT_TIMEOUT
) -> RawConnection:
    if context is None:
        return RawConnection.open(host, port, timeout)
    return RawConnection.open_tls(host, port, context, timeout)


def upgrade(
    host: str, port: int, path: str, headers: list[tuple[str, str]]
) -> tuple[RawResponse, RawConnection]:
    """Send an upgrade request with exactly `headers`; the answer and the still-open connection."""
    connection = open_raw(host, port)
    connection.send(request_bytes("GET", path, f"{host}:{port}", headers))
    return connection.read_response(), connection


MIB = 1024 * 1024
#: What the issue allows the server's memory to grow by while a peer floods or stalls.
RSS_GROWTH_LIMIT = 10 * 1000 * 1000
#: The stalled-reader case: the app sends FLOOD_COUNT messages of FLOOD_SIZE bytes while the
#: client reads nothing for STALL_SECONDS.
FLOOD_COUNT, FLOOD_SIZE = 2000, 64 * 1024
STALL_SECONDS = 3.0


def new_marker() -> str:
    return uuid.uuid4().hex[:12]


class PeakRss:
    """Samples the server's RSS every 20 ms while in the `with` block; `growth` over the start."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.baseline = self.peak = server.rss_bytes()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.server.rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_bytes())
