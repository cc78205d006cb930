"""WebSockets, sans-IO, on wsproto: the RFC 6455 opening handshake's checks and answer, then one
WebSocket's frames (bytes in -> whole messages and closes out; messages and closes in -> bytes).

The framing does not care what carries it (an upgraded HTTP/1.1 connection today, an RFC 8441
HTTP/2 stream later). Messages are assembled here, so the size limit holds while a message is
still arriving: past `max_message_size` the WebSocket is closed with 1009 and the rest of that
message (and whatever follows) is read and dropped, never kept.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import zlib
from dataclasses import dataclass

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, generate_accept_token

from osmium.protocol.events import Headers, field_value


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    #: Largest message accepted; over it: Close 1009, the rest is read and dropped.
    max_message_size: int = 16 * 1024 * 1024
    #: Seconds between our Pings (0: none); no Pong within ping_timeout: Close 1011.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    #: Offer permessage-deflate (RFC 7692) to clients that ask for it.
    per_message_deflate: bool = True


#: RFC 6455 §7.4.1 close codes the server sends itself.
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
#: The code an app sees when the connection ended without a Close frame (never sent, §7.1.5).
ABNORMAL_CLOSURE = 1006
VERSION = b"13"


def _tokens(headers: Headers, name: bytes) -> list[str]:
    """The comma-separated tokens of every `name` field, in order."""
    return [
        token.strip()
        for field, value in headers
        if field == name
        for token in value.decode("latin-1").split(",")
        if token.strip()
    ]


def is_websocket_request(headers: Headers) -> bool:
    """The request asks to upgrade to a WebSocket (RFC 6455 §4.2.1 items 3 and 4)."""
    first = field_value(headers, b"upgrade")
    if first is None:  # every plain HTTP/1.1 request: one scan of its fields, nothing more
        return False
    upgrade = {token.lower() for token in _tokens(headers, b"upgrade")}
    connection = {token.lower() for token in _tokens(headers, b"connection")}
    return "websocket" in upgrade and "upgrade" in connection


def handshake_problem(headers: Headers) -> tuple[int, str, Headers] | None:
    """Why a WebSocket request cannot be accepted, as (status, reason, response fields); None
    when it can. RFC 6455 §4.2.1: a GET with a 16-byte base64 key and version 13 (else 426)."""
    if field_value(headers, b":method") != b"GET":
        return 400, "a WebSocket opening handshake is a GET", []
    if field_value(headers, b"sec-websocket-version") != VERSION:
        return 426, "unsupported Sec-WebSocket-Version", [(b"sec-websocket-version", VERSION)]
    key = field_value(headers, b"sec-websocket-key") or b""
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        return 400, "missing or malformed Sec-WebSocket-Key", []
    return None


def subprotocols(headers: Headers) -> list[str]:
    return _tokens(headers, b"sec-websocket-protocol")


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflating stops at the message size limit: without it, one
    small compressed frame could expand to gigabytes before any limit is checked (a
    decompression bomb). Reads wsproto's private inflate state: tests/unit/protocol/test_ws.py
    fails if a wsproto upgrade changes it."""

    def __init__(self, max_message_size: int) -> None:
        super().__init__()
        self._max_message_size = max_message_size
        self._inflated = 0

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        room = self._max_message_size - self._inflated + 1
        try:
            inflated = self._decompressor.decompress(bytes(data), room)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self._max_message_size:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The 101 response's fields and the extensions the WebSocket then runs with."""

    headers: Headers
    extensions: list[PerMessageDeflate]


