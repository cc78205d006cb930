"""The core's send side: bodies queued per stream, framed in RFC 9218 order within the windows."""

from __future__ import annotations

import struct

import h2.events
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from osmium.protocol.events import ConnectionFailed
from osmium.protocol.h2 import STREAM_QUEUE_LIMIT
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from tests.conformance.frames import FrameType, raw_frame
from tests.support.h2_peer import GET, POST, Peer, frames_in

OK = [(b":status", b"200")]


def open_streams(peer: Peer, priorities: list[str | None]) -> list[int]:
    """Requests with these `priority` fields (None: no field), read by the core in one go."""
    streams = []
    for priority in priorities:
        extra = [("priority", priority)] if priority is not None else []
        streams.append(peer.request([*GET, *extra]))
    peer.client_to_server()
    return streams


def answer(peer: Peer, streams: list[int], size: int) -> None:
    for stream_id in streams:
        peer.server.send_headers(stream_id, OK, end_stream=False)
        peer.server.send_data(stream_id, b"x" * size, end_stream=True)


def data_streams(data: bytes) -> list[int]:
    return [f.stream_id for f in frames_in(data) if isinstance(f, DataFrame)]


def stream_frames(data: bytes) -> list:
    """HEADERS, DATA and RST_STREAM frames, leaving out connection-level ones (SETTINGS ACK...)."""
    return [f for f in frames_in(data) if isinstance(f, (HeadersFrame, DataFrame, RstStreamFrame))]


def priority_update(stream_id: int, value: bytes) -> bytes:
    return raw_frame(FrameType.PRIORITY_UPDATE, 0, 0, struct.pack(">I", stream_id) + value)


def test_bodies_go_out_by_urgency_then_stream_order() -> None:
    peer = Peer(initial_window_size=1 << 20)
    streams = open_streams(peer, ["u=5", None, "u=1", None])
    answer(peer, streams, 16_384)
    low, first_default, high, second_default = streams
    assert data_streams(peer.server.data_to_send()) == [high, first_default, second_default, low]


def test_incremental_bodies_interleave_frame_by_frame() -> None:
    peer = Peer(initial_window_size=1 << 20)
    peer.client.increment_flow_control_window(1 << 20)
    peer.client_to_server()
    streams = open_streams(peer, ["u=2, i", "u=2, i"])
    answer(peer, streams, 3 * 16_384)
    assert data_streams(peer.server.data_to_send()) == streams * 3


def test_max_bytes_caps_the_body_framed_and_the_rest_waits() -> None:
    peer = Peer(initial_window_size=1 << 20)
    [stream_id] = open_streams(peer, [None])
    answer(peer, [stream_id], 40_000)
    first = [f for f in frames_in(peer.server.data_to_send(20_000)) if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in first) == 20_000
    assert peer.server.queued(stream_id) == 20_000
    rest = [f for f in frames_in(peer.server.data_to_send()) if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in rest) == 20_000 and "END_STREAM" in rest[-1].flags


def test_a_full_queue_asks_the_sender_to_wait() -> None:
    peer = Peer()
    [stream_id] = open_streams(peer, [None])
    peer.server.send_headers(stream_id, OK, end_stream=False)
    assert peer.server.send_data(stream_id, b"x" * STREAM_QUEUE_LIMIT, end_stream=False)
    assert not peer.server.send_data(stream_id, b"x", end_stream=False)
    assert not peer.server.has_room(stream_id)
    peer.server.data_to_send()  # the initial windows take 65,535 bytes of it
    assert peer.server.has_room(stream_id)


def test_response_priority_field_overrides_what_it_names() -> None:
    """RFC 9218 §8: the app's `priority` response field wins over the client's for `u`; the
    client's `i` stays."""
    peer = Peer(initial_window_size=1 << 20)
    peer.client.increment_flow_control_window(1 << 20)
    peer.client_to_server()
    first, second = open_streams(peer, ["u=1, i", "u=1, i"])
    peer.server.send_headers(first, [*OK, (b"priority", b"u=6")], end_stream=False)
    peer.server.send_data(first, b"x" * 32_768, end_stream=True)
    answer(peer, [second], 32_768)
    assert data_streams(peer.server.data_to_send()) == [second, second, first, first]


