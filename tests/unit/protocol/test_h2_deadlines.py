"""The core's deadlines: it says when it next needs the time (`next_deadline`) and what a passed
deadline means (`handle_timeout`); the transport only arms one timer for it."""

from __future__ import annotations

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame

from osmium.protocol.events import IdleTimedOut, OutputStalled, SendTimedOut, TimedOut
from osmium.protocol.h2 import FINAL_GOAWAY_DELAY, RETIRE_IDLE_TIMEOUT, ServerConnection
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from tests.conformance.frames import PREFACE, FrameType, raw_frame
from tests.support.h2_peer import GET, Peer, frames_in

#: Idle PINGs off (idle_ping=0) in this module: their deadline is tested in test_idle_ping.py,
#: and here each test asserts one deadline with nothing else due.
LIMITS = Limits(handshake_timeout=2.0, header_timeout=3.0, idle_ping=0)


def goaways(server: ServerConnection) -> list[tuple[int, int]]:
    frames = frames_in(server.data_to_send())
    return [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]


def test_the_preface_is_due_within_the_handshake_timeout() -> None:
    server = ServerConnection(ProtocolSettings(), limits=LIMITS)
    server.start(now=100.0)
    server.data_to_send()
    assert server.next_deadline() == 102.0
    assert server.handle_timeout(101.9) == []
    server.receive(PREFACE, now=101.0)  # the preface without its SETTINGS is not the handshake
    assert server.handle_timeout(102.0) == [TimedOut("HTTP/2 preface", 2.0)]
    assert [code for _, code in goaways(server)] == [ErrorCodes.ENHANCE_YOUR_CALM]
    assert server.closed


def test_a_complete_handshake_leaves_nothing_due() -> None:
    server = ServerConnection(ProtocolSettings(), limits=LIMITS)
    server.start(now=100.0)
    server.receive(PREFACE + raw_frame(FrameType.SETTINGS, 0, 0, b""), now=100.5)
    assert server.next_deadline() is None
    assert server.handle_timeout(1000.0) == []


def test_an_open_header_block_is_due_within_the_header_timeout() -> None:
    peer = Peer(limits=LIMITS)
    block = peer.client.encoder.encode(GET)
    half = len(block) // 2
    peer.server.receive(raw_frame(FrameType.HEADERS, 0x1, 1, block[:half]), now=10.0)
    assert peer.server.next_deadline() == 13.0
    peer.server.receive(raw_frame(FrameType.CONTINUATION, 0, 1, b""), now=12.0)  # still open
    assert peer.server.next_deadline() == 13.0
    assert peer.server.handle_timeout(13.0) == [TimedOut("request header block", 3.0)]
    assert peer.server.closed


def test_a_completed_header_block_leaves_nothing_due() -> None:
    peer = Peer(limits=LIMITS)
    block = peer.client.encoder.encode(GET)
    half = len(block) // 2
    peer.server.receive(raw_frame(FrameType.HEADERS, 0x1, 1, block[:half]), now=10.0)
    peer.server.receive(raw_frame(FrameType.CONTINUATION, 0x4, 1, block[half:]), now=11.0)
    assert peer.server.next_deadline() is None


def test_the_final_goaway_follows_the_ping_ack_or_its_deadline() -> None:
    peer = Peer()
    peer.server.data_to_send()
    peer.server.start_graceful_close(now=50.0)
    assert goaways(peer.server) == [(2**31 - 1, ErrorCodes.NO_ERROR)]
    assert peer.server.next_deadline() == 50.0 + FINAL_GOAWAY_DELAY
    assert peer.server.handle_timeout(50.0 + FINAL_GOAWAY_DELAY) == []
    assert goaways(peer.server) == [(0, ErrorCodes.NO_ERROR)]
    assert peer.server.goaway_complete and peer.server.next_deadline() is None


def test_a_ping_ack_ends_the_final_goaway_deadline() -> None:
    peer = Peer()
    peer.server.start_graceful_close(now=50.0)
    ping = next(f for f in frames_in(peer.server.data_to_send()) if isinstance(f, PingFrame))
    ack = PingFrame(0, flags=["ACK"])
    ack.opaque_data = ping.opaque_data
    peer.server.receive(ack.serialize(), now=50.1)
    assert peer.server.goaway_complete and peer.server.next_deadline() is None


def queued_response(peer: Peer, size: int) -> int:
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=False)
    peer.server.send_data(stream_id, b"x" * size, end_stream=True)
    return stream_id


