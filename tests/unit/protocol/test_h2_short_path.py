"""Requests and their bodies received on the short path (ServerH2Connection._receive_short_path),
acknowledged with our WINDOW_UPDATE frames and answered with our HEADERS and DATA framing,
behave exactly as through h2's frame buffer, h2's acknowledgements and h2's send methods: the
same events, bytes out, windows and stream states, whatever the frames and however the reads
cut them."""

from __future__ import annotations

import functools
import itertools
import struct

import h2.connection
import h2.events
import hpack
from hypothesis import example, given, settings
from hypothesis import strategies as st

from osmium.protocol.events import Body, ConnectionFailed, EndBody, Request
from osmium.protocol.h2 import ServerConnection
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from tests.support.h2_peer import POST

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x6, 0x9
FRAME_HEADER_SIZE = 9
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20
#: Small windows, so that a few frames can overrun them, and few streams, so that some are refused.
WINDOWS = ProtocolSettings(
    initial_window_size=40_000, connection_window_size=65_535, max_concurrent_streams=5
)
#: Header lists a request may carry: good ones, most often, and malformed ones (a stream error).
FIELDS = st.sampled_from(
    [
        *[POST] * 8,
        [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "test")],
        [*POST, ("priority", "u=1, i")],
        [*POST, ("connection", "keep-alive")],
        [name_value for name_value in POST if name_value[0] != ":path"],
        [*POST, ("content-length", "many")],
        [*POST, ("x-long", "v" * 150)],  # over HEADER_BLOCK_LIMIT
        [*POST, ("cookie", "a=1"), ("x-after", "1"), ("cookie", "b=2")],  # joined, moved last
        [*POST, ("cookie", "a=1")],
        [(":status", "100"), *POST],  # informational: h2 refuses it itself
    ]
)
#: A small --max-header-block-size, so that some blocks (and stray CONTINUATIONs) exceed it.
HEADER_BLOCK_LIMIT = Limits(max_header_block_size=150)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return struct.pack("!HBBBL", size >> 8, size & 0xFF, kind, flags, stream_id) + payload


#: True about one time in five: the unusual case of a flag.
RARELY = st.sampled_from([False, False, False, False, True])
OPEN = st.tuples(
    st.just("open"),
    st.one_of(st.none(), st.none(), st.integers(0, 50_000)),  # content-length
    RARELY,  # END_STREAM on HEADERS
    RARELY,  # the header block split over a CONTINUATION
    FIELDS,
    st.sampled_from([*["next"] * 12, "skip", "even", "reused"]),  # stream id
    st.sampled_from([0, 0, 0, 0, PADDED, PRIORITY]),
)
#: Which stream a frame is on: one of those opened (by index), or (20) one never opened.
STREAM = st.integers(0, 20)
DATA_FRAME = st.tuples(
    st.just("data"),
    STREAM,
    st.sampled_from([0, 1, *[100] * 4, *[9_000] * 4, *[16_384] * 4, 16_385]),
    st.sampled_from([*[False] * 9, True]),  # END_STREAM (DATA after it ends the connection)
    RARELY,  # PADDED
    RARELY,  # the reserved bit of the stream id
)
#: How the server answers a stream between two reads (see `respond`).
RESPONSES = ["headers-only", "body", "body", "informational", "trailers", "whole", "whole"]
#: One step of the client (bytes it sends) or of the server (between reads): DATA half the time
#: (hypothesis draws each alternative of one_of alike), so that most scripts carry bodies.
step = st.one_of(
    DATA_FRAME,
    st.one_of(
        OPEN,
        st.tuples(st.just("client-reset"), STREAM),
        st.tuples(st.just("server-reset"), STREAM),
        st.tuples(st.just("respond"), STREAM, st.sampled_from(RESPONSES)),
        st.tuples(st.just("ping")),
        st.tuples(st.just("graceful-close")),
    ),
)
#: Frames that end the connection, drawn only at the end of a script.
CLOSING_STEP = st.one_of(
    st.just(("unfinished-header-block",)),
    st.tuples(st.just("stray-continuation"), st.sampled_from([10, 100])),
    DATA_FRAME,
)


#: The server starting a graceful close (GOAWAY) between two reads.
GRACEFUL_CLOSE = -1


