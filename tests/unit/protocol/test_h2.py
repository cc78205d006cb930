"""The sans-IO core driven by an h2 client: bytes in, events and bytes out, no sockets."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, RstStreamFrame

from osmium.protocol.events import (
    Body,
    ConnectionFailed,
    EndBody,
    GoAway,
    Request,
    Reset,
)
from osmium.protocol.h2 import ServerConnection, StreamGone
from osmium.protocol.settings import ProtocolSettings
from tests.support.h2_peer import GET, POST, Peer, frames_in


def test_start_advertises_settings_and_opens_connection_window() -> None:
    settings = ProtocolSettings(max_concurrent_streams=7, initial_window_size=1000)
    peer = Peer(settings)
    changed = next(e for e in peer.client_events if isinstance(e, h2.events.RemoteSettingsChanged))
    values = {code: setting.new_value for code, setting in changed.changed_settings.items()}
    assert values[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 1000
    assert values[h2.settings.SettingCodes.ENABLE_PUSH] == 0
    assert peer.client.outbound_flow_control_window == settings.connection_window_size


def test_request_headers_that_end_the_stream_become_one_complete_request() -> None:
    peer = Peer()
    stream_id = peer.request(GET)
    events = peer.client_to_server()
    assert events == [Request(stream_id, events[0].headers, complete=True)]
    assert (b":method", b"GET") in events[0].headers


def test_a_repeated_request_is_read_as_the_first_was() -> None:
    """A client repeats its requests block for block: the checks and the facts the first of them
    gave (content-length, split cookies, a priority) are kept with the block, and hold for each
    repeat."""
    peer = Peer()
    cookies = [("cookie", "a=1"), ("x-between", "1"), ("cookie", "b=2")]
    requests = [
        [*GET, *cookies],
        [*POST, ("content-length", "3"), *cookies, ("priority", "u=1")],
        [*POST, ("connection", "keep-alive")],  # malformed: refused each time
    ]
    for _ in range(4):  # a block repeats from the third sending on, once the table holds it
        for headers in requests:
            stream_id = peer.request(headers, b"abc" if headers[0] == POST[0] else b"")
            events = peer.client_to_server()
            if headers[-1][0] == "connection":
                assert events == []
                resets = [
                    e for e in peer.server_to_client() if isinstance(e, h2.events.StreamReset)
                ]
                assert [(e.stream_id, e.error_code) for e in resets] == [
                    (stream_id, ErrorCodes.PROTOCOL_ERROR)
                ]
                continue
            request = events[0]
            assert request.headers[-1] == (b"cookie", b"a=1; b=2")
            assert (b"x-between", b"1") in request.headers
            expected = peer.server._h2.streams[stream_id]._expected_content_length
            assert expected == (3 if headers[0] == POST[0] else None)
            urgency = peer.server.priority_of(stream_id).urgency
            assert urgency == (1 if headers[0] == POST[0] else 3)


def test_a_request_with_a_body_ends_with_end_body() -> None:
    peer = Peer()
    stream_id = peer.request(POST, b"abc")
    events = peer.client_to_server()
    assert events == [
        Request(stream_id, events[0].headers),
        Body(stream_id, b"abc", 3),
        EndBody(stream_id, []),
    ]


def test_request_trailers_arrive_with_end_body() -> None:
    peer = Peer()
    stream_id = peer.request(POST, b"abc", end=False)
    peer.client.send_headers(stream_id, [("x-sum", "1")], end_stream=True)
    events = peer.client_to_server()
    assert [type(e) for e in events] == [Request, Body, EndBody]
    assert events[2].trailers == [(b"x-sum", b"1")]


def test_unconsumed_body_holds_back_the_client_window() -> None:
    peer = Peer(ProtocolSettings(initial_window_size=1000))
    stream_id = peer.request(POST, b"x" * 1000, end=False)
    peer.client_to_server()
    peer.server_to_client()
    assert peer.client.local_flow_control_window(stream_id) == 0
    peer.server.acknowledge(stream_id, 1000)
    events = peer.server_to_client()
    assert any(isinstance(e, h2.events.WindowUpdated) and e.stream_id == stream_id for e in events)
    assert peer.client.local_flow_control_window(stream_id) == 1000


def test_queued_body_stops_at_the_peer_window_and_resumes_on_window_update() -> None:
    peer = Peer(initial_window_size=100)
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=False)
    peer.server.send_data(stream_id, b"y" * 250, end_stream=True)
    received = [e for e in peer.server_to_client() if isinstance(e, h2.events.DataReceived)]
    assert sum(len(e.data) for e in received) == 100
    assert peer.server.queued(stream_id) == 150
    peer.client.increment_flow_control_window(150, stream_id)
    assert peer.client_to_server() == []
    events = peer.server_to_client()
    assert sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived)) == 150
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert peer.server.queued(stream_id) == 0


def test_data_frames_never_exceed_the_peer_max_frame_size() -> None:
    peer = Peer(initial_window_size=1 << 20)
    peer.client.increment_flow_control_window(1 << 20)
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=False)
    peer.server.send_data(stream_id, b"z" * 100_000, end_stream=True)
    data_frames = [f for f in frames_in(peer.server.data_to_send()) if isinstance(f, DataFrame)]
    assert max(len(f.data) for f in data_frames) == 16_384
    assert sum(len(f.data) for f in data_frames) == 100_000
    assert "END_STREAM" in data_frames[-1].flags
    assert all("END_STREAM" not in f.flags for f in data_frames[:-1])


def test_stream_over_the_limit_is_refused_and_the_connection_survives() -> None:
    peer = Peer(ProtocolSettings(max_concurrent_streams=1), heed_server_settings=False)
    first = peer.request(GET)
    second = peer.request(GET)
    events = peer.client_to_server()
    assert [e.stream_id for e in events if isinstance(e, Request)] == [first]
    assert rst_codes(peer.server.data_to_send()) == [(second, ErrorCodes.REFUSED_STREAM)]
    peer.server.send_headers(first, [(b":status", b"204")], end_stream=True)
    peer.server_to_client()
    third = peer.request(GET)
    assert Request in {type(e) for e in peer.client_to_server() if e.stream_id == third}


def test_bad_preface_fails_the_connection_with_protocol_error() -> None:
    server = ServerConnection(ProtocolSettings())
    server.start()
    server.data_to_send()
    events = server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)
    assert events[0].error_code == ErrorCodes.PROTOCOL_ERROR
    goaway = [f for f in frames_in(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway[0].error_code == ErrorCodes.PROTOCOL_ERROR
    assert server.receive(b"more") == []


def rst_codes(data: bytes) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in frames_in(data) if isinstance(f, RstStreamFrame)]


def test_content_length_mismatch_is_a_stream_error() -> None:
    peer = Peer()
    stream_id = peer.request([*POST, ("content-length", "10")], b"short")
    events = peer.client_to_server()
    assert events[-1] == Reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
    assert rst_codes(peer.server.data_to_send()) == [(stream_id, ErrorCodes.PROTOCOL_ERROR)]
    assert not peer.server.closed


def test_content_length_without_data_is_a_stream_error() -> None:
    peer = Peer()
    stream_id = peer.request([*POST, ("content-length", "3")])
    assert peer.client_to_server() == []
    assert rst_codes(peer.server.data_to_send()) == [(stream_id, ErrorCodes.PROTOCOL_ERROR)]


@pytest.mark.parametrize(
    "headers",
    [
        [h for h in GET if h[0] != ":path"],
        [*GET, ("connection", "keep-alive")],
        [*GET, ("te", "gzip")],
        [*GET, ("Upper", "case")],
        [*GET, (":unknown", "pseudo")],
        [*POST, ("content-length", "many")],
    ],
    ids=[
        "missing-path",
        "connection-header",
        "te-not-trailers",
        "uppercase-name",
        "unknown-pseudo",
        "bad-content-length",
    ],
)
def test_malformed_requests_reset_only_their_stream(headers: list) -> None:
    peer = Peer()
    bad = peer.request(headers)
    good = peer.request(GET)
    events = peer.client_to_server()
    assert [e.stream_id for e in events if isinstance(e, Request)] == [good]
    assert rst_codes(peer.server.data_to_send()) == [(bad, ErrorCodes.PROTOCOL_ERROR)]


def test_peer_reset_becomes_reset_event_and_sending_raises_stream_gone() -> None:
    peer = Peer()
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.client.reset_stream(stream_id, ErrorCodes.CANCEL)
    assert peer.client_to_server() == [Reset(stream_id, ErrorCodes.CANCEL)]
    with pytest.raises(StreamGone):
        peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=True)


def test_peer_goaway_lets_streams_in_flight_finish() -> None:
    peer = Peer()
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.client.close_connection(last_stream_id=0)
    assert peer.client_to_server() == [GoAway(ErrorCodes.NO_ERROR, 0)]
    peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=False)
    peer.server.send_data(stream_id, b"done", end_stream=True)
    frames = frames_in(peer.server.data_to_send())
    assert any(isinstance(f, DataFrame) and f.data == b"done" for f in frames)


def test_graceful_close_is_two_step_and_refuses_streams_after_the_final_goaway() -> None:
    peer = Peer()
    first = peer.request(GET)
    peer.client_to_server()
    peer.server.start_graceful_close()
    frames = frames_in(peer.server.data_to_send())
    goaways = [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways == [(2**31 - 1, ErrorCodes.NO_ERROR)]
    ping = next(f for f in frames if isinstance(f, PingFrame))
    in_flight = peer.request(GET)  # sent before the client saw the GOAWAY: still served
    assert Request in {type(e) for e in peer.client_to_server()}
    assert not peer.server.goaway_complete
    ack = PingFrame(0, flags=["ACK"])
    ack.opaque_data = ping.opaque_data
    assert peer.server.receive(ack.serialize()) == []
    assert peer.server.goaway_complete
    final = [f for f in frames_in(peer.server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert [(f.last_stream_id, f.error_code) for f in final] == [(in_flight, ErrorCodes.NO_ERROR)]
    later = peer.request(GET)
    assert peer.client_to_server() == []
    assert rst_codes(peer.server.data_to_send()) == [(later, ErrorCodes.REFUSED_STREAM)]
    peer.server.send_headers(first, [(b":status", b"204")], end_stream=True)
    assert peer.server.data_to_send()


def test_settings_change_of_initial_window_opens_every_stream() -> None:
    peer = Peer(initial_window_size=0)
    stream_id = peer.request(GET)
    peer.client_to_server()
    peer.server.send_headers(stream_id, [(b":status", b"200")], end_stream=False)
    peer.server.send_data(stream_id, b"abc", end_stream=True)
    assert not [f for f in frames_in(peer.server.data_to_send()) if isinstance(f, DataFrame)]
    peer.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    peer.client_to_server()
    data_frames = [f for f in frames_in(peer.server.data_to_send()) if isinstance(f, DataFrame)]
    assert [(f.data, "END_STREAM" in f.flags) for f in data_frames] == [(b"abc", True)]


def test_data_for_a_refused_stream_still_returns_connection_window() -> None:
    peer = Peer(
        ProtocolSettings(max_concurrent_streams=1, connection_window_size=65_535),
        heed_server_settings=False,
    )
    peer.request(GET)
    refused = peer.client.get_next_available_stream_id()
    peer.client.send_headers(refused, POST, end_stream=False)
    for _ in range(3):
        peer.client.send_data(refused, b"d" * 16_000)
    peer.client.end_stream(refused)
    peer.client_to_server()
    events = peer.server_to_client()
    updates = [e for e in events if isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0]
    assert sum(e.delta for e in updates) == 48_000


def test_answering_a_reset_stream_h2_has_forgotten_raises_stream_gone() -> None:
    """Found by the fuzzer: once a later stream opened, h2 forgets a reset stream and raised
    StreamIDTooLowError instead of the StreamGone the transport handles."""
    peer = Peer()
    first = peer.request(GET)
    peer.client.reset_stream(first)
    peer.request(GET)
    peer.client_to_server()
    with pytest.raises(StreamGone):
        peer.server.send_headers(first, [(b":status", b"200")], end_stream=True)
