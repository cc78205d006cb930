"""RFC 9113 §6.1-§6.10: each frame type's stream, length, flag and padding rules."""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import DataFrame, PingFrame, SettingsFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    ErrorCode,
    Flag,
    FrameType,
    RawClient,
    Setting,
    StreamState,
    priority_payload,
    raw_frame,
    settings_payload,
)

END = Flag.END_STREAM | Flag.END_HEADERS


def _settings_ack(client: RawClient) -> None:
    client.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "SETTINGS ACK")


# -- §6.1 DATA -----------------------------------------------------------------------------------


def test_data_on_stream_zero_is_protocol_error(h2: RawClient) -> None:
    """§6.1: DATA not associated with a stream (stream 0) -> connection PROTOCOL_ERROR."""
    h2.send_raw(raw_frame(FrameType.DATA, Flag.END_STREAM, 0, b"data"))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("pad_length", [0, 1, 255])
def test_padded_data_is_accepted_and_padding_discarded(h2: RawClient, pad_length: int) -> None:
    """§6.1: PADDED DATA: Pad Length byte and padding are removed; the body is intact."""
    stream = h2.request("/echo", "POST", end_stream=False)
    h2.send_data(stream, b"padded body", pad_length=pad_length)
    assert h2.read_response(stream).body == b"padded body"


@pytest.mark.parametrize("extra", [0, 1, 100], ids=["equal", "one-more", "far-more"])
def test_data_padding_not_shorter_than_payload_is_protocol_error(h2: RawClient, extra: int) -> None:
    """§6.1: padding length >= the frame payload length -> connection PROTOCOL_ERROR."""
    stream = h2.request("/echo", "POST", end_stream=False)
    payload = bytes([5 + extra]) + b"data"  # 5-byte payload, claimed padding 5+extra
    h2.send_raw(raw_frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, stream, payload))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_data_padding_using_whole_payload_minus_one_is_accepted(h2: RawClient) -> None:
    """§6.1: padding of payload length - 1 (no data octets) is the largest valid padding."""
    stream = h2.request("/echo", "POST", end_stream=False)
    payload = bytes([4]) + b"\0" * 4
    h2.send_raw(raw_frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, stream, payload))
    assert h2.read_response(stream).body == b""


def test_padded_data_without_pad_length_byte_is_frame_size_error(h2: RawClient) -> None:
    """§4.2, §6.1: a PADDED DATA frame too short for its Pad Length field -> FRAME_SIZE_ERROR."""
    stream = h2.request("/echo", "POST", end_stream=False)
    h2.send_raw(raw_frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, stream, b""))
    h2.expect_stream_error(stream, ErrorCode.FRAME_SIZE_ERROR)


# -- §6.2 HEADERS --------------------------------------------------------------------------------


def test_headers_on_stream_zero_is_protocol_error(h2: RawClient) -> None:
    """§6.2: HEADERS on stream 0 -> connection PROTOCOL_ERROR."""
    h2.send_headers(0, h2.request_headers("/"))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("pad_length", [0, 10, 255])
def test_padded_headers_are_accepted(h2: RawClient, pad_length: int) -> None:
    """§6.2: PADDED HEADERS: the padding is removed before decoding the field block."""
    h2.send_headers(1, h2.request_headers("/"), pad_length=pad_length)
    assert h2.read_response(1).status == 200


def test_headers_padding_longer_than_payload_is_protocol_error(h2: RawClient) -> None:
    """§6.2: padding that exceeds the remaining payload -> connection PROTOCOL_ERROR."""
    block = h2.encode(h2.request_headers("/"))
    payload = bytes([len(block) + 10]) + block
    h2.send_raw(raw_frame(FrameType.HEADERS, END | Flag.PADDED, 1, payload))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_headers_with_priority_flag_are_accepted(h2: RawClient) -> None:
    """§6.2: the PRIORITY flag adds a 5-byte dependency/weight prefix; the request is served."""
    h2.send_headers(1, h2.request_headers("/"), priority=priority_payload(0, 200, exclusive=True))
    assert h2.read_response(1).status == 200


