"""RFC 9113 §4: frame layout, frame size, and what a receiver must ignore (§4.1, §5.5)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, RstStreamFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    ErrorCode,
    Flag,
    FrameType,
    RawClient,
    Setting,
    hpack_literal,
    raw_frame,
    request_block,
)
from tests.conformance.servers import conformance_server
from tests.server_process import ServerProcess

LARGE_FRAME_SIZE = 20_000


@pytest.fixture(scope="module")
def large_frame_server() -> Iterator[ServerProcess]:
    """A server advertising SETTINGS_MAX_FRAME_SIZE = 20000."""
    with conformance_server("--max-frame-size", str(LARGE_FRAME_SIZE)) as process:
        yield process


# -- §4.1: unknown types and flags, the reserved bit ---------------------------------------------


@pytest.mark.parametrize("frame_type", [0x0B, 0x0C, 0x20, 0x7F, 0xFF])  # 0x10: RFC 9218
def test_unknown_frame_type_is_ignored(h2: RawClient, frame_type: int) -> None:
    """§4.1, §5.5: implementations MUST ignore and discard frames of unknown types."""
    h2.send_raw(raw_frame(frame_type, 0xFF, 0, b"unknown extension payload"))
    h2.assert_ignored()
    assert h2.get("/").status == 200


def test_altsvc_frame_is_ignored_by_server(h2: RawClient) -> None:
    """RFC 7838 §4, RFC 9113 §5.5: ALTSVC (0xa) is for clients; a server MUST ignore it."""
    origin = b"http://localhost"
    payload = struct.pack(">H", len(origin)) + origin + b'h2=":8443"'
    h2.send_raw(raw_frame(0x0A, 0, 0, payload))
    h2.assert_ignored()
    assert h2.get("/").status == 200


def test_unknown_frame_type_on_a_stream_is_ignored(h2: RawClient) -> None:
    """§5.5: an unknown frame type on an idle stream is discarded, not a state error."""
    h2.send_raw(raw_frame(0x20, 0, 1, b"x" * 16))
    h2.assert_ignored()
    assert h2.get("/").status == 200


def test_unknown_frame_type_inside_header_block_is_protocol_error(h2: RawClient) -> None:
    """§5.5: extension frames in the middle of a field block are a connection PROTOCOL_ERROR."""
    block = h2.encode(h2.request_headers("/"))
    h2.send_headers(1, block=block[:3], end_headers=False)
    h2.send_raw(raw_frame(0x20, 0, 1, b"x" * 8))
    h2.send_continuation(1, block[3:])
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_unknown_flags_on_ping_are_ignored(h2: RawClient) -> None:
    """§4.1: flags with no defined semantics MUST be ignored; the PING ACK echoes the payload."""
    h2.send_raw(raw_frame(FrameType.PING, 0xFE, 0, b"flagtest"))
    ack = h2.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, "PING ACK")
    assert ack.opaque_data == b"flagtest"


def test_unknown_flags_on_headers_are_ignored(h2: RawClient) -> None:
    """§4.1: undefined HEADERS flags (0x02, 0x10, 0x40, 0x80) are ignored."""
    block = h2.encode(h2.request_headers("/"))
    flags = Flag.END_STREAM | Flag.END_HEADERS | 0x02 | 0x10 | 0x40 | 0x80
    h2.send_raw(raw_frame(FrameType.HEADERS, flags, 1, block))
    response = h2.read_response(1)
    assert response.status == 200
    assert response.body == b"hello world"


def test_unknown_flags_on_data_are_ignored(h2: RawClient) -> None:
    """§4.1: undefined DATA flags are ignored; the body arrives intact."""
    h2.send_headers(1, h2.request_headers("/echo", "POST"), end_stream=False)
    h2.send_raw(raw_frame(FrameType.DATA, Flag.END_STREAM | 0xF6, 1, b"payload"))
    response = h2.read_response(1)
    assert response.body == b"payload"


def test_unknown_flags_on_settings_are_ignored(h2: RawClient) -> None:
    """§4.1: a SETTINGS frame with undefined flags (not ACK) is still applied and acknowledged."""
    h2.send_raw(raw_frame(FrameType.SETTINGS, 0xFE, 0, b""))
    h2.wait_for(lambda f: f.stream_id == 0 and "ACK" in f.flags and f.type == 0x4, "SETTINGS ACK")


def test_reserved_bit_in_stream_id_is_ignored(h2: RawClient) -> None:
    """§4.1: the reserved bit of the stream identifier MUST be ignored when receiving."""
    h2.send_headers(1, h2.request_headers("/"), reserved_bit=True)
    response = h2.read_response(1)
    assert response.status == 200


def test_reserved_bit_on_ping_is_ignored(h2: RawClient) -> None:
    """§4.1: R set on a stream-0 frame still means stream 0 (PING is answered)."""
    h2.send_raw(raw_frame(FrameType.PING, 0, 0, b"reserved", reserved_bit=True))
    ack = h2.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, "PING ACK")
    assert ack.opaque_data == b"reserved"


def test_server_never_sets_reserved_bit(h2: RawClient) -> None:
    """§4.1: the reserved bit MUST remain unset when sending."""
    h2.send_headers(1, h2.request_headers("/"))
    raw = bytearray(h2._buffer)  # bytes already read past the handshake, if any
    h2.sock.settimeout(h2.timeout)

    def fill(size: int) -> None:
        while len(raw) < size:
            chunk = h2.sock.recv(65536)
            assert chunk, "connection closed before the response ended"
            raw.extend(chunk)

    while True:  # walk the raw frame headers: the R bit is checked before any parsing
        fill(9)
        length = int.from_bytes(raw[:3], "big")
        fill(9 + length)
        frame_type, flags, stream = raw[3], raw[4], struct.unpack(">I", raw[5:9])[0]
        assert stream & 0x80000000 == 0, f"frame type {frame_type} has the reserved bit set"
        del raw[: 9 + length]
        if stream == 1 and flags & Flag.END_STREAM and frame_type in (0x0, 0x1):
            break


# -- §4.2: frame size ----------------------------------------------------------------------------


def test_data_frame_of_max_frame_size_is_accepted(h2: RawClient) -> None:
    """§4.2: a frame of exactly SETTINGS_MAX_FRAME_SIZE (16384 by default) is valid."""
    h2.send_headers(1, h2.request_headers("/echo", "POST"), end_stream=False)
    h2.send_data(1, b"a" * 16_384)
    response = h2.read_response(1)
    assert len(response.body) == 16_384


def test_data_frame_over_max_frame_size_is_frame_size_error(h2: RawClient) -> None:
    """§4.2: a frame exceeding SETTINGS_MAX_FRAME_SIZE MUST get FRAME_SIZE_ERROR."""
    h2.send_headers(1, h2.request_headers("/echo", "POST"), end_stream=False)
    h2.send_data(1, b"a" * 16_385)
    h2.expect_stream_error(1, ErrorCode.FRAME_SIZE_ERROR)


def test_headers_frame_over_max_frame_size_is_connection_error(h2: RawClient) -> None:
    """§4.2: an oversized frame carrying a field block MUST be a connection FRAME_SIZE_ERROR."""
    block = request_block("/") + hpack_literal("x-filler", "f" * 16_500)
    h2.send_headers(1, block=block)
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_stream_zero_frame_over_max_frame_size_is_connection_error(h2: RawClient) -> None:
    """§4.2: an oversized frame on stream 0 (here an unknown type) is a connection error."""
    h2.send_raw(raw_frame(0x20, 0, 0, b"x" * 16_385))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_server_frames_respect_default_max_frame_size(h2: RawClient) -> None:
    """§4.2: the server MUST NOT send a frame larger than our SETTINGS_MAX_FRAME_SIZE (16384)."""
    response = h2.get("/big?size=100000")
    assert len(response.body) == 100_000
    assert max(len(f.data) for f in response.data_frames) <= 16_384


def test_server_frames_respect_larger_client_max_frame_size(connect: Connect) -> None:
    """§4.2, §6.5.2: with SETTINGS_MAX_FRAME_SIZE 32768 from us, no server frame exceeds it."""
    client = connect(
        settings={Setting.MAX_FRAME_SIZE: 32_768, Setting.INITIAL_WINDOW_SIZE: 1 << 20}
    )
    response = client.get("/big?size=200000")
    assert len(response.body) == 200_000
    assert max(len(f.data) for f in response.data_frames) <= 32_768


def test_advertised_larger_max_frame_size_is_honoured(
    connect: Connect, large_frame_server: ServerProcess
) -> None:
    """§4.2, §6.5.2: a server advertising MAX_FRAME_SIZE 20000 MUST accept a 20000-byte frame."""
    client = connect(large_frame_server)
    assert client.server_settings[Setting.MAX_FRAME_SIZE] == LARGE_FRAME_SIZE
    client.send_headers(1, client.request_headers("/echo", "POST"), end_stream=False)
    client.send_data(1, b"b" * LARGE_FRAME_SIZE)
    response = client.read_response(1)
    assert len(response.body) == LARGE_FRAME_SIZE


def test_frame_over_advertised_larger_max_frame_size_is_rejected(
    connect: Connect, large_frame_server: ServerProcess
) -> None:
    """§4.2: one byte over the advertised 20000 -> FRAME_SIZE_ERROR."""
    client = connect(large_frame_server)
    client.send_headers(1, client.request_headers("/echo", "POST"), end_stream=False)
    client.send_data(1, b"b" * (LARGE_FRAME_SIZE + 1))
    client.expect_stream_error(1, ErrorCode.FRAME_SIZE_ERROR)


def test_frames_split_across_tcp_writes_are_reassembled(h2: RawClient) -> None:
    """§4.1: frame boundaries are independent of TCP segmentation."""
    block = h2.encode(h2.request_headers("/"))
    data = raw_frame(FrameType.HEADERS, Flag.END_STREAM | Flag.END_HEADERS, 1, block)
    for index in range(0, len(data), 3):
        h2.send_raw(data[index : index + 3])
    assert h2.read_response(1).status == 200


def test_many_frames_in_one_write_are_all_processed(h2: RawClient) -> None:
    """§4.1: several frames in one TCP segment are each processed, in order."""
    batch = b"".join(
        raw_frame(FrameType.HEADERS, Flag.END_STREAM | Flag.END_HEADERS, stream, block)
        for stream, block in (
            (1, h2.encode(h2.request_headers("/"))),
            (3, h2.encode(h2.request_headers("/"))),
            (5, h2.encode(h2.request_headers("/"))),
        )
    )
    h2.send_raw(batch + raw_frame(FrameType.PING, 0, 0, b"batching"))
    for stream in (1, 3, 5):
        assert h2.read_response(stream).status == 200
    frames = h2.received
    assert any(isinstance(f, PingFrame) and f.opaque_data == b"batching" for f in frames)
    assert not any(isinstance(f, RstStreamFrame) for f in frames)
    assert all(
        not isinstance(f, (HeadersFrame, DataFrame)) or f.stream_id in (1, 3, 5) for f in frames
    )
