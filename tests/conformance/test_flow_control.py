"""RFC 9113 §5.2 flow control, §6.9 WINDOW_UPDATE, §6.9.1 the window, §6.9.2 initial window size."""

from __future__ import annotations

from hyperframe.frame import DataFrame, HeadersFrame, WindowUpdateFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    ErrorCode,
    RawClient,
    Setting,
    StreamState,
)

SERVER_STREAM_WINDOW = 262_144
SERVER_CONNECTION_WINDOW = 1_048_576
#: A handler that never reads its request body: the server's receive window is not reopened.
NOT_READING = "/slow?ms=3000"


def _state(client: RawClient, stream_id: int) -> StreamState:
    return client.streams.setdefault(stream_id, StreamState())


def _receive_until(client: RawClient, stream_id: int, size: int) -> None:
    state = _state(client, stream_id)
    client.wait_for(lambda f: len(state.data) >= size, f"{size} bytes on stream {stream_id}")


def _sent_bytes(client: RawClient, stream_id: int | None = None) -> int:
    return sum(
        len(f.data)
        for f in client.received
        if isinstance(f, DataFrame) and (stream_id is None or f.stream_id == stream_id)
    )


# -- the server respects the client's windows (§6.9.1) -------------------------------------------


def test_server_stops_at_stream_window_and_resumes(connect: Connect) -> None:
    """§6.9.1: the sender MUST NOT send DATA beyond the stream window; WINDOW_UPDATE resumes it."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 100})
    stream = client.request("/big?size=1000")
    _receive_until(client, stream, 100)
    client.ping()
    assert _sent_bytes(client, stream) == 100
    client.send_window_update(stream, 900)
    response = client.read_response(stream, replenish=False)
    assert len(response.body) == 1000


def test_zero_initial_window_allows_headers_but_no_data(connect: Connect) -> None:
    """§6.9: only DATA is flow controlled: with a 0 window HEADERS arrives, DATA waits."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 0})
    stream = client.request("/big?size=1000")
    client.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream, "HEADERS")
    client.ping()
    assert _sent_bytes(client, stream) == 0
    client.send_window_update(stream, 1000)
    response = client.read_response(stream, replenish=False)
    assert response.status == 200
    assert len(response.body) == 1000


def test_empty_end_stream_data_needs_no_window(connect: Connect) -> None:
    """§6.9.1: an empty DATA frame with END_STREAM MAY be sent with no window available."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 0})
    response = client.read_response(client.request("/stream?chunks=0"), replenish=False)
    assert response.status == 200
    assert response.body == b""


def test_server_stops_at_connection_window_and_resumes(connect: Connect) -> None:
    """§6.9.1: the connection window (65535, untouched by SETTINGS) also limits DATA."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 1 << 20})
    stream = client.request("/big?size=100000")
    _receive_until(client, stream, DEFAULT_WINDOW)
    client.ping()
    assert _sent_bytes(client, stream) == DEFAULT_WINDOW
    client.send_window_update(0, 100_000 - DEFAULT_WINDOW)
    response = client.read_response(stream, replenish=False)
    assert len(response.body) == 100_000


def test_connection_window_is_shared_by_streams(connect: Connect) -> None:
    """§5.2.1, §6.9.1: two streams together never exceed the connection window."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 1 << 20})
    first, second = client.request("/big?size=50000"), client.request("/big?size=50000")
    client.wait_for(lambda f: _sent_bytes(client) >= DEFAULT_WINDOW, "a full connection window")
    client.ping()
    assert _sent_bytes(client) == DEFAULT_WINDOW
    client.send_window_update(0, 100_000 - DEFAULT_WINDOW)
    assert len(client.read_response(first, replenish=False).body) == 50_000
    assert len(client.read_response(second, replenish=False).body) == 50_000


def test_initial_window_increase_applies_to_open_streams(connect: Connect) -> None:
    """§6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change adjusts the window of every open stream."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 0})
    stream = client.request("/big?size=5000")
    client.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream, "HEADERS")
    client.send_settings({Setting.INITIAL_WINDOW_SIZE: 5000})
    response = client.read_response(stream, replenish=False)
    assert len(response.body) == 5000


