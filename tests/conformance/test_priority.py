"""RFC 9218 extensible priorities: the order DATA leaves in, and the signals that set it.

The client keeps the connection window shut and opens it one frame's worth per DATA frame it
reads, so the server always has several responses queued and the order it picks is visible.
Stream windows are opened wide up front (SETTINGS_INITIAL_WINDOW_SIZE) unless a test narrows one.
"""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import DataFrame, RstStreamFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import (
    ErrorCode,
    FrameType,
    RawClient,
    Setting,
    raw_frame,
)

BODY = 256 * 1024
BIG = f"/big?size={BODY}"
WIDE_STREAM_WINDOWS = {Setting.INITIAL_WINDOW_SIZE: 4 * BODY}


def request_all(client: RawClient, priorities: list[str | None], path: str = BIG) -> list[int]:
    """Open one stream per entry (its `priority` field, or none) in a single write, so the
    server reads them together."""
    batch = b""
    stream_ids = []
    for priority in priorities:
        stream_id = client.next_stream_id()
        extra = [("priority", priority)] if priority is not None else []
        block = client.encode(client.request_headers(path, extra=extra))
        batch += raw_frame(FrameType.HEADERS, 0x5, stream_id, block)  # END_STREAM|END_HEADERS
        stream_ids.append(stream_id)
    client.send_raw(batch)
    return stream_ids


def data_order(client: RawClient, stream_ids: list[int], until_ended: list[int]) -> list[int]:
    """The stream of every DATA frame read until all of `until_ended` ended, opening the
    connection window by each frame's size as it is read."""
    order = []
    while not all(client.streams.get(s) and client.streams[s].ended for s in until_ended):
        frame = client.wait_for(lambda f: isinstance(f, (DataFrame, RstStreamFrame)), "DATA")
        assert not isinstance(frame, RstStreamFrame), f"stream {frame.stream_id} was reset"
        if frame.stream_id in stream_ids:
            order.append(frame.stream_id)
        if frame.flow_controlled_length:
            client.send_window_update(0, frame.flow_controlled_length)
    return order


def runs(order: list[int]) -> list[int]:
    """The stream ids in the order they had the connection, each run of frames as one entry."""
    collapsed: list[int] = []
    for stream_id in order:
        if not collapsed or collapsed[-1] != stream_id:
            collapsed.append(stream_id)
    return collapsed


def test_server_says_it_does_not_use_rfc7540_priorities(h2: RawClient) -> None:
    """§2.1: SETTINGS_NO_RFC7540_PRIORITIES = 1 from a server that uses RFC 9218 signals."""
    assert h2.server_settings.get(Setting.NO_RFC7540_PRIORITIES) == 1


def test_responses_go_out_in_urgency_order(connect: Connect) -> None:
    """§4.1, §10: the lowest urgency first, whatever the order of the requests."""
    client = connect(settings=WIDE_STREAM_WINDOWS)
    low, high, middle = request_all(client, ["u=5", "u=1", "u=3"])
    assert runs(data_order(client, [low, high, middle], [low, high, middle])) == [
        high,
        middle,
        low,
    ]


def test_without_signals_responses_go_out_one_after_another_in_stream_order(
    connect: Connect,
) -> None:
    """§4: no signal is u=3, not incremental: each response whole, in request order."""
    client = connect(settings=WIDE_STREAM_WINDOWS)
    streams = request_all(client, [None, None, None])
    assert runs(data_order(client, streams, streams)) == streams


def test_incremental_responses_of_one_urgency_share_the_connection(connect: Connect) -> None:
    """§4.2, §10: incremental responses are interleaved frame by frame, none waits for another."""
    client = connect(settings=WIDE_STREAM_WINDOWS)
    streams = request_all(client, ["u=3, i", "u=3, i", "u=3, i"])
    order = data_order(client, streams, streams)
    assert set(order[:3]) == set(streams), order
    # Byte-fair round robin: when the first response ends, each is within a frame or two of it.
    received = dict.fromkeys(streams, 0)
    for frame in client.received:
        if isinstance(frame, DataFrame) and frame.stream_id in received:
            received[frame.stream_id] += len(frame.data)
            if "END_STREAM" in frame.flags:
                break
    assert min(received.values()) >= BODY - 2 * 16_384, f"{received} {order}"


