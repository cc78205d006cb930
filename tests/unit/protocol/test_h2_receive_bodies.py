"""Request bodies received on the short path (ServerH2Connection.receive_bodies) behave exactly as
through h2's frame buffer: the same events, bytes out, windows and stream states, whatever the
frames and however the reads cut them."""

from __future__ import annotations

import itertools
import struct

import h2.events
import hpack
from hypothesis import example, given, settings
from hypothesis import strategies as st

from osmium.protocol.events import Body
from osmium.protocol.h2 import ServerConnection
from osmium.protocol.settings import ProtocolSettings
from tests.support.h2_peer import POST

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x6, 0x9
END_STREAM, END_HEADERS, PADDED = 0x1, 0x4, 0x8
#: Small windows, so that a few frames can overrun them.
WINDOWS = ProtocolSettings(initial_window_size=40_000, connection_window_size=65_535)


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
)
#: Which stream a frame is on: one of those opened (by index), or (20) one never opened.
STREAM = st.integers(0, 20)
DATA_FRAME = st.tuples(
    st.just("data"),
    STREAM,
    st.sampled_from([0, 1, 100, 100, 100, 9_000, 9_000, 9_000, 16_384, 16_384, 16_384, 16_385]),
    RARELY,  # END_STREAM
    RARELY,  # PADDED
    RARELY,  # the reserved bit of the stream id
)
#: One step of the client (bytes it sends) or of the server (between reads), DATA drawn most
#: often, so that most scripts carry bodies.
step = st.one_of(
    OPEN,
    *[DATA_FRAME] * 6,
    st.tuples(st.just("client-reset"), STREAM),
    st.tuples(st.just("server-reset"), STREAM),
    st.tuples(st.just("ping")),
)
#: A header block left open: every frame after it (but a CONTINUATION) is a connection error.
UNFINISHED_HEADER_BLOCK = ("unfinished-header-block",)


def script(steps: list[tuple]) -> list[bytes | int]:
    """The steps as client bytes, and as the stream ids the server resets between them."""
    encoder = hpack.Encoder()
    opened: list[int] = []
    items: list[bytes | int] = [PREFACE + frame(SETTINGS, 0, 0)]
    for kind, *args in steps:
        if kind == "open":
            length, end, split = args
            stream_id = 2 * len(opened) + 1
            opened.append(stream_id)
            fields = POST if length is None else [*POST, ("content-length", str(length))]
            block = encoder.encode(fields)
            first, rest = (block[:3], block[3:]) if split else (block, b"")
            flags = (END_STREAM if end else 0) | (0 if split else END_HEADERS)
            items.append(frame(HEADERS, flags, stream_id, first))
            if split:
                items.append(frame(CONTINUATION, END_HEADERS, stream_id, rest))
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
        else:
            items.append(stream_id)
    return items


def served(short_path: bool) -> ServerConnection:
    server = ServerConnection(WINDOWS)
    if not short_path:
        server._h2.receive_bodies = lambda data: ([], data)  # type: ignore[method-assign]
    server.start()
    server.data_to_send()
    return server


def described(event: h2.events.Event) -> tuple:
    """An h2 event as its type and fields (the StreamEnded a DataReceived carries included)."""
    return type(event).__name__, {name: repr(value) for name, value in vars(event).items()}


def state(server: ServerConnection) -> tuple:
    connection = server._h2
    return (
        server.closed,
        connection.provoked_resets,
        connection.state_machine.state,
        connection._inbound_flow_control_window_manager.current_window_size,
        bytes(connection.incoming_buffer._data),
        {
            stream_id: (
                stream.state_machine.state,
                stream._inbound_window_manager.current_window_size,
                stream._actual_content_length,
            )
            for stream_id, stream in connection.streams.items()
        },
    )


def run(items: list[bytes | int], reads: list[int], short_path: bool) -> tuple[list, list]:
    """Everything observable, read by read (events, bytes out, windows and stream states), and
    h2's events in order."""
    server = served(short_path)
    seen: list = []
    h2_events_seen: list = []
    translate = server._translate

    def recording_translate(h2_events: list, now: float) -> list:
        h2_events_seen.extend(described(event) for event in h2_events)
        return translate(h2_events, now)

    server._translate = recording_translate  # type: ignore[method-assign]
    cuts = itertools.cycle(reads)
    for item in items:
        if isinstance(item, int):
            if item in server._h2.streams and not server.closed:
                server.reset(item, 8)
            continue
        offset = 0
        while offset < len(item) and not server.closed:
            size = next(cuts)
            events = server.receive(item[offset : offset + size])
            offset += size
            for event in events:
                if isinstance(event, Body):
                    server.acknowledge(event.stream_id, event.flow_controlled_length)
            seen.append((events, server.data_to_send(), state(server)))
    return seen, h2_events_seen


@settings(max_examples=400, deadline=None)
@example(  # a body longer than its content-length: the stream is reset, and that is counted
    opening=[("open", 10, False, False)],
    steps=[("data", 0, 100, False, False, False)] * 4,
    closing=[],
    reads=[40_000],
)
@given(
    opening=st.lists(OPEN, min_size=1, max_size=3),
    steps=st.lists(step, min_size=4, max_size=25),
    closing=st.lists(st.one_of(st.just(UNFINISHED_HEADER_BLOCK), DATA_FRAME), max_size=2),
    reads=st.lists(st.integers(1, 40_000), min_size=1, max_size=8),
)
def test_bodies_on_the_short_path_are_received_as_h2_receives_them(
    opening: list[tuple], steps: list[tuple], closing: list[tuple], reads: list[int]
) -> None:
    items = script(opening + steps + closing)
    assert run(items, reads, short_path=True) == run(items, reads, short_path=False)


def test_the_short_path_takes_body_frames_and_leaves_the_rest_to_h2() -> None:
    """A read of whole DATA frames never reaches h2's frame buffer; a HEADERS frame does."""
    server = served(short_path=True)
    encoder = hpack.Encoder()
    server.receive(
        PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, encoder.encode(POST))
    )
    events, rest = server._h2.receive_bodies(
        memoryview(
            frame(DATA, 0, 1, b"a" * 100)
            + frame(DATA, END_STREAM, 1, b"b")
            + frame(PING, 0, 0, b"12345678")
        )
    )
    assert [type(event) for event in events] == [
        h2.events.DataReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]
    assert [event.data for event in events[:2]] == [b"a" * 100, b"b"]
    assert bytes(rest) == frame(PING, 0, 0, b"12345678")
