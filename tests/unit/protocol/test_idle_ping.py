"""Idle PINGs in the core: a peer silent for idle_ping gets a PING, one that leaves it unanswered
for ping_timeout is dead; the ACK's round trip is kept (`ping_rtt`). Time is passed in."""

from __future__ import annotations

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, PingFrame

from osmium.protocol.events import IdleTimedOut, PingAcknowledged, PingTimedOut
from osmium.protocol.h2 import LIVENESS_PING, ServerConnection
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from tests.conformance.frames import PREFACE, Flag, FrameType, raw_frame
from tests.support.h2_peer import GET, Peer, frames_in

IDLE_PING = 5.0
PING_TIMEOUT = 2.0
LIMITS = Limits(idle_ping=IDLE_PING, ping_timeout=PING_TIMEOUT)


def pings_sent(server: ServerConnection) -> list[bytes]:
    """The opaque data of the PINGs (not ACKs) the server has queued since last asked."""
    frames = frames_in(server.data_to_send())
    return [
        bytes(f.opaque_data) for f in frames if isinstance(f, PingFrame) and "ACK" not in f.flags
    ]


def ack(payload: bytes) -> bytes:
    return raw_frame(FrameType.PING, Flag.ACK, 0, payload)


def connected(limits: Limits = LIMITS, keep_alive_timeout: float | None = None) -> Peer:
    """A connection whose handshake completed at 0.0, with nothing queued."""
    peer = Peer(limits=limits, keep_alive_timeout=keep_alive_timeout)
    peer.server.data_to_send()
    assert peer.server.last_received_at == 0.0
    return peer


def test_silence_for_idle_ping_sends_a_ping() -> None:
    server = connected().server
    assert server.next_deadline() == IDLE_PING
    assert server.handle_timeout(IDLE_PING - 0.1) == []
    assert pings_sent(server) == []
    assert server.handle_timeout(IDLE_PING) == []
    assert pings_sent(server) == [LIVENESS_PING]
    assert server.next_deadline() == IDLE_PING + PING_TIMEOUT


def test_the_ack_sets_the_round_trip_and_the_next_idle_deadline() -> None:
    server = connected().server
    server.handle_timeout(IDLE_PING)
    assert server.ping_rtt is None
    events = server.receive(ack(LIVENESS_PING), now=IDLE_PING + 0.25)
    assert events == [PingAcknowledged(0.25)]
    assert server.ping_rtt == 0.25
    assert server.next_deadline() == IDLE_PING + 0.25 + IDLE_PING
    assert not server.closed


