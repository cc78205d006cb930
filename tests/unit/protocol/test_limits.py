"""Flood budgets in the core: the time is passed in, so a test decides what 'one second' holds."""

from __future__ import annotations

import struct

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from osmium.protocol.events import ConnectionFailed, Request
from osmium.protocol.h2 import ServerConnection
from osmium.protocol.limits import Limits, RateBudget
from osmium.protocol.settings import ProtocolSettings
from tests.conformance.frames import PREFACE, FrameType, raw_frame
from tests.unit.protocol.test_h2 import GET, POST, Peer, frames_in

TIGHT = Limits(max_resets_per_second=5, max_control_frames_per_second=5)


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
    assert peer.server.receive(peer.client.data_to_send(), now=1.0) != []
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
