"""Flood budgets in the core: the time is passed in, so a test decides what 'one second' holds."""

from __future__ import annotations

import struct

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame

from osmium.protocol.events import Body, ConnectionFailed, EndBody, Request
from osmium.protocol.h2 import RECEIVE_SLICE, ServerConnection
from osmium.protocol.h2_internals import TINY_LATE_DATA
from osmium.protocol.limits import Limits, RateBudget
from osmium.protocol.settings import ProtocolSettings
from tests.conformance.frames import PREFACE, Flag, FrameType, raw_frame
from tests.support.h2_peer import GET, POST, Peer, frames_in

TIGHT = Limits(
    max_resets_per_second=5, max_control_frames_per_second=5, max_ignored_frames_per_second=5
)
CONTROL_FRAME_BUDGET = ConnectionFailed(
    ErrorCodes.ENHANCE_YOUR_CALM, "over the control frame budget"
)
IGNORED_FRAME_BUDGET = ConnectionFailed(
    ErrorCodes.ENHANCE_YOUR_CALM, "over the ignored frame budget"
)


def tight_peer() -> Peer:
    return Peer(limits=TIGHT)


def goaway_codes(data: bytes) -> list[int]:
    return [f.error_code for f in frames_in(data) if isinstance(f, GoAwayFrame)]


def test_budget_refills_each_second() -> None:
    budget = RateBudget("test", 2)
    assert [budget.spend(10.0), budget.spend(10.5), budget.spend(10.9)] == [True, True, False]
    assert budget.spend(11.0)


def test_ping_flood_gets_enhance_your_calm() -> None:
    peer = tight_peer()
    for index in range(6):
        peer.client.ping(b"%08d" % index)
    events = peer.server.receive(peer.client.data_to_send(), now=100.0)
    assert events[-1] == ConnectionFailed(
        ErrorCodes.ENHANCE_YOUR_CALM, "over the control frame budget"
    )
    assert goaway_codes(peer.server.data_to_send())[-1] == ErrorCodes.ENHANCE_YOUR_CALM


def test_pings_spread_over_seconds_are_fine() -> None:
    peer = tight_peer()
    for second in range(4):
        for index in range(5):
            peer.client.ping(b"%08d" % index)
        assert peer.server.receive(peer.client.data_to_send(), now=second + 1.0) == []
    assert not peer.server.closed


def test_rapid_reset_gets_enhance_your_calm_and_normal_streams_do_not() -> None:
    peer = tight_peer()
    for _ in range(5):
        stream_id = peer.request(GET)
        peer.client.reset_stream(stream_id)
    events = peer.server.receive(peer.client.data_to_send(), now=5.0)
    assert not any(isinstance(e, ConnectionFailed) for e in events)
    stream_id = peer.request(GET)
    peer.client.reset_stream(stream_id)
    events = peer.server.receive(peer.client.data_to_send(), now=5.1)
    assert isinstance(events[-1], ConnectionFailed)
    assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_requests_and_their_final_empty_data_spend_nothing() -> None:
    peer = tight_peer()
    for _ in range(20):
        stream_id = peer.request(POST, end=False)
        peer.client.send_data(stream_id, b"", end_stream=True)
    events = peer.server.receive(peer.client.data_to_send(), now=1.0)
    assert sum(isinstance(e, Request) for e in events) == 20
    assert not peer.server.closed


def test_resets_the_peer_provokes_spend_the_reset_budget() -> None:
    """CVE-2019-9514: streams over MAX_CONCURRENT_STREAMS each cost us a RST_STREAM."""
    peer = Peer(
        ProtocolSettings(max_concurrent_streams=1), limits=TIGHT, heed_server_settings=False
    )
    peer.request(GET)
    for _ in range(5):
        peer.request(GET)  # refused: REFUSED_STREAM each
    events = peer.server.receive(peer.client.data_to_send(), now=1.0)
    assert not any(isinstance(e, ConnectionFailed) for e in events)
    peer.request(GET)
    events = peer.server.receive(peer.client.data_to_send(), now=1.5)
    assert events == [
        ConnectionFailed(ErrorCodes.ENHANCE_YOUR_CALM, "over the stream reset budget")
    ]
    assert goaway_codes(peer.server.data_to_send())[-1] == ErrorCodes.ENHANCE_YOUR_CALM


def test_frames_on_a_stream_the_peer_reset_spend_the_reset_budget() -> None:
    """Each DATA on a stream the peer itself reset is answered by RST_STREAM(STREAM_CLOSED)."""
    peer = tight_peer()
    stream_id = peer.request(POST, end=False)
    peer.client.reset_stream(stream_id)
    peer.client_to_server()
    peer.server.data_to_send()
    data = raw_frame(FrameType.DATA, 0, stream_id, b"x")
    replies = peer.server.receive(data * 4, now=2.0)
    assert replies == []
    assert [type(f) for f in frames_in(peer.server.data_to_send())] == [RstStreamFrame] * 4
    events = peer.server.receive(data * 2, now=2.5)
    assert isinstance(events[-1], ConnectionFailed)
    assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_tiny_window_updates_are_control_frames_and_large_ones_are_not() -> None:
    """CVE-2019-9511 data dribble: a window opened a few bytes at a time costs a DATA frame each."""
    peer = tight_peer()
    for _ in range(50):
        peer.client.increment_flow_control_window(65_536)
    assert peer.server.receive(peer.client.data_to_send(), now=1.0) == []
    assert not peer.server.closed
    for _ in range(6):
        peer.client.increment_flow_control_window(1)
    events = peer.server.receive(peer.client.data_to_send(), now=1.2)
    assert events[-1] == ConnectionFailed(
        ErrorCodes.ENHANCE_YOUR_CALM, "over the control frame budget"
    )