def test_no_ack_within_the_ping_timeout_means_the_peer_is_dead() -> None:
    server = connected().server
    server.handle_timeout(IDLE_PING)
    pings_sent(server)
    assert server.handle_timeout(IDLE_PING + PING_TIMEOUT - 0.1) == []
    assert server.handle_timeout(IDLE_PING + PING_TIMEOUT) == [PingTimedOut(PING_TIMEOUT)]
    goaways = [f for f in frames_in(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaways] == [ErrorCodes.NO_ERROR]
    assert server.closed and server.next_deadline() is None


def test_other_frames_do_not_stand_in_for_the_ack() -> None:
    """A peer that keeps sending but never answers our PING is dead all the same."""
    peer = connected()
    peer.server.handle_timeout(IDLE_PING)
    peer.client.ping(b"client!!")
    peer.server.receive(peer.client.data_to_send(), now=IDLE_PING + 1.0)
    assert peer.server.handle_timeout(IDLE_PING + PING_TIMEOUT) == [PingTimedOut(PING_TIMEOUT)]


def test_no_ping_while_frames_keep_coming() -> None:
    peer = connected()
    for second in range(1, 20):
        peer.client.increment_flow_control_window(65_536)
        peer.server.receive(peer.client.data_to_send(), now=float(second))
        assert peer.server.handle_timeout(float(second)) == []
    assert pings_sent(peer.server) == []
    assert peer.server.last_received_at == 19.0
    assert peer.server.next_deadline() == 19.0 + IDLE_PING


def test_a_deadline_that_moved_later_is_found_when_the_old_one_passes() -> None:
    """The transport's timer stays at the first deadline: firing then finds nothing due, and
    `next_deadline` gives the moved one."""
    peer = connected()
    announced, peer.server.new_deadline = peer.server.new_deadline, None
    assert announced == IDLE_PING
    peer.client.ping(b"client!!")
    peer.server.receive(peer.client.data_to_send(), now=3.0)
    assert peer.server.new_deadline is None  # moved later: no new timer asked for
    assert peer.server.handle_timeout(IDLE_PING) == []
    assert pings_sent(peer.server) == []  # only the ACK of the client's PING
    assert peer.server.next_deadline() == 3.0 + IDLE_PING


def test_idle_pings_go_out_with_streams_open_too() -> None:
    peer = connected()
    peer.request(GET)
    peer.server.receive(peer.client.data_to_send(), now=1.0)
    peer.server.data_to_send()
    assert peer.server.handle_timeout(1.0 + IDLE_PING) == []
    assert pings_sent(peer.server) == [LIVENESS_PING]


def test_a_ping_answered_keeps_the_keep_alive_deadline() -> None:
    """An answering peer without streams is still closed at the keep-alive timeout."""
    peer = connected(keep_alive_timeout=12.0)
    peer.server.idle(0.0)
    now = IDLE_PING
    while now < 12.0:
        assert peer.server.handle_timeout(now) == []
        assert pings_sent(peer.server) == [LIVENESS_PING]
        assert peer.server.receive(ack(LIVENESS_PING), now=now + 0.5) == [PingAcknowledged(0.5)]
        now += 0.5 + IDLE_PING
    assert peer.server.next_deadline() == 12.0
    assert peer.server.handle_timeout(12.0) == [IdleTimedOut()]


def test_idle_ping_zero_is_off() -> None:
    server = connected(Limits(idle_ping=0)).server
    assert server.next_deadline() is None
    assert server.handle_timeout(1000.0) == []
    assert pings_sent(server) == []


def test_no_idle_ping_before_the_handshake() -> None:
    server = ServerConnection(ProtocolSettings(), limits=Limits(idle_ping=1.0, handshake_timeout=9))
    server.start(now=0.0)
    server.data_to_send()
    server.receive(PREFACE, now=0.5)  # the SETTINGS that ends the handshake has not come
    assert server.next_deadline() == 9.0
    assert pings_sent(server) == []


def test_no_idle_ping_once_the_connection_is_going_away() -> None:
    server = connected().server
    server.start_graceful_close(now=1.0)
    server.finish_graceful_close()
    server.data_to_send()
    assert server.next_deadline() is None
    assert server.handle_timeout(100.0) == []
    assert pings_sent(server) == []


def test_an_operator_ping_goes_out_at_once_and_one_at_a_time() -> None:
    server = connected().server
    assert server.ping(1.0)
    assert not server.ping(1.1)  # one unanswered already
    assert pings_sent(server) == [LIVENESS_PING]
    assert server.new_deadline == 1.0 + PING_TIMEOUT
    assert server.receive(ack(LIVENESS_PING), now=1.5) == [PingAcknowledged(0.5)]
    assert server.ping_rtt == 0.5
    assert server.ping(2.0)


def test_an_unanswered_operator_ping_ends_the_connection_too() -> None:
    server = connected().server
    server.ping(1.0)
    assert server.handle_timeout(1.0 + PING_TIMEOUT) == [PingTimedOut(PING_TIMEOUT)]
    assert server.closed
    assert not server.ping(5.0)


def test_an_ack_nobody_waits_for_changes_nothing() -> None:
    server = connected().server
    assert server.receive(ack(LIVENESS_PING), now=1.0) == []
    assert server.ping_rtt is None
    server.ping(2.0)
    assert server.receive(ack(b"otherack"), now=2.1) == []
    assert server.ping_rtt is None
