"""The fuzz targets: one input drives a sans-IO core as a client and the transport would.

Each target reads an input as a client's bytes, cut into reads, with the application's and the
transport's calls in between (as the input says), and fails when a core raises what its API does
not document or sends a malformed frame. scripts/fuzz.py runs them under libFuzzer.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntFlag

from osmium.protocol.events import (
    Body,
    ConnectionFailed,
    EndBody,
    ErrorCode,
    Event,
    Headers,
    Request,
)
from osmium.protocol.h1 import H2C_SWITCH, MAX_HEADER_BYTES, H1Connection, h2c_upgrade_settings
from osmium.protocol.h2 import ServerConnection, StreamGone, UpgradeRefused
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from tests.fuzz import oracle
from tests.fuzz.inputs import DataProvider, PlainDataProvider

#: Largest read a target cuts from its input, in bytes.
MAX_READ = 4095
#: Server configurations the HTTP/2 target picks from: the defaults, and tight ones under which
#: refused streams, flow control and the flood budgets are within reach of short inputs.
H2_PROFILES = (
    (ProtocolSettings(), Limits()),
    (
        ProtocolSettings(
            max_concurrent_streams=2,
            initial_window_size=100,
            connection_window_size=65_535,
            max_header_list_size=200,
        ),
        Limits(max_resets_per_second=4, max_control_frames_per_second=8, max_header_block_size=512),
    ),
)
#: Header section limits the HTTP/1.1 target picks from: the default and one short inputs pass.
H1_HEADER_LIMITS = (MAX_HEADER_BYTES, 200)
RESPONSE_BODY = b"hello, fuzzer"
LARGE_BODY = b"x" * 100_000  # more than any window or frame: the send is cut to fit
TRAILERS: Headers = [(b"x-checksum", b"1")]


class H2Action(IntFlag):
    """What the application does after a read of the HTTP/2 target: one input byte."""

    ACKNOWLEDGE = 0x01  # give the bodies just read back to flow control
    ANSWER = 0x02  # response headers for the oldest unanswered request...
    END_WITH_HEADERS = 0x04  # ...with END_STREAM
    SEND_DATA = 0x08  # body bytes on the oldest answered stream...
    END_STREAM = 0x10  # ...and the end of it (without SEND_DATA: end_stream())
    LARGE = 0x20  # the body is LARGE_BODY, not RESPONSE_BODY
    RESET = 0x40  # reset the newest unanswered request
    CLOSE = 0x80  # graceful close: the first GOAWAY, or the final one once it started


class H1Action(IntFlag):
    """What the transport and the application do after a read of the HTTP/1.1 target."""

    CONTINUE = 0x01  # 100 Continue for a request that waits for it
    ANSWER = 0x02  # respond to the request being served, then go on to the next one
    CHUNKED = 0x04  # no content-length: chunked (or close-delimited for HTTP/1.0)
    TRAILERS = 0x08  # trailers after the body (only a chunked body carries them)
    CLOSE = 0x10  # Connection: close on the response


# -- the HTTP/2 target ---------------------------------------------------------------------------


class H2App:
    """The application of the HTTP/2 target: answers, reads and resets as the input says, with
    the calls the transport makes, of which only StreamGone may come out.

    Streams the client reset stay on its lists: an application may answer one late, and the core
    must then say StreamGone.
    """

    def __init__(self, server: ServerConnection) -> None:
        self.server = server
        self.unanswered: list[int] = []
        self.answered: list[int] = []

    def handle(self, events: list[Event], actions: int) -> None:
        server = self.server
        for event in events:
            kind = type(event)
            if kind is Request:
                self.unanswered.append(event.stream_id)  # type: ignore[union-attr]
            elif kind is Body and actions & H2Action.ACKNOWLEDGE:
                server.acknowledge(event.stream_id, event.flow_controlled_length)  # type: ignore[union-attr]
        if actions & H2Action.ANSWER and self.unanswered:
            self._answer(self.unanswered.pop(0), bool(actions & H2Action.END_WITH_HEADERS))
        if actions & (H2Action.SEND_DATA | H2Action.END_STREAM) and self.answered:
            self._send(actions)
        if actions & H2Action.RESET and self.unanswered:
            server.reset(self.unanswered.pop(), ErrorCode.CANCEL)
        if actions & H2Action.CLOSE:
            if server.closing:
                server.finish_graceful_close()
            else:
                server.start_graceful_close()
        oracle.assert_well_formed(server.data_to_send())

    def _answer(self, stream_id: int, end_stream: bool) -> None:
        try:
            self.server.send_headers(stream_id, [(b":status", b"200")], end_stream)
        except StreamGone:
            return
        if not end_stream:
            self.answered.append(stream_id)

    def _send(self, actions: int) -> None:
        stream_id = self.answered[0]
        end_stream = bool(actions & H2Action.END_STREAM)
        try:
            if actions & H2Action.SEND_DATA:
                body = LARGE_BODY if actions & H2Action.LARGE else RESPONSE_BODY
                self.server.send_data(stream_id, body, end_stream)
            else:
                self.server.end_stream(stream_id)
        except StreamGone:
            end_stream = True
        if end_stream:
            # The rest of a body short of window waits in the core, which ends the stream after it.
            self.answered.pop(0)


def converse_h2(source: DataProvider, app: H2App, first: bytes = b"") -> None:
    """Reads and replies until the input is used up: each step is a read (its size, its bytes),
    the time since the last one, and what the application does next."""
    now = 0.0
    pending = first
    while source.remaining_bytes():
        data = pending + source.ConsumeBytes(source.ConsumeIntInRange(0, MAX_READ))
        pending = b""
        now += source.ConsumeIntInRange(0, 255) / 100
        events = oracle.receive(app.server, data, now)
        app.handle(events, source.ConsumeIntInRange(0, 255))


def fuzz_h2(data: bytes, provider: Callable[[bytes], DataProvider] = PlainDataProvider) -> None:
    """libFuzzer's TestOneInput for the HTTP/2 core; half the inputs start past the preface."""
    source = provider(data)
    settings, limits = H2_PROFILES[source.ConsumeIntInRange(0, len(H2_PROFILES) - 1)]
    server = oracle.start(settings, limits)
    preface = oracle.PREFACE + oracle.SETTINGS if source.ConsumeBool() else b""
    converse_h2(source, H2App(server), preface)


