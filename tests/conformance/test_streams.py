"""RFC 9113 §5.1: stream states, §5.1.1 stream identifiers, §5.1.2 stream concurrency."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    ErrorCode,
    Flag,
    FrameType,
    RawClient,
    Setting,
    hpack_indexed,
    hpack_literal,
    raw_frame,
    request_block,
)
from tests.conformance.servers import conformance_server
from tests.server_process import ServerProcess

SLOW = "/slow?ms=300"


@pytest.fixture(scope="module")
def limited_server() -> Iterator[ServerProcess]:
    """A server with SETTINGS_MAX_CONCURRENT_STREAMS = 2."""
    with conformance_server("--max-concurrent-streams", "2") as process:
        yield process


def _open_post(client: RawClient, path: str = "/echo") -> int:
    """An open stream: request HEADERS without END_STREAM."""
    return client.request(path, "POST", end_stream=False)


# -- §5.1 idle -----------------------------------------------------------------------------------

IDLE_FRAMES = {
    "DATA": raw_frame(FrameType.DATA, 0x1, 1, b"data"),
    "RST_STREAM": raw_frame(FrameType.RST_STREAM, 0, 1, struct.pack(">I", ErrorCode.CANCEL)),
    "WINDOW_UPDATE": raw_frame(FrameType.WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)),
    "CONTINUATION": raw_frame(FrameType.CONTINUATION, 0x4, 1, request_block("/")),
}


@pytest.mark.parametrize("frame", IDLE_FRAMES.values(), ids=IDLE_FRAMES.keys())
def test_idle_stream_rejects_frames_other_than_headers_and_priority(
    h2: RawClient, frame: bytes
) -> None:
    """§5.1 idle: any frame other than HEADERS or PRIORITY is a connection PROTOCOL_ERROR."""
    h2.send_raw(frame)
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_idle_stream_accepts_priority(h2: RawClient) -> None:
    """§5.1 idle: PRIORITY is allowed on an idle stream and does not open it."""
    h2.send_priority(3, depends_on=0, weight=32)
    h2.assert_ignored()
    assert h2.get("/").status == 200  # stream 1: opening a lower id is still fine


def test_idle_stream_opened_by_headers(h2: RawClient) -> None:
    """§5.1 idle -> open -> half-closed (remote) -> closed by the response's END_STREAM."""
    response = h2.get("/")
    assert response.status == 200
    assert response.body == b"hello world"


# -- §5.1 open -----------------------------------------------------------------------------------


def test_open_stream_accepts_data_in_several_frames(h2: RawClient) -> None:
    """§5.1 open: either peer can send frames of any type; here three DATA frames."""
    stream = _open_post(h2)
    for chunk in (b"one-", b"two-"):
        h2.send_data(stream, chunk, end_stream=False)
    h2.send_data(stream, b"three")
    assert h2.read_response(stream).body == b"one-two-three"


def test_open_stream_ended_by_empty_data_frame(h2: RawClient) -> None:
    """§5.1 open -> half-closed (remote) by an empty DATA frame carrying END_STREAM."""
    stream = _open_post(h2)
    h2.send_data(stream, b"")
    response = h2.read_response(stream)
    assert response.status == 200
    assert response.body == b""


def test_open_stream_accepts_window_update_and_priority(h2: RawClient) -> None:
    """§5.1 open: WINDOW_UPDATE and PRIORITY on an open stream are valid."""
    stream = _open_post(h2)
    h2.send_window_update(stream, 1000)
    h2.send_priority(stream, weight=200)
    h2.assert_ignored()
    h2.send_data(stream, b"ok")
    assert h2.read_response(stream).body == b"ok"


# -- §5.1 half-closed (remote) -------------------------------------------------------------------


def test_half_closed_remote_data_is_stream_closed(h2: RawClient) -> None:
    """§5.1 half-closed (remote): frames other than WINDOW_UPDATE, PRIORITY, RST_STREAM
    MUST be answered with a stream error STREAM_CLOSED (here DATA)."""
    stream = h2.request(SLOW)
    h2.send_data(stream, b"late")
    h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)


def test_half_closed_remote_headers_is_stream_closed(h2: RawClient) -> None:
    """§5.1 half-closed (remote): a second HEADERS (trailers after END_STREAM) -> STREAM_CLOSED."""
    stream = h2.request(SLOW)
    h2.send_headers(stream, [("x-trailer", "late")])
    h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)


def test_half_closed_remote_accepts_window_update(h2: RawClient) -> None:
    """§5.1 half-closed (remote): WINDOW_UPDATE is allowed and the response still completes."""
    stream = h2.request(SLOW)
    h2.send_window_update(stream, 4096)
    h2.assert_ignored()
    assert h2.read_response(stream).status == 200


def test_half_closed_remote_accepts_priority(h2: RawClient) -> None:
    """§5.1 half-closed (remote): PRIORITY is allowed."""
    stream = h2.request(SLOW)
    h2.send_priority(stream, weight=1)
    h2.assert_ignored()
    assert h2.read_response(stream).status == 200


