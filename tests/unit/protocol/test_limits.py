"""Flood budgets in the core: the time is passed in, so a test decides what 'one second' holds."""

from __future__ import annotations

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from osmium.protocol.events import ConnectionFailed, Request
from osmium.protocol.limits import Limits, RateBudget
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