def test_headers_with_priority_and_padding_are_accepted(h2: RawClient) -> None:
    """§6.2: PADDED and PRIORITY together: pad length, priority fields, block, padding."""
    h2.send_headers(1, h2.request_headers("/"), priority=priority_payload(0, 16), pad_length=7)
    assert h2.read_response(1).status == 200


def test_headers_depending_on_itself_is_protocol_error(h2: RawClient) -> None:
    """RFC 7540 §5.3.1 (RFC 9113 §5.3.1 keeps the field): a stream cannot depend on itself ->
    stream error PROTOCOL_ERROR."""
    h2.send_headers(1, h2.request_headers("/"), priority=priority_payload(1, 16))
    h2.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_headers_priority_flag_without_room_is_frame_size_error(h2: RawClient) -> None:
    """§4.2, §6.2: HEADERS too short for the PRIORITY fields -> connection FRAME_SIZE_ERROR
    (a frame that carries a field block)."""
    h2.send_raw(raw_frame(FrameType.HEADERS, END | Flag.PRIORITY, 1, b"\0\0\0"))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


# -- §6.3 PRIORITY -------------------------------------------------------------------------------


def test_priority_on_stream_zero_is_protocol_error(h2: RawClient) -> None:
    """§6.3: PRIORITY with stream id 0 -> connection PROTOCOL_ERROR."""
    h2.send_raw(raw_frame(FrameType.PRIORITY, 0, 0, priority_payload(1, 16)))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [4, 6])
def test_priority_with_wrong_length_is_frame_size_error(h2: RawClient, length: int) -> None:
    """§6.3: a PRIORITY frame with a length other than 5 -> stream error FRAME_SIZE_ERROR."""
    h2.send_raw(raw_frame(FrameType.PRIORITY, 0, 1, b"\0" * length))
    h2.expect_stream_error(1, ErrorCode.FRAME_SIZE_ERROR)


def test_priority_depending_on_itself_is_protocol_error(h2: RawClient) -> None:
    """RFC 7540 §5.3.1: a PRIORITY frame making a stream depend on itself -> PROTOCOL_ERROR."""
    stream = h2.request("/slow?ms=500")
    h2.send_priority(stream, depends_on=stream)
    h2.expect_stream_error(stream, ErrorCode.PROTOCOL_ERROR)


def test_priority_with_exclusive_dependency_is_accepted(h2: RawClient) -> None:
    """§6.3: an exclusive dependency on another (idle) stream is valid."""
    h2.send_priority(1, depends_on=3, weight=256, exclusive=True)
    h2.assert_ignored()
    assert h2.get("/").status == 200


# -- §6.4 RST_STREAM -----------------------------------------------------------------------------


def test_rst_stream_on_stream_zero_is_protocol_error(h2: RawClient) -> None:
    """§6.4: RST_STREAM with stream id 0 -> connection PROTOCOL_ERROR."""
    h2.send_rst_stream(0, ErrorCode.CANCEL)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [3, 5])