def script(steps: list[tuple]) -> list[bytes | int | tuple[int, str]]:
    """The steps as client bytes, and as what the server does between them (a stream id it
    resets, a stream id and how it responds there, or GRACEFUL_CLOSE)."""
    encoder = hpack.Encoder()
    opened: list[int] = []
    items: list[bytes | int | tuple[int, str]] = [PREFACE + frame(SETTINGS, 0, 0)]
    for kind, *args in steps:
        if kind == "open":
            length, end, split, fields, numbering, extra_flags = args
            stream_id = {
                "next": 2 * len(opened) + 1,
                "skip": 2 * len(opened) + 3,
                "even": 2 * len(opened) + 2,
                "reused": max(opened, default=1),
            }[numbering]
            opened.append(stream_id)
            if length is not None:
                fields = [*fields, ("content-length", str(length))]
            block = encoder.encode(fields)
            if split:  # padding or priority would not fit the three bytes of the HEADERS frame
                extra_flags = 0
            if extra_flags == PADDED:
                block = b"\x03" + block + b"\x00\x00\x00"
            elif extra_flags == PRIORITY:
                block = b"\x00\x00\x00\x00\x0f" + block
            first, rest = (block[:3], block[3:]) if split else (block, b"")
            flags = (END_STREAM if end else 0) | (0 if split else END_HEADERS) | extra_flags
            items.append(frame(HEADERS, flags, stream_id, first))
            if split:
                items.append(frame(CONTINUATION, END_HEADERS, stream_id, rest))
            continue
        if kind == "graceful-close":
            items.append(GRACEFUL_CLOSE)
            continue
        if kind == "stray-continuation":
            items.append(
                frame(CONTINUATION, END_HEADERS, max(opened, default=1), b"\x82" * args[0])
            )
            continue
        if kind == "ping":
            items.append(frame(PING, 0, 0, b"12345678"))
            continue
        if kind == "unfinished-header-block":
            items.append(frame(HEADERS, 0, 2 * len(opened) + 1, encoder.encode(POST)))
            continue
        stream_id = opened[args[0] % len(opened)] if opened and args[0] < 20 else 101
        if kind == "data":
            _, size, end, padded, reserved = args
            payload = bytes([size % 251]) * size
            if padded:
                payload = b"\x02" + payload + b"\x00\x00"
            flags = (END_STREAM if end else 0) | (PADDED if padded else 0)
            items.append(frame(DATA, flags, stream_id | (reserved << 31), payload))
        elif kind == "client-reset":
            items.append(frame(RST_STREAM, 0, stream_id, b"\x00\x00\x00\x08"))
        elif kind == "respond":
            items.append((stream_id, args[1]))
        else:
            items.append(stream_id)
    return items


def served(short_path: bool) -> ServerConnection:
    server = ServerConnection(WINDOWS, limits=HEADER_BLOCK_LIMIT)
    if not short_path:  # h2's own paths, and h2's own acknowledgements (WINDOW_UPDATE frames)
        connection = server._h2
        connection._receive_short_path = lambda data: ([], memoryview(data))  # type: ignore[method-assign]
        for name in ("acknowledge_received_data", "send_headers", "send_data"):
            own = functools.partial(getattr(h2.connection.H2Connection, name), connection)
            setattr(connection, name, own)
        connection.send_response = lambda *args: False  # type: ignore[method-assign]
    server.start()
    server.data_to_send()
    return server


def state(server: ServerConnection) -> tuple:
    connection = server._h2
    return (
        server.closed,
        connection.provoked_resets,
        connection.state_machine.state,
        connection._inbound_flow_control_window_manager.current_window_size,
        connection.outbound_flow_control_window,
        None if server.closed else bytes(connection.incoming_buffer._data),  # dead once closed
        connection.highest_inbound_stream_id,
        {  # closed streams are forgotten at different times: h2 at each new stream
            stream_id: (
                vars(stream.state_machine),
                stream._inbound_window_manager.current_window_size,
                stream._actual_content_length,
                stream._expected_content_length,
                stream.max_outbound_frame_size,
                stream.outbound_flow_control_window,
            )
            for stream_id, stream in connection.streams.items()
            if not stream.closed
        },
        [connection._stream_closed_by(stream_id) for stream_id in range(1, 50)],
    )


def respond(server: ServerConnection, stream_id: int, shape: str) -> tuple:
    """The server answers the stream (if it may), as `shape` says: what went out, or what it
    raised, and the state after."""
    try:
        if shape == "whole":  # in one step where it may (ServerH2Connection.send_response)
            server.send_response(stream_id, [(b":status", b"200")], b"x" * 10, True, True)
            return ("sent", server.data_to_send(), state(server))
        if shape == "informational":
            server.send_informational(stream_id, [(b":status", b"103"), (b"link", b"</a>")])
        server.send_headers(stream_id, [(b":status", b"200")], end_stream=shape == "headers-only")
        if shape != "headers-only":
            server.send_data(stream_id, b"x" * 10, end_stream=shape != "trailers", write_now=True)
        if shape == "trailers":
            server.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)
    except Exception as error:
        return ("raised", type(error).__name__, server.data_to_send(), state(server))
    return ("sent", server.data_to_send(), state(server))


