"""WebSockets over HTTP/2 (RFC 8441) for the load client: one TCP connection per WebSocket, its
frames in the DATA of one extended-CONNECT stream.

h2 keeps the HTTP/2 state and flow control, websockets' sans-IO core the WebSocket frames (masked,
as a client's must be). `H2WebSocket` offers the part of websockets' ClientConnection the load
client uses (send, recv, close), so one echo loop measures both protocols.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import cast
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side

#: HTTP/2's largest window: the server never waits for this client to make room.
MAX_WINDOW = 2**31 - 1
#: HTTP/2's largest frame: a big echo arrives in as few DATA frames as the server allows.
MAX_FRAME_SIZE = 2**24 - 1
DEFAULT_WINDOW = 65_535
#: Received bytes acknowledged to h2 in one call: with windows this large it would not send a
#: WINDOW_UPDATE for fewer anyway (it waits for half a window), so one call per message is waste.
ACK_BATCH = 2**20


class H2WebSocketError(ConnectionError):
    """The WebSocket cannot open or carry on (refused CONNECT, reset stream, lost connection);
    an OSError, so the load client counts it like any other broken connection. One line."""


class H2WebSocket(asyncio.Protocol):
    """One WebSocket on the only stream of its own HTTP/2 connection; open it with `connect`."""

    def __init__(self, authority: str, path: str, max_size: int, close_timeout: float) -> None:
        self._authority = authority
        self._path = path
        self._close_timeout = close_timeout
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self._ws = Protocol(Side.CLIENT, max_size=max_size)
        self._transport: asyncio.Transport | None = None
        self._stream_id = 0
        self._accepted = False
        self._closing = False
        self._paused = False
        self._error: str | None = None
        #: WebSocket bytes not yet handed to h2, in order: a Pong never cuts into a big message.
        self._outbound: deque[bytes | memoryview] = deque()
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[bytes] = []
        self._fragmented = Opcode.BINARY
        self._unacknowledged = 0
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    async def connect(
        cls, url: str, max_size: int, open_timeout: float = 10.0, close_timeout: float = 5.0
    ) -> H2WebSocket:
        """Connection preface, then extended CONNECT once the server's SETTINGS allow it."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        websocket = cls(parts.netloc, path, max_size, close_timeout)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(open_timeout):
                await loop.create_connection(lambda: websocket, parts.hostname, parts.port or 80)
                await websocket._wait_for(lambda: websocket._accepted)
        except TimeoutError:
            websocket._abort()
            raise H2WebSocketError(f"no WebSocket after {open_timeout:g}s") from None
        except BaseException:
            websocket._abort()
            raise
        return websocket

    # -- the load client's API ------------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Queue one message; return once h2 has it all (the stream's window may hold it up)."""
        if self._error is not None:
            raise H2WebSocketError(self._error)
        if isinstance(message, str):
            self._ws.send_text(message.encode())
        else:
            self._ws.send_binary(message)
        self._outbound.extend(self._ws.data_to_send())
        self._pump()
        if self._outbound or self._paused:
            await self._wait_for(lambda: not self._outbound and not self._paused)

    async def recv(self) -> str | bytes:
        """The next message; the messages that arrived before an error come first."""
        if not self._messages:
            await self._wait_for(lambda: bool(self._messages))
        return self._messages.popleft()

    async def close(self) -> None:
        """Close, and the server's Close awaited (bounded); then the connection, which carries
        nothing else. No END_STREAM: osmium ends the stream with its Close, hypercorn 0.18 waits
        for the connection to go (and fails it on a client END_STREAM after its Close)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._error is None and not self._closing:
            self._closing = True
            self._ws.send_close(CloseCode.NORMAL_CLOSURE)
            self._outbound.extend(self._ws.data_to_send())
            self._pump()
            with suppress(TimeoutError, H2WebSocketError):  # the connection goes either way
                async with asyncio.timeout(self._close_timeout):
                    await self._wait_for(lambda: self._ws.close_rcvd is not None)
        self._h2.close_connection()
        self._flush()
        transport.close()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._h2.initiate_connection()
        self._h2.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            }
        )
        self._h2.increment_flow_control_window(MAX_WINDOW - DEFAULT_WINDOW)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self._fail(f"{self._authority} does not answer in HTTP/2: {error}")
            self._flush()
            self._abort()
            return
        for event in events:
            self._handle(event)
        if self._unacknowledged >= ACK_BATCH:
            self._h2.acknowledge_received_data(self._unacknowledged, self._stream_id)
            self._unacknowledged = 0
        if self._ws.parser_exc is not None and self._error is None:
            self._fail(f"WebSocket protocol error from the server: {self._ws.parser_exc}")
        for frame in self._ws.events_received():
            self._receive(frame)
        self._outbound.extend(self._ws.data_to_send())  # Pongs and the reply to a Close
        self._pump()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._stream_id:  # before the server's SETTINGS: not HTTP/2 with prior knowledge
            self._fail(f"{self._authority} closed the connection without answering in HTTP/2")
        self._fail(f"connection closed{f': {exc}' if exc else ''}")
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # -- HTTP/2 ---------------------------------------------------------------------------------

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._ws.receive_data(event.data)
            self._unacknowledged += event.flow_controlled_length
        elif isinstance(event, h2.events.RemoteSettingsChanged) and not self._stream_id:
            self._request()
        elif isinstance(event, h2.events.ResponseReceived):
            status = dict(event.headers).get(b":status", b"?").decode()
            if status == "200":
                self._accepted = True
            else:
                self._fail(f"the server refused the WebSocket: CONNECT {self._path} -> {status}")
        elif isinstance(event, h2.events.StreamEnded) and not self._closing:
            self._fail("the server ended the stream without a Close")
        elif isinstance(event, h2.events.StreamReset):
            self._fail(f"the server reset the stream ({_code(event.error_code)})")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._fail(f"the server ended the connection (GOAWAY {_code(event.error_code)})")

    def _request(self) -> None:
        """Extended CONNECT, if the server's first SETTINGS offered it."""
        if not self._h2.remote_settings.enable_connect_protocol:
            self._fail(f"{self._authority} does not offer WebSockets over HTTP/2 (RFC 8441)")
            return
        self._stream_id = self._h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", self._path.encode()),
            (b":authority", self._authority.encode()),
            (b"sec-websocket-version", b"13"),
        ]
        self._h2.send_headers(self._stream_id, headers)

    def _pump(self) -> None:
        """Hand h2 the queued bytes as far as the window lets them; then write what h2 has."""
        connection, stream_id = self._h2, self._stream_id
        try:
            while self._outbound and self._error is None:
                room = min(
                    connection.local_flow_control_window(stream_id),
                    connection.max_outbound_frame_size,
                )
                if room <= 0:
                    break
                chunk = self._outbound[0]
                if len(chunk) <= room:
                    self._outbound.popleft()
                else:  # a memoryview: slicing the rest of a big message copies nothing
                    rest = memoryview(chunk)
                    self._outbound[0], chunk = rest[room:], rest[:room]
                connection.send_data(stream_id, chunk)
        except h2.exceptions.H2Error as error:
            self._fail(f"cannot send on the stream: {error}")
        self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- WebSocket ------------------------------------------------------------------------------

    def _receive(self, frame: Frame) -> None:
        """Messages from frames; a fragmented one is joined at its last CONT frame."""
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._deliver(opcode, frame.data)
            else:
                self._fragmented, self._fragments = opcode, [frame.data]
        elif opcode is Opcode.CONT:
            self._fragments.append(frame.data)
            if frame.fin:
                self._deliver(self._fragmented, b"".join(self._fragments))
                self._fragments = []
        elif opcode is Opcode.CLOSE and not self._closing:
            self._fail(f"the server closed the WebSocket ({self._ws.close_rcvd})")

    def _deliver(self, opcode: Opcode, data: bytes) -> None:
        if opcode is Opcode.BINARY:
            self._messages.append(data)
            return
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError:
            self._fail("the server sent a text message that is not UTF-8")

    # -- waiting and failing --------------------------------------------------------------------

    async def _wait_for(self, ready: Callable[[], bool]) -> None:
        """Until `ready()`; H2WebSocketError if the WebSocket fails first."""
        while not ready():
            if self._error is not None:
                raise H2WebSocketError(self._error)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, reason: str) -> None:
        """The first reason is the one reported; waiters see it once woken."""
        if self._error is None:
            self._error = reason

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _code(error_code: object) -> str:
    return getattr(error_code, "name", str(error_code))