def test_initial_window_decrease_can_make_window_negative(connect: Connect) -> None:
    """§6.9.2: a smaller SETTINGS_INITIAL_WINDOW_SIZE can make a stream window negative; the
    sender then waits until WINDOW_UPDATEs make it positive again."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 1000})
    stream = client.request("/big?size=3000")
    _receive_until(client, stream, 1000)
    client.send_settings({Setting.INITIAL_WINDOW_SIZE: 0})  # window: 0 - 1000 = -1000
    client.send_window_update(stream, 1500)  # window: 500
    _receive_until(client, stream, 1500)
    client.ping()
    assert _sent_bytes(client, stream) == 1500
    client.send_window_update(stream, 1500)
    assert len(client.read_response(stream, replenish=False).body) == 3000


def test_initial_window_change_does_not_touch_connection_window(connect: Connect) -> None:
    """§6.9.2: SETTINGS_INITIAL_WINDOW_SIZE cannot alter the connection flow-control window."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 1 << 20})
    stream = client.request("/big?size=100000")
    _receive_until(client, stream, DEFAULT_WINDOW)
    client.send_settings({Setting.INITIAL_WINDOW_SIZE: 1 << 21})
    client.ping()
    assert _sent_bytes(client, stream) == DEFAULT_WINDOW
    client.send_window_update(0, 100_000)
    assert len(client.read_response(stream, replenish=False).body) == 100_000