def test_rst_stream_with_wrong_length_is_frame_size_error(h2: RawClient, length: int) -> None:
    """§6.4: an RST_STREAM with a length other than 4 -> connection FRAME_SIZE_ERROR."""
    stream = h2.request("/slow?ms=500")
    h2.send_raw(raw_frame(FrameType.RST_STREAM, 0, stream, b"\0" * length))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_rst_stream_stops_the_response(connect: Connect) -> None:
    """§5.1, §6.4: after RST_STREAM the stream is closed: the server sends no more DATA on it
    even when a SETTINGS change would reopen its window."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 1000})
    stream = client.request("/big?size=100000")
    client.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == stream, "DATA")
    client.send_rst_stream(stream, ErrorCode.CANCEL)
    client.ping()
    before = len(client.streams[stream].data)
    client.send_settings({Setting.INITIAL_WINDOW_SIZE: 1 << 20})
    frames = client.ping()
    assert not [f for f in frames if f.stream_id == stream], frames
    assert len(client.streams[stream].data) == before


# -- §6.5 SETTINGS -------------------------------------------------------------------------------


def test_settings_ack_with_payload_is_frame_size_error(h2: RawClient) -> None:
    """§6.5: a SETTINGS ACK with a non-zero length -> connection FRAME_SIZE_ERROR."""
    payload = settings_payload({Setting.INITIAL_WINDOW_SIZE: 100})
    h2.send_raw(raw_frame(FrameType.SETTINGS, Flag.ACK, 0, payload))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_settings_on_a_stream_is_protocol_error(h2: RawClient) -> None:
    """§6.5: SETTINGS with a stream id other than 0 -> connection PROTOCOL_ERROR."""
    h2.send_raw(raw_frame(FrameType.SETTINGS, 0, 1, b""))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [1, 5, 7, 13])
def test_settings_length_not_multiple_of_six_is_frame_size_error(
    h2: RawClient, length: int
) -> None:
    """§6.5: a SETTINGS length that is not a multiple of 6 -> connection FRAME_SIZE_ERROR."""
    h2.send_raw(raw_frame(FrameType.SETTINGS, 0, 0, b"\0" * length))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


@pytest.mark.parametrize("value", [2, 0xFFFFFFFF])
def test_settings_enable_push_invalid_value_is_protocol_error(h2: RawClient, value: int) -> None:
    """§6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1 -> connection PROTOCOL_ERROR."""
    h2.send_settings({Setting.ENABLE_PUSH: value})
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("value", [0, 1])
def test_settings_enable_push_valid_values_are_acknowledged(h2: RawClient, value: int) -> None:
    """§6.5.2: a client may send ENABLE_PUSH 0 or 1; the server acknowledges (§6.5.3)."""
    h2.send_settings({Setting.ENABLE_PUSH: value})
    _settings_ack(h2)
    assert h2.get("/").status == 200


@pytest.mark.parametrize("value", [2**31, 0xFFFFFFFF])
def test_settings_initial_window_too_large_is_flow_control_error(h2: RawClient, value: int) -> None:
    """§6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 -> connection FLOW_CONTROL_ERROR."""
    h2.send_settings({Setting.INITIAL_WINDOW_SIZE: value})
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


@pytest.mark.parametrize("value", [0, 16_383, 2**24, 0xFFFFFFFF])
def test_settings_max_frame_size_out_of_range_is_protocol_error(h2: RawClient, value: int) -> None:
    """§6.5.2: SETTINGS_MAX_FRAME_SIZE outside 2^14..2^24-1 -> connection PROTOCOL_ERROR."""
    h2.send_settings({Setting.MAX_FRAME_SIZE: value})
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("value", [16_384, 2**24 - 1])
def test_settings_max_frame_size_bounds_are_accepted(h2: RawClient, value: int) -> None:
    """§6.5.2: 2^14 and 2^24-1 are the legal extremes of SETTINGS_MAX_FRAME_SIZE."""
    h2.send_settings({Setting.MAX_FRAME_SIZE: value})
    _settings_ack(h2)
    h2.max_frame_size = value
    assert h2.get("/").status == 200


@pytest.mark.parametrize("identifier", [0x0, 0x7, 0x10, 0xFFFF])
def test_settings_unknown_identifier_is_ignored(h2: RawClient, identifier: int) -> None:
    """§6.5.2: an unsupported SETTINGS identifier MUST be ignored; the frame is acknowledged."""
    h2.send_settings({identifier: 12345})
    _settings_ack(h2)
    assert h2.get("/").status == 200


def test_settings_values_are_processed_in_order(connect: Connect) -> None:
    """§6.5: values in one SETTINGS frame are processed in order: the last one wins."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 0})
    payload = settings_payload(
        [(Setting.INITIAL_WINDOW_SIZE, 5000), (Setting.INITIAL_WINDOW_SIZE, 100)]
    )
    client.send_raw(raw_frame(FrameType.SETTINGS, 0, 0, payload))
    _settings_ack(client)
    stream = client.request("/big?size=1000")
    state = client.streams.setdefault(stream, StreamState())
    client.wait_for(lambda f: len(state.data) >= 100, "100 bytes of DATA")
    client.ping()
    assert len(state.data) == 100


def test_every_settings_frame_is_acknowledged(h2: RawClient) -> None:
    """§6.5.3: each SETTINGS frame without ACK gets its own ACK."""
    for _ in range(3):
        h2.send_settings({Setting.MAX_CONCURRENT_STREAMS: 10})
    frames = h2.ping()
    acks = [f for f in frames if isinstance(f, SettingsFrame) and "ACK" in f.flags]
    assert len(acks) == 3