def test_priority_churn_gets_enhance_your_calm() -> None:
    """CVE-2019-9513: PRIORITY frames re-parenting streams are control frames."""
    peer = tight_peer()
    priority = b"".join(
        raw_frame(FrameType.PRIORITY, 0, stream_id, struct.pack(">IB", stream_id + 2, 15))
        for stream_id in range(1, 13, 2)
    )
    events = peer.server.receive(priority, now=3.0)
    assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_header_block_over_its_limit_ends_the_connection_before_decoding() -> None:
    """CONTINUATION frames add up to one header block; over max_header_block_size: calm down."""
    peer = Peer(limits=Limits(max_header_block_size=1000))
    assert not peer.server.header_block_pending
    block = peer.client.encoder.encode(GET)
    filler = b"\x00" * 600
    start = raw_frame(FrameType.HEADERS, 0, 1, block)
    events = peer.server.receive(start + raw_frame(FrameType.CONTINUATION, 0, 1, filler), now=1.0)
    assert events == [] and peer.server.header_block_pending
    events = peer.server.receive(raw_frame(FrameType.CONTINUATION, 0, 1, filler), now=1.1)
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)
    assert events[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert "header block over 1000 bytes" in events[0].reason


def test_header_blocks_under_the_limit_are_served() -> None:
    peer = Peer(limits=Limits(max_header_block_size=1000))
    block = peer.client.encoder.encode(GET)
    half = len(block) // 2
    flags = 0x1  # END_STREAM; END_HEADERS comes with the CONTINUATION
    data = raw_frame(FrameType.HEADERS, flags, 1, block[:half])
    data += raw_frame(FrameType.CONTINUATION, 0x4, 1, block[half:])
    events = peer.server.receive(data, now=1.0)
    assert isinstance(events[0], Request) and not peer.server.header_block_pending


def test_preface_received_only_after_the_client_settings() -> None:
    server = ServerConnection(ProtocolSettings())
    server.start()
    server.receive(PREFACE)
    assert not server.preface_received
    server.receive(raw_frame(FrameType.SETTINGS, 0, 0, b""))
    assert server.preface_received


def test_new_limits_are_checked() -> None:
    problems = Limits(send_timeout=0, max_connection_output=100, header_timeout=-1).problems()
    assert "send_timeout must be positive" in problems
    assert "header_timeout must be positive" in problems
    assert any("max_connection_output must be at least" in p for p in problems)


# -- frames that are read and ignored --------------------------------------------------------


def stream_reset_by_server(peer: Peer) -> int:
    """A POST answered without reading its body: the server ends it with RST_STREAM(NO_ERROR)."""
    stream_id = peer.request(POST, end=False)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(":status", "200")], end_stream=True)
    peer.server.reset(stream_id, ErrorCodes.NO_ERROR)
    peer.server.data_to_send()
    return stream_id


def stream_ended(peer: Peer) -> int:
    """A GET answered in full: closed by END_STREAM both ways."""
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(":status", "204")], end_stream=True)
    peer.server.data_to_send()
    return stream_id


#: Frames that change nothing on a closed stream, by name: (stream_id) -> frame.
LATE_FRAMES = {
    "empty DATA": lambda stream_id: raw_frame(FrameType.DATA, 0, stream_id, b""),
    "small DATA": lambda stream_id: raw_frame(FrameType.DATA, 0, stream_id, b"x" * 100),
    "WINDOW_UPDATE": lambda stream_id: raw_frame(
        FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">I", 1 << 20)
    ),
    "RST_STREAM": lambda stream_id: raw_frame(
        FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", ErrorCodes.CANCEL)
    ),
}


@pytest.mark.parametrize("kind", LATE_FRAMES)
def test_frames_after_our_reset_are_ignored_and_spend_the_ignored_budget(kind: str) -> None:
    """§5.1: frames on a stream we reset are ignored (no RST_STREAM in reply), each one counted."""
    peer = tight_peer()
    stream_id = stream_reset_by_server(peer)
    frame = LATE_FRAMES[kind](stream_id)
    assert peer.server.receive(frame * 5, now=1.0) == []
    assert peer.server.data_to_send() == b""
    assert peer.server.receive(frame, now=1.5) == [IGNORED_FRAME_BUDGET]
    assert goaway_codes(peer.server.data_to_send()) == [ErrorCodes.ENHANCE_YOUR_CALM]


