"""WebSockets, sans-IO, on the `websockets` library's protocol core: the RFC 6455 opening
handshake's checks and answer, then one WebSocket's frames (bytes in -> whole messages and closes
out; messages and closes in -> bytes).

The framing does not care what carries it (an upgraded HTTP/1.1 connection or an RFC 8441 HTTP/2
stream). `websockets` unmasks in C and checks each frame's length against what the message may
still grow by before reading its payload, so past `max_message_size` the WebSocket is closed with
1009 at the frame's header and whatever follows is dropped as it arrives, never kept. Text is
decoded as it arrives, so invalid UTF-8 closes 1007 at the fragment that carries it.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import logging
from dataclasses import dataclass

from websockets.exceptions import InvalidHeader, NegotiationError, ProtocolError
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from websockets.protocol import OPEN, Protocol, Side
from websockets.utils import accept_key

from osmium.protocol.events import Headers, field_value

#: The protocol core's own log (one info line per closed WebSocket); cli.py quiets it.
frame_log = logging.getLogger("osmium.websocket")


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
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
#: The code an app sees when the connection ended without a Close frame (never sent, §7.1.5).
ABNORMAL_CLOSURE = 1006
VERSION = b"13"
#: permessage-deflate as `websockets` serves it: 4 KiB windows and memLevel 5 keep an idle
#: compressed WebSocket at tens of KiB instead of ~300 KiB.
DEFLATE = enable_server_permessage_deflate(None)


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


def _negotiate_deflate(headers: Headers) -> tuple[bytes, Extension] | None:
    """The first permessage-deflate offer we can agree to (RFC 7692 §5), as the response's
    Sec-WebSocket-Extensions value and the extension; None when there is none (or the field
    is malformed: the WebSocket then runs uncompressed)."""
    offered = ", ".join(_tokens(headers, b"sec-websocket-extensions"))
    if not offered:
        return None
    try:
        offers = parse_extension(offered)
    except InvalidHeader:
        return None
    for factory in DEFLATE:
        for name, parameters in offers:
            if name != factory.name:
                continue
            try:
                agreed, extension = factory.process_request_params(parameters, [])
            except NegotiationError:
                continue
            return build_extension([(name, agreed)]).encode("latin-1"), extension
    return None


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The 101 response's fields and the extensions the WebSocket then runs with."""

    headers: Headers
    extensions: list[Extension]


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
        (b"sec-websocket-accept", accept_key(key.decode("latin-1")).encode("ascii")),
    ]
    if subprotocol is not None:
        if subprotocol not in subprotocols(request_headers):
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        headers.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
    extensions: list[Extension] = []
    deflate = _negotiate_deflate(request_headers) if settings.per_message_deflate else None
    if deflate is not None:
        headers.append((b"sec-websocket-extensions", deflate[0]))
        extensions.append(deflate[1])
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