def test_priority_update_reorders_queued_bodies() -> None:
    peer = Peer(initial_window_size=1 << 20)
    first, second = open_streams(peer, [None, None])
    answer(peer, [first, second], 16_384)
    assert peer.server.receive(priority_update(second, b"u=0")) == []
    assert data_streams(peer.server.data_to_send()) == [second, first]


def test_priority_update_before_the_request_wins_over_its_field() -> None:
    """RFC 9218 §7.1: remembered for a stream not open yet; read in the same batch as it too."""
    peer = Peer(initial_window_size=1 << 20)
    first = peer.client.get_next_available_stream_id()
    update = priority_update(first + 2, b"u=0")
    peer.client.send_headers(first, [*GET, ("priority", "u=1")], end_stream=True)
    peer.client.send_headers(first + 2, [*GET, ("priority", "u=7")], end_stream=True)
    peer.server.receive(update + peer.client.data_to_send())
    answer(peer, [first, first + 2], 16_384)
    assert data_streams(peer.server.data_to_send()) == [first + 2, first]


def test_priority_updates_for_idle_streams_are_bounded() -> None:
    peer = Peer(ProtocolSettings(max_concurrent_streams=4))
    for stream_id in range(1001, 1101, 2):
        assert peer.server.receive(priority_update(stream_id, b"u=0")) == []
    assert len(peer.server._early_priorities) == 4


def test_priority_updates_spend_the_control_frame_budget() -> None:
    peer = Peer(limits=Limits(max_control_frames_per_second=5))
    events = peer.server.receive(priority_update(1001, b"u=0") * 6, now=1.0)
    assert events == [
        ConnectionFailed(ErrorCodes.ENHANCE_YOUR_CALM, "over the control frame budget")
    ]


def test_trailers_wait_behind_the_queued_body() -> None:
    peer = Peer(initial_window_size=10)
    [stream_id] = open_streams(peer, [None])
    peer.server.send_headers(stream_id, OK, end_stream=False)
    peer.server.send_data(stream_id, b"x" * 25, end_stream=False)
    peer.server.send_headers(stream_id, [(b"x-sum", b"1")], end_stream=True)
    kinds = [type(f) for f in stream_frames(peer.server.data_to_send())]
    assert kinds == [HeadersFrame, DataFrame]  # the window holds the rest; trailers wait
    peer.client.increment_flow_control_window(100, stream_id)
    peer.client_to_server()
    kinds = [type(f) for f in stream_frames(peer.server.data_to_send())]
    assert kinds == [DataFrame, HeadersFrame]  # the rest of the body, then the trailers


def test_a_reset_after_a_partial_body_goes_out_after_that_body() -> None:
    """The app failed mid-response: what it sent arrives, then RST_STREAM(INTERNAL_ERROR)."""
    peer = Peer()
    [stream_id] = open_streams(peer, [None])
    peer.server.send_headers(stream_id, OK, end_stream=False)
    peer.server.send_data(stream_id, b"partial", end_stream=False)
    peer.server.reset_when_sent(stream_id, ErrorCodes.INTERNAL_ERROR)
    frames = stream_frames(peer.server.data_to_send())
    assert [type(f) for f in frames] == [HeadersFrame, DataFrame, RstStreamFrame]
    assert "END_STREAM" not in frames[1].flags
    assert frames[2].error_code == ErrorCodes.INTERNAL_ERROR


