"""Property tests: whatever bytes or frame sequences arrive, the core never raises, and all it
sends back are well-formed frames (a connection error is a GOAWAY, not an exception)."""

from __future__ import annotations

import struct

from hyperframe.frame import Frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osmium.protocol.events import ConnectionFailed
from osmium.protocol.h2 import ServerConnection
from osmium.protocol.settings import ProtocolSettings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


frames = st.builds(
    frame,
    kind=st.integers(0, 12),
    flags=st.integers(0, 255),
    stream_id=st.one_of(st.integers(0, 9), st.integers(0, 2**31 - 1)),
    payload=st.binary(max_size=64),
)


def assert_well_formed(data: bytes) -> None:
    while data:
        assert len(data) >= 9, f"truncated frame header: {data!r}"
        parsed, length = Frame.parse_frame_header(memoryview(data[:9]))
        assert len(data) >= 9 + length, "truncated frame body"
        parsed.parse_body(memoryview(data[9 : 9 + length]))
        data = data[9 + length :]


def feed(chunks: list[bytes]) -> None:
    server = ServerConnection(ProtocolSettings())
    server.start()
    assert_well_formed(server.data_to_send())
    for now, chunk in enumerate(chunks):
        events = server.receive(chunk, float(now))
        assert_well_formed(server.data_to_send())
        if any(isinstance(event, ConnectionFailed) for event in events):
            assert server.closed
            assert server.receive(chunk, float(now)) == []


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    feed(chunks)


@FUZZ
@given(st.lists(frames, max_size=30), st.integers(1, 40))
def test_random_frames_after_a_valid_preface_never_raise(sequence: list[bytes], cut: int) -> None:
    stream = PREFACE + SETTINGS + b"".join(sequence)
    feed([stream[index : index + cut] for index in range(0, len(stream), cut)])