def test_a_response_stuck_behind_a_closed_window_is_reset_at_the_send_deadline() -> None:
    """The app handed over the whole body and moved on; the client never opens its window."""
    peer = Peer(initial_window_size=0, limits=Limits(send_timeout=5.0, idle_ping=0))
    stream_id = queued_response(peer, 11)
    peer.server.data_to_send(now=20.0)
    assert peer.server.next_deadline() == 25.0
    assert peer.server.handle_timeout(24.9) == []
    assert peer.server.handle_timeout(25.0) == [SendTimedOut(stream_id, 5.0)]
    resets = [
        f for f in frames_in(peer.server.data_to_send(now=25.0)) if isinstance(f, RstStreamFrame)
    ]
    assert [(f.stream_id, f.error_code) for f in resets] == [(stream_id, ErrorCodes.CANCEL)]
    assert peer.server.queued_size == 0 and peer.server.next_deadline() is None


def test_progress_moves_the_send_deadline() -> None:
    peer = Peer(initial_window_size=10, limits=Limits(send_timeout=5.0, idle_ping=0))
    stream_id = queued_response(peer, 25)
    peer.server.data_to_send(now=20.0)  # 10 bytes go out
    assert peer.server.next_deadline() == 25.0
    peer.client.increment_flow_control_window(10, stream_id)
    peer.server.receive(peer.client.data_to_send(), now=23.0)
    peer.server.data_to_send(now=23.0)  # 10 more
    assert peer.server.next_deadline() == 28.0
    peer.client.increment_flow_control_window(10, stream_id)
    peer.server.receive(peer.client.data_to_send(), now=24.0)
    peer.server.data_to_send(now=24.0)  # the last 5: nothing queued, nothing due
    assert peer.server.next_deadline() is None


def test_a_queue_that_refills_after_a_pause_starts_its_deadline_afresh() -> None:
    peer = Peer(initial_window_size=0, limits=Limits(send_timeout=5.0, idle_ping=0))
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=False)
    peer.server.data_to_send(now=0.0)
    peer.server.send_data(stream_id, b"late", end_stream=True)  # the app took 60 s for it
    peer.server.data_to_send(now=60.0)
    assert peer.server.next_deadline() == 65.0


def idle_server(keep_alive: float = 5.0) -> Peer:
    """A connection past its handshake, with a keep-alive timeout."""
    peer = Peer(keep_alive_timeout=keep_alive, limits=Limits(idle_ping=0))
    assert peer.server.next_deadline() is None
    return peer


def test_a_connection_without_streams_times_out_after_the_keep_alive() -> None:
    peer = idle_server()
    peer.server.idle(10.0)
    assert peer.server.next_deadline() == 15.0
    assert peer.server.handle_timeout(14.9) == []
    assert peer.server.handle_timeout(15.0) == [IdleTimedOut()]


def test_a_request_ends_the_idle_wait() -> None:
    peer = idle_server()
    peer.server.idle(10.0)
    peer.request(GET)
    peer.server.receive(peer.client.data_to_send(), now=12.0)
    assert peer.server.next_deadline() is None
    assert peer.server.handle_timeout(100.0) == []


def test_retiring_shortens_the_idle_wait() -> None:
    peer = idle_server()
    peer.server.idle(10.0)
    peer.server.retire()
    assert peer.server.next_deadline() == 10.0 + RETIRE_IDLE_TIMEOUT


def test_a_graceful_close_ends_the_idle_wait() -> None:
    peer = idle_server()
    peer.server.idle(10.0)
    peer.server.start_graceful_close(now=11.0)
    assert peer.server.next_deadline() == 11.0 + FINAL_GOAWAY_DELAY


def test_a_socket_that_takes_nothing_for_the_send_timeout_is_given_up() -> None:
    peer = Peer(limits=Limits(send_timeout=5.0, idle_ping=0))
    peer.server.output_paused(30.0)
    assert peer.server.next_deadline() == 35.0
    assert peer.server.handle_timeout(35.0) == [OutputStalled(5.0)]


def test_a_socket_that_drains_again_owes_nothing() -> None:
    peer = Peer(limits=Limits(send_timeout=5.0, idle_ping=0))
    peer.server.output_paused(30.0)
    peer.server.output_resumed()
    assert peer.server.next_deadline() is None
    assert peer.server.handle_timeout(35.0) == []