def joined(items: list) -> list:
    """The client's bytes between two server actions as one string, which reads cut anywhere."""
    merged: list[bytes | int] = []
    for item in items:
        if isinstance(item, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += item
        else:
            merged.append(item)
    return merged


#: Reads that each carry one whole frame (the preface one of its own), as from a client that
#: sends one request at a time.
FRAME_BY_FRAME = "frame by frame"


def frame_sizes(data: bytes) -> list[int]:
    """The sizes of reads that deliver `data` a frame at a time."""
    sizes, offset = [], 0
    if data.startswith(PREFACE):
        sizes.append(offset := len(PREFACE))
    while offset < len(data):
        size = FRAME_HEADER_SIZE + int.from_bytes(data[offset : offset + 3], "big")
        sizes.append(size)
        offset += size
    return sizes


def run(items: list, reads: list[int] | str, short_path: bool) -> list:
    """Everything observable, read by read: events, bytes out, windows and stream states.

    Of a read that ends the connection only the failure is compared: h2's path loses what it
    had decoded of the slice that failed, the short path keeps what it took before it (the
    client is told, by GOAWAY's last stream id, that those streams may have been processed).
    """
    server = served(short_path)
    seen: list = []
    cuts = itertools.cycle(reads)
    for item in joined(items):
        if reads == FRAME_BY_FRAME and isinstance(item, bytes):
            cuts = iter(frame_sizes(item))
        if item == GRACEFUL_CLOSE:
            if not server.closed:
                server.start_graceful_close()
                server.finish_graceful_close()  # as if the client had answered its PING
            continue
        if isinstance(item, int):
            if item in server._h2.streams and not server.closed:
                server.reset(item, 8)
            continue
        if isinstance(item, tuple):
            # Once per stream, as the app's one response, and not on a closed stream: h2 may
            # have forgotten it or not (see `state`), and the closed streams it forgets as it
            # answers change what it does with a later frame.
            stream = server._h2.streams.get(item[0])
            machine = stream and stream.state_machine
            if machine and not (machine.headers_sent or stream.closed or server.closed):
                seen.append(respond(server, *item))
            continue
        offset = 0
        while offset < len(item) and not server.closed:
            size = next(cuts)
            events = server.receive(item[offset : offset + size])
            offset += size
            for event in events:
                if isinstance(event, Body):
                    server.acknowledge(event.stream_id, event.flow_controlled_length)
            if events and isinstance(events[-1], ConnectionFailed):
                seen.append(([events[-1]], server.data_to_send(), state(server)))
            else:
                seen.append((events, server.data_to_send(), state(server)))
    return seen


@settings(max_examples=400, deadline=None)
@example(  # a body longer than its content-length: the stream is reset, and that is counted
    opening=[("open", 10, False, False, POST, "next", 0)],
    steps=[("data", 0, 100, False, False, False)] * 4,
    closing=[],
    reads=[40_000],
)
@given(
    opening=st.lists(OPEN, min_size=1, max_size=3),
    steps=st.lists(step, min_size=4, max_size=25),
    closing=st.lists(CLOSING_STEP, max_size=2),
    reads=st.one_of(
        st.lists(st.integers(1, 40_000), min_size=1, max_size=8), st.just(FRAME_BY_FRAME)
    ),
)
def test_the_short_path_receives_as_h2_receives(
    opening: list[tuple], steps: list[tuple], closing: list[tuple], reads: list[int] | str
) -> None:
    items = script(opening + steps + closing)
    assert run(items, reads, short_path=True) == run(items, reads, short_path=False)


def test_the_short_path_takes_requests_and_bodies_and_leaves_the_rest_to_h2() -> None:
    """A read of whole HEADERS and DATA frames never reaches h2's frame buffer; a PING does."""
    server = served(short_path=True)
    server.receive(PREFACE + frame(SETTINGS, 0, 0))
    events, rest = server._h2._receive_short_path(
        memoryview(
            frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(POST))
            + frame(DATA, 0, 1, b"a" * 100)
            + frame(DATA, END_STREAM, 1, b"b")
            + frame(PING, 0, 0, b"12345678")
        )
    )
    assert [type(event) for event in events] == [Request, Body, Body, EndBody]
    assert [event.data for event in events[1:3]] == [b"a" * 100, b"b"]
    assert bytes(rest) == frame(PING, 0, 0, b"12345678")


def test_a_connections_first_request_takes_the_short_path_after_the_preface() -> None:
    """h2 reads the preface, SETTINGS and WINDOW_UPDATE of a first read; its HEADERS and DATA
    are left to the short path."""
    server = ServerConnection(WINDOWS)
    server.start()
    connection = server._h2
    read_by_h2: list[bytes] = []
    receive_data = connection.receive_data

    def recording(data: memoryview) -> list:
        read_by_h2.append(bytes(data))
        return receive_data(data)

    connection.receive_data = recording  # type: ignore[method-assign]
    opening = PREFACE + frame(SETTINGS, 0, 0) + frame(0x8, 0, 0, b"\x00\x01\x00\x00")
    request = frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(POST))
    events = server.receive(opening + request + frame(DATA, END_STREAM, 1, b"body"))
    assert read_by_h2 == [opening]
    assert [type(event).__name__ for event in events] == ["Request", "Body", "EndBody"]