def test_data_frames_never_exceed_small_window(connect: Connect) -> None:
    """§6.9.1: with a 1000-byte window every WINDOW_UPDATE releases at most that much."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 1000})
    stream = client.request("/big?size=10000")
    for received in range(1000, 10_001, 1000):
        _receive_until(client, stream, received)
        client.ping()
        assert _sent_bytes(client, stream) == received
        client.send_window_update(stream, 1000)
    assert _state(client, stream).ended


# -- the server's own receive windows ------------------------------------------------------------


def test_server_reopens_windows_for_a_body_larger_than_its_window(connect: Connect) -> None:
    """§5.2.2, §6.9: the server sends WINDOW_UPDATE as the app reads, so a body larger than
    its initial stream window can be sent without violating flow control."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: MAX_WINDOW})
    client.send_window_update(0, MAX_WINDOW - DEFAULT_WINDOW)  # never block the echo on us
    total = SERVER_STREAM_WINDOW + 100_000
    body = (bytes(range(256)) * (total // 256 + 1))[:total]
    stream = client.request("/echo", "POST", end_stream=False)
    window = SERVER_STREAM_WINDOW
    offset = 0
    while offset < total:
        if window == 0:
            update = client.wait_for(
                lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == stream,
                "WINDOW_UPDATE for the request stream",
            )
            window += update.window_increment
            continue
        size = min(16_384, window, total - offset)
        client.send_data(stream, body[offset : offset + size], end_stream=offset + size == total)
        offset += size
        window -= size
    response = client.read_response(stream, replenish=False)
    assert response.body == body


def test_data_beyond_server_stream_window_is_flow_control_error(h2: RawClient) -> None:
    """§5.2.1, §6.9.1: DATA beyond the advertised stream window (262144) -> FLOW_CONTROL_ERROR."""
    stream = h2.request(NOT_READING, end_stream=False)
    h2.send_body(stream, b"x" * SERVER_STREAM_WINDOW, end_stream=False)
    h2.send_data(stream, b"x", end_stream=False)
    h2.expect_stream_error(stream, ErrorCode.FLOW_CONTROL_ERROR)


def test_data_filling_server_stream_window_exactly_is_accepted(h2: RawClient) -> None:
    """§6.9.1: a sender may use the whole window: 262144 bytes are not an error."""
    stream = h2.request(NOT_READING, end_stream=False)
    h2.send_body(stream, b"x" * SERVER_STREAM_WINDOW, end_stream=False)
    h2.assert_ignored()


def test_padding_counts_toward_flow_control(h2: RawClient) -> None:
    """§6.1: the entire DATA payload, padding included, is flow controlled: padding that pushes
    the total past the stream window is a FLOW_CONTROL_ERROR."""
    stream = h2.request(NOT_READING, end_stream=False)
    for _ in range(16):  # 16 x (1 + 16128 + 255) = 262144 flow-controlled bytes
        h2.send_data(stream, b"p" * 16_128, end_stream=False, pad_length=255)
    h2.send_data(stream, b"p", end_stream=False)
    h2.expect_stream_error(stream, ErrorCode.FLOW_CONTROL_ERROR)


def test_data_beyond_server_connection_window_is_flow_control_error(h2: RawClient) -> None:
    """§5.2.1, §6.9.1: DATA beyond the connection window (1 MiB) -> connection error."""
    streams = [h2.request(NOT_READING, end_stream=False) for _ in range(5)]
    for stream in streams[:4]:
        h2.send_body(stream, b"c" * SERVER_STREAM_WINDOW, end_stream=False)
    h2.send_data(streams[4], b"c", end_stream=False)
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


# -- §6.9 WINDOW_UPDATE validity -----------------------------------------------------------------


def test_connection_window_overflow_is_flow_control_error(h2: RawClient) -> None:
    """§6.9.1: a WINDOW_UPDATE making the connection window exceed 2^31-1 -> connection
    FLOW_CONTROL_ERROR."""
    h2.send_window_update(0, MAX_WINDOW)
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_connection_window_overflow_by_several_updates(h2: RawClient) -> None:
    """§6.9.1: several WINDOW_UPDATEs summing past 2^31-1 -> connection FLOW_CONTROL_ERROR."""
    h2.send_window_update(0, 2**30)
    h2.send_window_update(0, 2**30)
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_connection_window_up_to_maximum_is_accepted(h2: RawClient) -> None:
    """§6.9.1: a window of exactly 2^31-1 is legal."""
    h2.send_window_update(0, MAX_WINDOW - DEFAULT_WINDOW)
    h2.assert_ignored()
    assert h2.get("/").status == 200


def test_stream_window_overflow_is_flow_control_error(h2: RawClient) -> None:
    """§6.9.1: a WINDOW_UPDATE making a stream window exceed 2^31-1 -> stream
    FLOW_CONTROL_ERROR."""
    stream = h2.request(NOT_READING)
    h2.send_window_update(stream, MAX_WINDOW)
    h2.expect_stream_error(stream, ErrorCode.FLOW_CONTROL_ERROR)


def test_stream_window_overflow_by_several_updates(h2: RawClient) -> None:
    """§6.9.1: several stream WINDOW_UPDATEs summing past 2^31-1 -> FLOW_CONTROL_ERROR."""
    stream = h2.request(NOT_READING)
    h2.send_window_update(stream, 2**30)
    h2.send_window_update(stream, 2**30)
    h2.expect_stream_error(stream, ErrorCode.FLOW_CONTROL_ERROR)


def test_initial_window_change_overflowing_a_stream_is_flow_control_error(h2: RawClient) -> None:
    """§6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change that makes a window exceed 2^31-1 is a
    connection error FLOW_CONTROL_ERROR."""
    stream = h2.request(NOT_READING)
    h2.send_window_update(stream, MAX_WINDOW - DEFAULT_WINDOW)  # stream window: 2^31-1
    h2.send_settings({Setting.INITIAL_WINDOW_SIZE: DEFAULT_WINDOW + 1})
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_initial_window_size_above_maximum_is_flow_control_error(h2: RawClient) -> None:
    """§6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 -> connection FLOW_CONTROL_ERROR."""
    h2.send_settings({Setting.INITIAL_WINDOW_SIZE: 2**31})
    h2.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_initial_window_size_of_maximum_is_accepted(h2: RawClient) -> None:
    """§6.5.2: SETTINGS_INITIAL_WINDOW_SIZE = 2^31-1 is the largest legal value."""
    h2.send_settings({Setting.INITIAL_WINDOW_SIZE: MAX_WINDOW})
    h2.wait_for(lambda f: f.type == 0x4 and "ACK" in f.flags, "SETTINGS ACK")
    h2.send_window_update(0, 1_000_000)
    assert len(h2.get("/big?size=500000").body) == 500_000


def test_zero_window_increment_on_connection_is_protocol_error(h2: RawClient) -> None:
    """§6.9: a WINDOW_UPDATE with increment 0 on stream 0 -> connection PROTOCOL_ERROR."""
    h2.send_window_update(0, 0)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_zero_window_increment_on_stream_is_protocol_error(h2: RawClient) -> None:
    """§6.9: a WINDOW_UPDATE with increment 0 on a stream -> stream error PROTOCOL_ERROR."""
    stream = h2.request(NOT_READING)
    h2.send_window_update(stream, 0)
    h2.expect_stream_error(stream, ErrorCode.PROTOCOL_ERROR)


def test_window_update_reserved_bit_is_ignored(h2: RawClient) -> None:
    """§6.9: the reserved bit of the increment MUST be ignored: 0x80000000|1000 means +1000."""
    h2.send_window_update(0, 0x80000000 | 1000)
    h2.assert_ignored()
    assert h2.get("/").status == 200