def test_half_closed_remote_rst_stream_closes_without_reply(h2: RawClient) -> None:
    """§5.1 half-closed (remote): RST_STREAM closes the stream; §5.4.2 no RST_STREAM in reply."""
    stream = h2.request(SLOW)
    h2.send_rst_stream(stream, ErrorCode.CANCEL)
    follow_up = h2.request("/slow?ms=400")
    h2.read_response(follow_up)
    on_reset_stream = [f for f in h2.received if f.stream_id == stream]
    assert on_reset_stream == [], "a reset stream must get no HEADERS, DATA or RST_STREAM"


# -- §5.1 closed ---------------------------------------------------------------------------------


def test_closed_stream_data_is_stream_closed(h2: RawClient) -> None:
    """§5.1 closed: DATA on a stream closed by END_STREAM both ways -> STREAM_CLOSED."""
    stream = h2.request("/")
    h2.read_response(stream)
    h2.send_data(stream, b"too late")
    h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)


def test_closed_stream_headers_is_stream_closed(h2: RawClient) -> None:
    """§5.1 closed: HEADERS on a stream that is closed -> STREAM_CLOSED."""
    stream = h2.request("/")
    h2.read_response(stream)
    h2.send_headers(stream, h2.request_headers("/"))
    h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)


def test_data_after_client_rst_stream_is_stream_closed(h2: RawClient) -> None:
    """§5.1 closed: any frame but PRIORITY after receiving RST_STREAM -> STREAM_CLOSED."""
    stream = _open_post(h2)
    h2.send_rst_stream(stream, ErrorCode.CANCEL)
    h2.send_data(stream, b"after reset")
    h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)


def test_headers_after_client_rst_stream_is_stream_closed(h2: RawClient) -> None:
    """§5.1 closed: HEADERS after the client's RST_STREAM -> STREAM_CLOSED."""
    stream = _open_post(h2)
    h2.send_rst_stream(stream, ErrorCode.CANCEL)
    h2.send_headers(stream, [("x-trailer", "after reset")])
    h2.expect_stream_error(stream, ErrorCode.STREAM_CLOSED)


def test_closed_stream_accepts_priority(h2: RawClient) -> None:
    """§5.1 closed: PRIORITY frames on a closed stream are allowed."""
    stream = h2.request("/")
    h2.read_response(stream)
    h2.send_priority(stream, weight=8)
    h2.assert_ignored()


def test_closed_stream_window_update_just_after_end_is_ignored(h2: RawClient) -> None:
    """§5.1 closed: WINDOW_UPDATE arriving just after END_STREAM MUST be ignored."""
    stream = h2.request("/")
    h2.read_response(stream)
    h2.send_window_update(stream, 100)
    h2.assert_ignored()


def test_closed_stream_rst_stream_just_after_end_is_ignored(h2: RawClient) -> None:
    """§5.1 closed: RST_STREAM arriving just after END_STREAM MUST be ignored."""
    stream = h2.request("/")
    h2.read_response(stream)
    h2.send_rst_stream(stream, ErrorCode.CANCEL)
    h2.assert_ignored()


# -- §5.1.1 stream identifiers -------------------------------------------------------------------


def test_even_stream_id_from_client_is_protocol_error(h2: RawClient) -> None:
    """§5.1.1: client streams MUST use odd ids; an even id is a connection PROTOCOL_ERROR."""
    h2.send_headers(2, h2.request_headers("/"))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_decreasing_stream_id_is_protocol_error(h2: RawClient) -> None:
    """§5.1.1: a new stream id MUST be larger than all opened: 5 then 3 -> PROTOCOL_ERROR."""
    h2.send_headers(5, h2.request_headers("/"))
    h2.read_response(5)
    h2.send_headers(3, h2.request_headers("/"))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_skipped_stream_ids_are_implicitly_closed(h2: RawClient) -> None:
    """§5.1.1: opening stream 7 closes idle streams 1, 3, 5: HEADERS on 3 -> PROTOCOL_ERROR."""
    h2.send_headers(7, h2.request_headers(SLOW))
    h2.send_headers(3, h2.request_headers("/"))
    h2.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_stream_ids_need_not_be_consecutive(h2: RawClient) -> None:
    """§5.1.1: ids must increase, not be consecutive: 1, 9, 101 all succeed."""
    for stream in (1, 9, 101):
        h2.send_headers(stream, h2.request_headers("/"))
        assert h2.read_response(stream).status == 200


def test_largest_stream_id_is_usable(h2: RawClient) -> None:
    """§5.1.1: 2^31-1 is a valid (the last) client stream identifier."""
    stream = 2**31 - 1
    h2.send_headers(stream, h2.request_headers("/"))
    assert h2.read_response(stream).status == 200