def test_priority_update_reorders_a_response_mid_way(connect: Connect) -> None:
    """§7: PRIORITY_UPDATE moves a waiting response ahead of the one being sent."""
    client = connect(settings=WIDE_STREAM_WINDOWS)
    first, second = request_all(client, [None, None])
    # The first response takes the whole initial connection window; the second waits.
    while first not in client.streams or len(client.streams[first].data) < 65_535:
        client.wait_for(lambda f: isinstance(f, DataFrame), "DATA of the first response")
    assert second not in client.streams or not client.streams[second].data
    client.send_priority_update(second, b"u=0")
    client.send_window_update(0, 65_535)
    order = data_order(client, [first, second], [first, second])
    assert runs(order) == [second, first]


def test_a_stream_out_of_window_does_not_hold_up_a_less_urgent_one(connect: Connect) -> None:
    """§10 (work conserving): the urgent response waits for its own window; others flow."""
    client = connect(settings={Setting.INITIAL_WINDOW_SIZE: 16_384})
    urgent, relaxed = request_all(client, ["u=0", "u=6"])
    client.send_window_update(relaxed, BODY)
    order = data_order(client, [urgent, relaxed], [relaxed])
    assert order[0] == urgent  # its window's worth first
    assert not client.streams[urgent].ended
    assert len(client.streams[urgent].data) == 16_384
    client.send_window_update(urgent, BODY)
    data_order(client, [urgent], [urgent])
    assert len(client.streams[urgent].data) == BODY


def test_priority_update_for_a_stream_not_yet_open_applies_when_it_opens(
    connect: Connect,
) -> None:
    """§7.1: an update may come first; it overrides the request's own field."""
    client = connect(settings=WIDE_STREAM_WINDOWS)
    client.send_priority_update(3, b"u=0")  # stream 3 is the second one opened below
    first, second = request_all(client, ["u=1", "u=7"])
    assert runs(data_order(client, [first, second], [first, second])) == [second, first]


def test_a_malformed_priority_field_is_ignored(h2: RawClient) -> None:
    """§4: a field that does not parse is ignored, and the request served as usual."""
    response = h2.get("/", headers=[("priority", "u=?!, i=9")])
    assert response.status == 200


def test_a_malformed_priority_update_value_is_ignored(h2: RawClient) -> None:
    stream_id = h2.request("/")
    h2.send_priority_update(stream_id, b"u=\x01")
    assert h2.read_response(stream_id).status == 200


@pytest.mark.parametrize(
    ("stream_id", "payload", "error"),
    [
        pytest.param(1, struct.pack(">I", 1) + b"u=1", ErrorCode.PROTOCOL_ERROR, id="on-stream"),
        pytest.param(0, struct.pack(">I", 0) + b"u=1", ErrorCode.PROTOCOL_ERROR, id="for-stream-0"),
        pytest.param(0, b"\x00\x01", ErrorCode.FRAME_SIZE_ERROR, id="too-short"),
    ],
)
def test_malformed_priority_update_is_a_connection_error(
    h2: RawClient, stream_id: int, payload: bytes, error: int
) -> None:
    """§7.1: PRIORITY_UPDATE on a request stream, or naming stream 0, is a PROTOCOL_ERROR;
    RFC 9113 §4.2: a payload too short for its fields is a FRAME_SIZE_ERROR."""
    h2.send_raw(raw_frame(FrameType.PRIORITY_UPDATE, 0, stream_id, payload))
    h2.expect_connection_error(error)