def accept(
    request_headers: Headers,
    subprotocol: str | None,
    extra_headers: Headers,
    settings: WebSocketSettings,
) -> Acceptance:
    """Accept a checked handshake with the app's subprotocol and fields (RFC 6455 §4.2.2)."""
    key = field_value(request_headers, b"sec-websocket-key") or b""
    headers: Headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", generate_accept_token(key)),
    ]
    if subprotocol is not None:
        if subprotocol not in subprotocols(request_headers):
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        headers.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
    extensions: list[PerMessageDeflate] = []
    offers = _tokens(request_headers, b"sec-websocket-extensions")
    if settings.per_message_deflate and offers:
        deflate = BoundedDeflate(settings.max_message_size)
        agreed = server_extensions_handshake(offers, [deflate])
        if agreed:
            headers.append((b"sec-websocket-extensions", agreed))
            extensions.append(deflate)
    headers += [(name.lower(), value) for name, value in extra_headers]
    return Acceptance(headers, extensions)


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message from the peer."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The WebSocket is closed (the peer's Close, ours answered; or a failure we closed it for):
    `code` is what the app is told."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PongReceived:
    payload: bytes


WebSocketEvent = Message | Closed | PongReceived


class WebSocket:
    """One WebSocket after its handshake."""

    def __init__(
        self, max_message_size: int, extensions: list[PerMessageDeflate] | None = None
    ) -> None:
        self._ws = Connection(ConnectionType.SERVER, list(extensions or []))
        self._max_message_size = max_message_size
        self._parts: list[str | bytes] = []
        self._size = 0
        #: Past the size limit: this message's (and any later) data is dropped as it is read.
        self._discarding = False
        self._output = bytearray()
        self.closed = False

    @property
    def closing(self) -> bool:
        """We sent our Close: nothing more goes out but the peer's answer is awaited."""
        return self._ws.state in (ConnectionState.LOCAL_CLOSING, ConnectionState.CLOSED)

    def receive(self, data: bytes) -> list[WebSocketEvent]:
        if self.closed:
            return []
        self._ws.receive_data(data)
        events: list[WebSocketEvent] = []
        for event in self._ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                message = self._take(event)  # type: ignore[arg-type]
                if message is not None:
                    events.append(message)
            elif kind is Ping:
                self._output += self._ws.send(event.response())  # type: ignore[union-attr]
            elif kind is Pong:
                events.append(PongReceived(bytes(event.payload)))  # type: ignore[union-attr]
            elif kind is CloseConnection:
                events.append(self._on_close(event))  # type: ignore[arg-type]
                break
        return events

    def _take(self, event: TextMessage | BytesMessage) -> Message | Closed | None:
        if self._discarding:
            return None
        self._size += len(event.data)
        if self._size > self._max_message_size:
            self._discarding = True
            self._parts.clear()
            return self._fail(MESSAGE_TOO_BIG, "message too big")
        self._parts.append(event.data)
        if not event.message_finished:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(event, TextMessage):
            return Message(parts[0] if len(parts) == 1 else "".join(parts))  # type: ignore[arg-type]
        return Message(parts[0] if len(parts) == 1 else b"".join(parts))  # type: ignore[arg-type]

    def _on_close(self, event: CloseConnection) -> Closed:
        """The peer's Close (answered with ours), or a protocol error wsproto found: 1002/1007
        (Close sent with that code)."""
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._output += self._ws.send(event.response())
        elif self._ws.state is ConnectionState.OPEN:  # a frame wsproto could not parse
            self._output += self._ws.send(CloseConnection(event.code, event.reason))
        self.closed = True
        return Closed(event.code, event.reason or "")

    def _fail(self, code: int, reason: str) -> Closed:
        """Close with `code` now; frames still arriving are read and dropped."""
        self.close(code, reason)
        return Closed(code, reason)

    def send(self, data: str | bytes) -> None:
        message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
        self._output += self._ws.send(message)

    def ping(self, payload: bytes) -> None:
        self._output += self._ws.send(Ping(payload))

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Our Close frame (once); the TCP connection ends when the peer answers or times out."""
        with contextlib.suppress(LocalProtocolError):  # already closing
            self._output += self._ws.send(CloseConnection(code, reason))

    @property
    def pending_output(self) -> int:
        """Bytes waiting in data_to_send()."""
        return len(self._output)

    def data_to_send(self) -> bytes:
        data = bytes(self._output)
        self._output.clear()
        return data