@pytest.mark.parametrize("kind", ["WINDOW_UPDATE", "RST_STREAM"])
def test_late_frames_on_a_stream_closed_by_end_stream_spend_the_ignored_budget(kind: str) -> None:
    """§5.1: a WINDOW_UPDATE or RST_STREAM just after END_STREAM is ignored, and counted."""
    peer = tight_peer()
    stream_id = stream_ended(peer)
    frame = LATE_FRAMES[kind](stream_id)
    assert peer.server.receive(frame * 5, now=1.0) == []
    assert peer.server.receive(frame, now=1.5) == [IGNORED_FRAME_BUDGET]


def test_ignored_frames_spread_over_seconds_are_fine() -> None:
    """A client's few frames in flight when a stream ends never reach the budget."""
    peer = tight_peer()
    for second in range(4):
        stream_id = stream_reset_by_server(peer)
        late = b"".join(make(stream_id) for make in LATE_FRAMES.values())
        assert peer.server.receive(late, now=second + 1.0) == []
    assert not peer.server.closed


def test_an_upload_in_flight_after_our_reset_spends_nothing() -> None:
    """DATA frames of TINY_LATE_DATA bytes or more cost the peer what an upload costs: an upload
    still in flight when we reset its stream is not a flood."""
    peer = tight_peer()
    stream_id = stream_reset_by_server(peer)
    chunk = raw_frame(FrameType.DATA, 0, stream_id, b"x" * TINY_LATE_DATA)
    assert peer.server.receive(chunk * 50, now=1.0) == []
    assert not peer.server.closed


UNKNOWN_FRAME_TYPE = 0xBB
ALTSVC_FRAME_TYPE = 0xA  # RFC 7838: a frame only servers send
IGNORED_TYPES = {
    "unknown type": raw_frame(UNKNOWN_FRAME_TYPE, 0, 0, b""),
    "unknown type on a stream": raw_frame(UNKNOWN_FRAME_TYPE, 0, 1, b"x" * 8),
    "ALTSVC": raw_frame(ALTSVC_FRAME_TYPE, 0, 0, b"\0\0"),
}


@pytest.mark.parametrize("frame", IGNORED_TYPES.values(), ids=IGNORED_TYPES.keys())
def test_frames_of_ignored_types_spend_the_ignored_budget(frame: bytes) -> None:
    peer = tight_peer()
    assert peer.server.receive(frame * 5, now=1.0) == []
    assert peer.server.receive(frame, now=1.5) == [IGNORED_FRAME_BUDGET]


CONTROL_FRAMES = {
    "PING ACK": raw_frame(FrameType.PING, Flag.ACK, 0, bytes(8)),
    "SETTINGS ACK": raw_frame(FrameType.SETTINGS, Flag.ACK, 0, b""),
}


@pytest.mark.parametrize("frame", CONTROL_FRAMES.values(), ids=CONTROL_FRAMES.keys())
def test_unsolicited_acks_are_control_frames(frame: bytes) -> None:
    peer = tight_peer()
    assert peer.server.receive(frame * 5, now=1.0) == []
    assert peer.server.receive(frame, now=1.5) == [CONTROL_FRAME_BUDGET]


def test_goaway_frames_are_control_frames() -> None:
    peer = tight_peer()
    goaway = raw_frame(FrameType.GOAWAY, 0, 0, struct.pack(">II", 0, ErrorCodes.NO_ERROR))
    assert len(peer.server.receive(goaway * 5, now=1.0)) == 5
    assert peer.server.receive(goaway, now=1.5) == [CONTROL_FRAME_BUDGET]


def test_a_flood_in_one_read_is_cut_off_within_a_slice() -> None:
    """Budgets are checked between slices of a read: the frames after the slice that went over
    the budget are never parsed (the PING at the end of the read gets no ACK)."""
    peer = Peer()
    stream_id = stream_reset_by_server(peer)
    flood = raw_frame(FrameType.DATA, 0, stream_id, b"") * 100_000
    events = peer.server.receive(flood + raw_frame(FrameType.PING, 0, 0, bytes(8)), now=1.0)
    assert events == [IGNORED_FRAME_BUDGET]
    assert not any(isinstance(f, PingFrame) for f in frames_in(peer.server.data_to_send()))


def test_a_read_larger_than_a_slice_means_what_it_says() -> None:
    """A read split into slices yields the same events as frames arriving one by one."""
    peer = Peer()
    body = bytes(range(256)) * (3 * RECEIVE_SLICE // 256)
    stream_id = peer.request(POST, end=False)
    frame_size = peer.client.max_outbound_frame_size
    for start in range(0, len(body), frame_size):
        peer.client.send_data(stream_id, body[start : start + frame_size])
    peer.client.end_stream(stream_id)
    data = peer.client.data_to_send()
    assert len(data) > 2 * RECEIVE_SLICE
    events = peer.server.receive(data, now=1.0)
    assert isinstance(events[0], Request)
    assert b"".join(e.data for e in events if isinstance(e, Body)) == body
    assert events[-1] == EndBody(stream_id, [])