def test_settings_header_table_size_zero_is_acknowledged(h2: RawClient) -> None:
    """§6.5.2: SETTINGS_HEADER_TABLE_SIZE 0 is legal; it is acknowledged."""
    h2.send_settings({Setting.HEADER_TABLE_SIZE: 0})
    _settings_ack(h2)


# -- §6.6 PUSH_PROMISE ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream_id", [0, 1, 3], ids=["stream-0", "open-stream", "idle-stream"])
def test_push_promise_from_client_is_protocol_error(h2: RawClient, stream_id: int) -> None:
    """§8.4, §6.6: a client cannot push: PUSH_PROMISE -> connection PROTOCOL_ERROR."""
    h2.request("/slow?ms=500")  # stream 1 open (half-closed remote)
    block = h2.encode(h2.request_headers("/"))
    payload = struct.pack(">I", 2) + block
    h2.send_raw(raw_frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, stream_id, payload))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


# -- §6.7 PING -----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\0" * 8, b"osmium!!", bytes(range(248, 256))])
def test_ping_is_acknowledged_with_same_payload(h2: RawClient, payload: bytes) -> None:
    """§6.7: a PING without ACK MUST be answered with a PING ACK carrying the same payload."""
    h2.send_ping(payload)
    ack = h2.wait_for(lambda f: isinstance(f, PingFrame), "PING ACK")
    assert "ACK" in ack.flags
    assert ack.stream_id == 0
    assert ack.opaque_data == payload


def test_ping_ack_from_client_is_not_answered(h2: RawClient) -> None:
    """§6.7: an endpoint MUST NOT respond to PING frames with ACK set."""
    h2.send_ping(b"ack-only", ack=True)
    h2.send_ping(b"answered")
    first = h2.wait_for(lambda f: isinstance(f, PingFrame), "PING")
    assert first.opaque_data == b"answered"


def test_ping_on_a_stream_is_protocol_error(h2: RawClient) -> None:
    """§6.7: PING with a stream id other than 0 -> connection PROTOCOL_ERROR."""
    h2.send_raw(raw_frame(FrameType.PING, 0, 1, b"\0" * 8))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 7, 9])
def test_ping_with_wrong_length_is_frame_size_error(h2: RawClient, length: int) -> None:
    """§6.7: PING with a length other than 8 -> connection FRAME_SIZE_ERROR."""
    h2.send_raw(raw_frame(FrameType.PING, 0, 0, b"\0" * length))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


# -- §6.8 GOAWAY ---------------------------------------------------------------------------------


def test_goaway_on_a_stream_is_protocol_error(h2: RawClient) -> None:
    """§6.8: GOAWAY with a stream id other than 0 -> connection PROTOCOL_ERROR."""
    h2.send_raw(raw_frame(FrameType.GOAWAY, 0, 1, struct.pack(">II", 0, 0)))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 4, 7])
def test_goaway_too_short_is_frame_size_error(h2: RawClient, length: int) -> None:
    """§4.2, §6.8: GOAWAY too short for last-stream-id and error code -> FRAME_SIZE_ERROR."""
    h2.send_raw(raw_frame(FrameType.GOAWAY, 0, 0, b"\0" * length))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


# -- §6.9 WINDOW_UPDATE --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [3, 5])
@pytest.mark.parametrize("stream_id", [0, 1], ids=["connection", "stream"])
def test_window_update_with_wrong_length_is_frame_size_error(
    h2: RawClient, length: int, stream_id: int
) -> None:
    """§6.9: a WINDOW_UPDATE with a length other than 4 -> connection FRAME_SIZE_ERROR."""
    if stream_id:
        h2.request("/slow?ms=500")
    payload = (b"\0" * length)[:-1] + b"\x01"
    h2.send_raw(raw_frame(FrameType.WINDOW_UPDATE, 0, stream_id, payload))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


# -- §6.10 CONTINUATION --------------------------------------------------------------------------


def test_headers_followed_by_continuation(h2: RawClient) -> None:
    """§6.10: a field block split into HEADERS + CONTINUATION(END_HEADERS) is one block."""
    block = h2.encode(h2.request_headers("/"))
    h2.send_headers(1, block=block[:5], end_headers=False)
    h2.send_continuation(1, block[5:])
    assert h2.read_response(1).status == 200