def test_stream_id_reuse_after_close_is_rejected(h2: RawClient) -> None:
    """§5.1.1: stream ids cannot be reused; reopening 1 after 3 opened is a connection error."""
    for stream in (1, 3):
        h2.send_headers(stream, h2.request_headers("/"))
        h2.read_response(stream)
    h2.send_headers(1, h2.request_headers("/"))
    goaway = h2.wait_for(lambda f: isinstance(f, GoAwayFrame), "GOAWAY")
    assert goaway.error_code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.STREAM_CLOSED), goaway
    h2.expect_closed()


# -- §5.1.2 stream concurrency -------------------------------------------------------------------


def test_limited_server_advertises_max_concurrent_streams(
    connect: Connect, limited_server: ServerProcess
) -> None:
    """§5.1.2, §6.5.2: the limit is announced in SETTINGS_MAX_CONCURRENT_STREAMS."""
    client = connect(limited_server)
    assert client.server_settings[Setting.MAX_CONCURRENT_STREAMS] == 2


def test_stream_over_limit_is_refused(connect: Connect, limited_server: ServerProcess) -> None:
    """§5.1.2: a HEADERS over the limit gets a stream error: RST_STREAM(REFUSED_STREAM), and the
    connection and the streams in flight survive."""
    client = connect(limited_server)
    first, second = client.request(SLOW), client.request(SLOW)
    third = client.request("/")
    client.expect_rst(third, ErrorCode.REFUSED_STREAM)
    assert client.read_response(first).status == 200
    assert client.read_response(second).status == 200
    assert not any(isinstance(f, HeadersFrame) and f.stream_id == third for f in client.received)


def test_slot_is_free_again_after_streams_complete(
    connect: Connect, limited_server: ServerProcess
) -> None:
    """§5.1.2: only open and half-closed streams count; after they close new streams succeed."""
    client = connect(limited_server)
    for _ in range(3):
        streams = [client.request("/"), client.request("/")]
        for stream in streams:
            assert client.read_response(stream).status == 200


def test_client_reset_frees_a_slot(connect: Connect, limited_server: ServerProcess) -> None:
    """§5.1.2: a stream closed by RST_STREAM no longer counts toward the limit."""
    client = connect(limited_server)
    first, second = client.request("/slow?ms=5000"), client.request(SLOW)
    client.send_rst_stream(first, ErrorCode.CANCEL)
    third = client.request("/")
    assert client.read_response(third).status == 200
    assert client.read_response(second).status == 200


def test_open_stream_with_pending_body_counts_toward_limit(
    connect: Connect, limited_server: ServerProcess
) -> None:
    """§5.1.2: open streams (request body pending) count too: a third stream is refused."""
    client = connect(limited_server)
    first, second = _open_post(client), _open_post(client)
    third = client.request("/")
    client.expect_rst(third, ErrorCode.REFUSED_STREAM)
    for stream in (first, second):
        client.send_data(stream, b"done")
        assert client.read_response(stream).body == b"done"


def test_refused_stream_keeps_hpack_state(connect: Connect, limited_server: ServerProcess) -> None:
    """§5.1.2 + §4.3: a refused stream's field block still updates the HPACK table: a later
    request that references the entry it inserted is decoded correctly."""
    client = connect(limited_server)
    first, second = client.request(SLOW), client.request(SLOW)
    refused = client.next_stream_id()
    # ":path: /" inserted into the dynamic table (index 62) by the refused stream.
    block = request_block("/").replace(
        hpack_literal(4, "/", indexing="without"), hpack_literal(4, "/", indexing="incremental")
    )
    client.send_headers(refused, block=block)
    client.expect_rst(refused, ErrorCode.REFUSED_STREAM)
    for stream in (first, second):
        client.read_response(stream)
    reuse = client.next_stream_id()
    block = request_block("/").replace(hpack_literal(4, "/", indexing="without"), hpack_indexed(62))
    client.send_headers(reuse, block=block)
    response = client.read_response(reuse)
    assert response.status == 200
    assert response.body == b"hello world"


def test_data_on_refused_stream_is_ignored(connect: Connect, limited_server: ServerProcess) -> None:
    """§5.1 closed: frames on a stream the server reset MUST be ignored (the client may have sent
    them before it saw RST_STREAM)."""
    client = connect(limited_server)
    first, second = client.request(SLOW), client.request(SLOW)
    refused = client.next_stream_id()
    block = client.encode(client.request_headers("/echo", "POST"))
    client.send_raw(  # HEADERS and DATA in one write: the DATA is in flight when RST is sent
        raw_frame(FrameType.HEADERS, Flag.END_HEADERS, refused, block)
        + raw_frame(FrameType.DATA, 0, refused, b"in flight")
    )
    client.expect_rst(refused, ErrorCode.REFUSED_STREAM)
    frames = client.ping()
    assert not [f for f in frames if isinstance(f, RstStreamFrame) and f.stream_id == refused]
    for stream in (first, second):
        assert client.read_response(stream).status == 200