# -- the HTTP/1.1 target -------------------------------------------------------------------------


class H1App:
    """The transport and application of the HTTP/1.1 target: one request at a time, answered
    when the input says, pipelined requests next, and an h2c upgrade handed to the HTTP/2 core."""

    def __init__(self, connection: H1Connection, scheme: str) -> None:
        self.connection = connection
        self.scheme = scheme
        self.request: Headers | None = None  # being served, not answered yet
        self.upgrade_settings: bytes | None = None  # the request asks for h2c: not served yet
        self.closed = False  # the transport closed the connection: nothing more is read
        self.upgraded: tuple[ServerConnection, bytes] | None = None

    def handle(self, events: list[Event], actions: int) -> None:
        while events:
            for event in events:
                kind = type(event)
                if kind is Request:
                    self._start(event.headers, actions)  # type: ignore[union-attr]
                elif kind is EndBody and self.upgrade_settings is not None:
                    if self._upgrade(self.upgrade_settings):
                        return
                elif kind is ConnectionFailed:
                    self._refused(event)  # type: ignore[arg-type]
                    return
            events = []
            # An h2c request waits for its end (then the switch) before anyone answers it.
            serving = self.request is not None and self.upgrade_settings is None
            if serving and actions & H1Action.ANSWER:
                events = self._answer(self.request, actions)

    def _start(self, headers: Headers, actions: int) -> None:
        self.request = headers
        self.upgrade_settings = h2c_upgrade_settings(headers, self.scheme)
        if actions & H1Action.CONTINUE and self.upgrade_settings is None:
            self.connection.send_continue()

    def _upgrade(self, settings: bytes) -> bool:
        """Switch to HTTP/2 as the transport does, or serve the request over HTTP/1.1 after all."""
        self.upgrade_settings = None
        server = ServerConnection(ProtocolSettings())
        try:
            server.start(upgrade_settings=settings)
        except UpgradeRefused:
            return False
        trailing = self.connection.accept_upgrade(H2C_SWITCH)
        assert self.connection.data_to_send().startswith(b"HTTP/1.1 101 ")
        oracle.assert_well_formed(server.data_to_send())
        self.upgraded = (server, trailing)
        return True

    def _answer(self, request: Headers, actions: int) -> list[Event]:
        """The response, then the next request's events; none when the connection is closed."""
        self.request = None
        connection = self.connection
        head = request[0][1] == b"HEAD"
        headers = (
            [] if actions & H1Action.CHUNKED else [(b"content-length", b"%d" % len(RESPONSE_BODY))]
        )
        connection.start_response(200, headers, close=bool(actions & H1Action.CLOSE))
        # RFC 9110 §9.3.2: the ASGI layer drops a HEAD response's body and trailers.
        if not head:
            connection.send_data(RESPONSE_BODY)
        with_trailers = actions & H1Action.TRAILERS and not head
        connection.end_response(TRAILERS if with_trailers else None)
        assert connection.data_to_send().startswith(b"HTTP/1.")
        following = connection.next_request()
        if following is None:
            self.closed = True
            return []
        return following

    def _refused(self, failure: ConnectionFailed) -> None:
        """A refused request is answered with its status, and the core hears nothing more."""
        connection = self.connection
        assert connection.failed
        status_line = b"HTTP/1.1 %d " % failure.error_code
        assert connection.data_to_send().startswith(status_line), failure
        assert connection.receive(b"GET / HTTP/1.1\r\n\r\n") == []
        self.closed = True


def fuzz_h1(data: bytes, provider: Callable[[bytes], DataProvider] = PlainDataProvider) -> None:
    """libFuzzer's TestOneInput for the HTTP/1.1 core, and the HTTP/2 one after an h2c upgrade."""
    source = provider(data)
    scheme = "http" if source.ConsumeBool() else "https"
    limit = H1_HEADER_LIMITS[source.ConsumeIntInRange(0, len(H1_HEADER_LIMITS) - 1)]
    connection = H1Connection(scheme, limit)
    app = H1App(connection, scheme)
    while source.remaining_bytes() and not app.closed:
        data = source.ConsumeBytes(source.ConsumeIntInRange(0, MAX_READ))
        # No empty reads: to h11 that is the end of the stream, which the transport never sends.
        events = connection.receive(data) if data else []
        app.handle(events, source.ConsumeIntInRange(0, 255))
        if app.upgraded is not None:
            server, trailing = app.upgraded
            h2_app = H2App(server)
            h2_app.unanswered.append(1)  # the upgraded request is stream 1
            converse_h2(source, h2_app, trailing)
            return


TARGETS: dict[str, Callable[[bytes], None]] = {"h2": fuzz_h2, "h1": fuzz_h1}