def test_headers_followed_by_several_continuations(h2: RawClient) -> None:
    """§6.10: any number of CONTINUATION frames may follow, including empty ones."""
    block = h2.encode(h2.request_headers("/", extra=[("x-long", "v" * 200)]))
    h2.send_headers(1, block=block[:1], end_headers=False)
    h2.send_continuation(1, b"", end_headers=False)
    chunks = [block[index : index + 10] for index in range(1, len(block), 10)]
    for index, chunk in enumerate(chunks):
        h2.send_continuation(1, chunk, end_headers=index == len(chunks) - 1)
    assert h2.read_response(1).status == 200


def test_end_stream_on_headers_applies_across_continuation(h2: RawClient) -> None:
    """§6.10, §8.1: END_STREAM is on the HEADERS frame; the CONTINUATION completes the block."""
    block = h2.encode(h2.request_headers("/echo", "POST"))
    h2.send_headers(1, block=block[:4], end_headers=False, end_stream=True)
    h2.send_continuation(1, block[4:])
    response = h2.read_response(1)
    assert response.status == 200
    assert response.body == b""


def test_continuation_on_stream_zero_is_protocol_error(h2: RawClient) -> None:
    """§6.10: CONTINUATION with stream id 0 -> connection PROTOCOL_ERROR."""
    block = h2.encode(h2.request_headers("/"))
    h2.send_headers(1, block=block[:5], end_headers=False)
    h2.send_raw(raw_frame(FrameType.CONTINUATION, Flag.END_HEADERS, 0, block[5:]))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_on_another_stream_is_protocol_error(h2: RawClient) -> None:
    """§6.10: a CONTINUATION for a different stream inside a block -> PROTOCOL_ERROR."""
    block = h2.encode(h2.request_headers("/"))
    h2.send_headers(1, block=block[:5], end_headers=False)
    h2.send_continuation(3, block[5:])
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


INTERLEAVED = {
    "DATA": raw_frame(FrameType.DATA, 0, 1, b"x"),
    "PING": raw_frame(FrameType.PING, 0, 0, b"\0" * 8),
    "PRIORITY": raw_frame(FrameType.PRIORITY, 0, 1, priority_payload(0, 16)),
    "SETTINGS": raw_frame(FrameType.SETTINGS, 0, 0, b""),
    "WINDOW_UPDATE": raw_frame(FrameType.WINDOW_UPDATE, 0, 0, struct.pack(">I", 10)),
    "RST_STREAM": raw_frame(FrameType.RST_STREAM, 0, 1, struct.pack(">I", 8)),
    "HEADERS-other-stream": raw_frame(FrameType.HEADERS, Flag.END_HEADERS, 3, b"\x82"),
}


@pytest.mark.parametrize("frame", INTERLEAVED.values(), ids=INTERLEAVED.keys())
def test_other_frame_inside_header_block_is_protocol_error(h2: RawClient, frame: bytes) -> None:
    """§6.10: a header block must be contiguous: any other frame before END_HEADERS ->
    connection PROTOCOL_ERROR."""
    block = h2.encode(h2.request_headers("/"))
    h2.send_headers(1, block=block[:5], end_headers=False)
    h2.send_raw(frame)
    h2.send_continuation(1, block[5:])
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_after_end_headers_is_protocol_error(h2: RawClient) -> None:
    """§6.10: a CONTINUATION after a HEADERS with END_HEADERS -> PROTOCOL_ERROR."""
    h2.send_headers(1, h2.request_headers("/slow?ms=500"))
    h2.send_continuation(1, h2.encode([("x-extra", "1")]))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_after_completed_continuation_is_protocol_error(h2: RawClient) -> None:
    """§6.10: a CONTINUATION after a CONTINUATION with END_HEADERS -> PROTOCOL_ERROR."""
    block = h2.encode(h2.request_headers("/slow?ms=500"))
    h2.send_headers(1, block=block[:5], end_headers=False)
    h2.send_continuation(1, block[5:])
    h2.send_continuation(1, h2.encode([("x-extra", "1")]))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)