_TEXT, _BINARY, _CONTINUATION = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PONG, _CLOSE = Opcode.PONG, Opcode.CLOSE
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class WebSocket:
    """One WebSocket after its handshake."""

    def __init__(self, max_message_size: int, extensions: list[Extension] | None = None) -> None:
        # The core checks one limit against both a frame's length on the wire and what inflating
        # it gives. Compressed, an incompressible message is a little longer on the wire than it
        # is (RFC 1951's stored blocks), so the wire gets room for that and the message's own
        # size is checked here (_over_the_limit).
        self._deflating = bool(extensions)
        wire_limit = max_message_size + max_message_size // 64 + 1024 if extensions else None
        protocol = Protocol(Side.SERVER, max_size=wire_limit or max_message_size, logger=frame_log)
        protocol.extensions = list(extensions or [])
        self._protocol = protocol
        self._max_message_size = max_message_size
        #: Bytes of the message still arriving, counted only while inflating.
        self._size = 0
        #: The fragments of a message still arriving: str for text (decoded as it comes).
        self._parts: list[str | bytes] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        #: Frame bytes queued since the last data_to_send().
        self._pending = 0
        #: We failed the WebSocket ourselves (invalid UTF-8 in a text message).
        self._failed = False
        #: The app was told how it ended.
        self._told = False

    @property
    def closing(self) -> bool:
        """We sent our Close: no more messages go out."""
        return self._protocol.state is not OPEN

    @property
    def ended(self) -> bool:
        """Both Closes are through, or the WebSocket failed: once its output is out, the
        connection (or stream) ends; anything more that arrives is dropped."""
        return self._protocol.eof_sent

    @property
    def failed(self) -> bool:
        """It ended without a clean closing handshake (a forbidden frame, an oversized message):
        an HTTP/2 stream is then reset rather than ended."""
        protocol = self._protocol
        return self._failed or protocol.parser_exc is not None

    def receive(self, data: bytes) -> list[WebSocketEvent]:
        protocol = self._protocol
        if protocol.eof_sent:
            return []
        protocol.receive_data(data)
        events: list[WebSocketEvent] = []
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONTINUATION:
                message = self._take(frame)
                if message is not None:
                    events.append(message)
                if self._failed:
                    break
            elif opcode is _PONG:
                events.append(PongReceived(bytes(frame.data)))
            elif opcode is _CLOSE:
                received = protocol.close_rcvd
                assert received is not None
                self._told = True
                events.append(Closed(received.code, received.reason))
            # A Ping is answered by the protocol core itself.
        if protocol.eof_sent and not self._told:  # failed: the Close we sent says why
            self._told = True
            sent = protocol.close_sent
            events.append(Closed(sent.code, sent.reason) if sent else Closed(ABNORMAL_CLOSURE))
        return events

    def _take(self, frame: Frame) -> Message | Closed | None:
        """One data frame: a whole message when it is the last of one."""
        data = frame.data
        if self._deflating and self._over_the_limit(len(data), frame.fin):
            return self._fail(MESSAGE_TOO_BIG, "message too big")
        if frame.fin and not self._parts and frame.opcode is not _CONTINUATION:
            if frame.opcode is _BINARY:
                return Message(data)  # type: ignore[arg-type]
            try:
                return Message(data.decode())
            except UnicodeDecodeError as error:
                return self._invalid_text(error)
        if frame.opcode is _TEXT:
            self._decoder = _utf8_decoder()
        decoder = self._decoder
        if decoder is None:
            self._parts.append(data)  # type: ignore[arg-type]
        else:
            try:
                self._parts.append(decoder.decode(data, frame.fin))
            except UnicodeDecodeError as error:
                return self._invalid_text(error)
        if not frame.fin:
            return None
        parts, self._parts, self._decoder = self._parts, [], None
        if decoder is None:
            return Message(b"".join(parts))  # type: ignore[arg-type]
        return Message("".join(parts))  # type: ignore[arg-type]

    def _over_the_limit(self, size: int, last: bool) -> bool:
        self._size += size
        over = self._size > self._max_message_size
        if last:
            self._size = 0
        return over

    def _invalid_text(self, error: UnicodeDecodeError) -> Closed:
        """RFC 6455 §8.1: text that is not UTF-8 fails the WebSocket with 1007."""
        return self._fail(INVALID_DATA, f"invalid UTF-8: {error.reason}")

    def _fail(self, code: int, reason: str) -> Closed:
        """Fail the WebSocket ourselves: Close with `code`; what else arrives is dropped."""
        self._failed = True
        self._told = True
        self._parts.clear()
        self._protocol.fail(code, reason)
        return Closed(code, reason)

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self._protocol.send_text(data.encode())
        else:
            self._protocol.send_binary(data)
        self._pending += len(data)

    def ping(self, payload: bytes) -> None:
        self._protocol.send_ping(payload)

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Our Close frame (once); the TCP connection ends when the peer answers or times out.
        A code RFC 6455 does not allow, or a reason over 123 bytes, closes 1011 and raises."""
        protocol = self._protocol
        if protocol.state is not OPEN:
            return
        try:
            protocol.send_close(code, reason)
        except ProtocolError as error:
            protocol.send_close(INTERNAL_ERROR)
            raise ValueError(f"cannot close a WebSocket with {code} {reason!r}: {error}") from None

    @property
    def pending_output(self) -> int:
        """About how many bytes wait in data_to_send()."""
        return self._pending

    def data_to_send(self) -> bytes:
        writes = self._protocol.data_to_send()
        self._pending = 0
        if writes and not writes[-1]:  # the end-of-stream marker: `ended` says so
            writes.pop()
        return b"".join(writes)  # one frame: the very bytes, not a copy