def test_unread_request_is_reset_once_the_whole_response_is_out() -> None:
    """RFC 9113 §8.1: answer in full (END_STREAM), then RST_STREAM(NO_ERROR) for the rest."""
    peer = Peer()
    stream_id = peer.request(POST, b"x" * 100, end=False)
    peer.client_to_server()
    answer(peer, [stream_id], 10)
    peer.server.reset_when_sent(stream_id, ErrorCodes.NO_ERROR)
    frames = frames_in(peer.server.data_to_send())
    assert [type(f) for f in frames][-2:] == [DataFrame, RstStreamFrame]
    assert "END_STREAM" in frames[-2].flags and frames[-1].error_code == ErrorCodes.NO_ERROR


def test_a_client_reset_drops_the_queued_body() -> None:
    peer = Peer(initial_window_size=0)
    [stream_id] = open_streams(peer, [None])
    answer(peer, [stream_id], 1000)
    peer.server_to_client()
    peer.client.reset_stream(stream_id, ErrorCodes.CANCEL)
    peer.client_to_server()
    assert peer.server.queued(stream_id) == 0 and peer.server.queued_size == 0
    events = peer.server_to_client()
    assert not [e for e in events if isinstance(e, h2.events.DataReceived)]


def test_a_body_over_its_content_length_drops_the_queued_response() -> None:
    """§8.1.1: the request is malformed, its stream reset (PROTOCOL_ERROR): the response
    already queued there goes too, on the short path as on h2's."""
    for cut_short_path in (False, True):
        peer = Peer(initial_window_size=0)
        if cut_short_path:
            connection = peer.server._h2
            connection._receive_short_path = lambda data: ([], memoryview(data))  # type: ignore[method-assign]
        stream_id = peer.request([*POST, ("content-length", "10")], end=False)
        peer.client_to_server()
        answer(peer, [stream_id], 1000)
        peer.server_to_client()
        assert peer.server.queued_size == 1000
        peer.client.send_data(stream_id, b"x" * 100)
        [reset] = peer.client_to_server()
        assert (reset.stream_id, reset.error_code) == (stream_id, ErrorCodes.PROTOCOL_ERROR)
        assert peer.server.queued(stream_id) == 0 and peer.server.queued_size == 0


def test_a_small_whole_body_is_framed_at_once_when_nothing_waits() -> None:
    """write_now (the transport has nothing buffered): one DATA frame with END_STREAM, no queue."""
    peer = Peer()
    [stream_id] = open_streams(peer, [None])
    peer.server.send_headers(stream_id, OK, end_stream=False)
    assert peer.server.send_data(stream_id, b"hello", end_stream=True, write_now=True)
    assert peer.server.queued(stream_id) == 0 and not peer.server.output_ready
    [_, data] = stream_frames(peer.server.data_to_send())
    assert (data.data, "END_STREAM" in data.flags) == (b"hello", True)


def test_a_small_body_still_waits_its_turn_behind_queued_ones() -> None:
    """Another stream's body is queued: the scheduler keeps RFC 9218 order, write_now or not."""
    peer = Peer(initial_window_size=1 << 20)
    low, high = open_streams(peer, ["u=5", "u=1"])
    for stream_id in (low, high):
        peer.server.send_headers(stream_id, OK, end_stream=False)
    peer.server.send_data(low, b"x" * 100, end_stream=True)
    peer.server.send_data(high, b"y" * 100, end_stream=True, write_now=True)
    assert data_streams(peer.server.data_to_send()) == [high, low]


def test_a_body_over_the_window_is_queued_even_when_nothing_waits() -> None:
    peer = Peer(initial_window_size=10)
    [stream_id] = open_streams(peer, [None])
    peer.server.send_headers(stream_id, OK, end_stream=False)
    peer.server.send_data(stream_id, b"x" * 11, end_stream=True, write_now=True)
    assert peer.server.queued(stream_id) == 11
    assert [len(f.data) for f in stream_frames(peer.server.data_to_send())[1:]] == [10]
    assert peer.server.queued(stream_id) == 1  # until the client's WINDOW_UPDATE
