"""RFC 9113 §5.4: connection and stream error handling; §7 error codes."""

from __future__ import annotations

from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import ErrorCode, Flag, FrameType, RawClient, raw_frame


def test_connection_error_sends_goaway_then_closes(h2: RawClient) -> None:
    """§5.4.1: on a connection error, send GOAWAY then MUST close the TCP connection."""
    h2.send_raw(raw_frame(FrameType.DATA, 0, 0, b"stream zero"))
    goaway = h2.expect_goaway(ErrorCode.PROTOCOL_ERROR)
    assert goaway.stream_id == 0
    after = h2.expect_closed()
    assert not [f for f in after if not isinstance(f, GoAwayFrame)], after


def test_goaway_last_stream_id_is_zero_without_streams(h2: RawClient) -> None:
    """§5.4.1, §6.8: with no stream processed, the GOAWAY last-stream-id is 0."""
    h2.send_raw(raw_frame(FrameType.DATA, 0, 0, b"stream zero"))
    h2.expect_goaway(ErrorCode.PROTOCOL_ERROR, last_stream_id=0)


def test_goaway_last_stream_id_is_last_processed_stream(h2: RawClient) -> None:
    """§5.4.1, §6.8: the last-stream-id is the highest stream the server processed."""
    for _ in range(2):
        h2.get("/")  # streams 1 and 3
    h2.send_raw(raw_frame(FrameType.DATA, 0, 0, b"stream zero"))
    h2.expect_goaway(ErrorCode.PROTOCOL_ERROR, last_stream_id=3)


def test_goaway_last_stream_id_covers_streams_in_flight(h2: RawClient) -> None:
    """§6.8: a stream in flight when the error happens is at or below the last-stream-id."""
    stream = h2.request("/slow?ms=1000")
    h2.ping()
    h2.send_raw(raw_frame(FrameType.DATA, 0, 0, b"stream zero"))
    h2.expect_goaway(ErrorCode.PROTOCOL_ERROR, last_stream_id=stream)


def test_frames_after_connection_error_are_not_processed(h2: RawClient) -> None:
    """§5.4.1, §6.8: a request that follows the error in the same write is not served."""
    block = h2.encode(h2.request_headers("/"))
    h2.send_raw(
        raw_frame(FrameType.DATA, 0, 0, b"stream zero")
        + raw_frame(FrameType.HEADERS, Flag.END_STREAM | Flag.END_HEADERS, 1, block)
    )
    h2.expect_goaway(ErrorCode.PROTOCOL_ERROR, last_stream_id=0)
    h2.expect_closed()
    assert not [f for f in h2.received if isinstance(f, (HeadersFrame, DataFrame))]


def test_no_rst_stream_in_reply_to_rst_stream_on_open_stream(h2: RawClient) -> None:
    """§5.4.2: to avoid looping, an endpoint MUST NOT send RST_STREAM in reply to RST_STREAM."""
    stream = h2.request("/echo", "POST", end_stream=False)
    h2.send_rst_stream(stream, ErrorCode.CANCEL)
    h2.assert_ignored()


def test_no_rst_stream_in_reply_to_rst_stream_with_error(h2: RawClient) -> None:
    """§5.4.2: an RST_STREAM(INTERNAL_ERROR) from the client is not answered either."""
    stream = h2.request("/slow?ms=1000")
    h2.send_rst_stream(stream, ErrorCode.INTERNAL_ERROR)
    h2.assert_ignored()
    assert h2.get("/").status == 200


def test_unknown_error_code_in_rst_stream_has_no_special_behaviour(h2: RawClient) -> None:
    """§7: unknown error codes MUST NOT trigger special behaviour (treated like INTERNAL_ERROR
    at most): the stream closes, the connection is unaffected."""
    stream = h2.request("/echo", "POST", end_stream=False)
    h2.send_rst_stream(stream, 0xDEADBEEF)
    h2.assert_ignored()
    assert h2.get("/").status == 200


def test_stream_error_leaves_connection_usable(h2: RawClient) -> None:
    """§5.4.2: a stream error (here STREAM_CLOSED for DATA after our RST_STREAM) ends that
    stream only; if the server keeps it a stream error, other streams carry on."""
    slow = h2.request("/slow?ms=200")
    stream = h2.request("/echo", "POST", end_stream=False)
    h2.send_rst_stream(stream, ErrorCode.CANCEL)
    h2.send_data(stream, b"after reset")
    frame = h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)
    if isinstance(frame, RstStreamFrame):
        assert h2.read_response(slow).status == 200
        assert h2.get("/").status == 200


def test_connection_error_code_matches_the_error(h2: RawClient) -> None:
    """§5.4.1, §7: the GOAWAY error code names the condition (FRAME_SIZE_ERROR, not a generic
    PROTOCOL_ERROR or INTERNAL_ERROR, for a PING of the wrong length)."""
    h2.send_raw(raw_frame(FrameType.PING, 0, 0, b"\0" * 6))
    h2.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_server_survives_many_connection_errors(h2: RawClient, connect: Connect) -> None:
    """§5.4.1: a connection error affects one connection only; the server keeps serving."""
    for _ in range(5):
        client = connect()
        client.send_raw(raw_frame(FrameType.DATA, 0, 0, b"x"))
        client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)
    assert h2.get("/").status == 200
