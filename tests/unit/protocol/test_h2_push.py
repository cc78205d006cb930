"""The core's server push (RFC 9113 §8.4) and 1xx responses (103 Early Hints, RFC 8297)."""

from __future__ import annotations

import struct

import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, PushPromiseFrame

from osmium.protocol.events import ConnectionFailed
from osmium.protocol.h2 import StreamGone
from tests.conformance.frames import FrameType, raw_frame
from tests.support.h2_peer import GET, Peer, frames_in

OK = [(b":status", b"200")]
EARLY_HINTS = [(b":status", b"103"), (b"link", b"</style.css>; rel=preload; as=style")]
PROMISED = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"test"),
    (b":path", b"/style.css"),
]


def client_settings(peer: Peer, settings: dict[int, int]) -> None:
    """The client changes its SETTINGS, and the core has read them."""
    peer.client.update_settings(settings)
    peer.client_to_server()
    peer.server_to_client()  # the ACK


def opened(peer: Peer) -> int:
    stream_id = peer.request(GET)
    peer.client_to_server()
    return stream_id


def test_a_push_promises_the_request_and_its_response_goes_on_the_promised_stream() -> None:
    peer = Peer()
    parent = opened(peer)
    promised = peer.server.push(parent, PROMISED)
    assert promised == 2
    assert peer.server.push(parent, PROMISED) == 4  # the next even id
    peer.server.send_headers(promised, OK, end_stream=False)
    peer.server.send_data(promised, b"body {}", end_stream=True)
    peer.server.send_headers(parent, OK, end_stream=True)
    events = peer.server_to_client()
    [first_promise, _] = [e for e in events if isinstance(e, h2.events.PushedStreamReceived)]
    assert first_promise.parent_stream_id == parent
    assert first_promise.pushed_stream_id == promised
    assert list(first_promise.headers) == PROMISED
    [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)
                  if e.stream_id == promised]  # fmt: skip
    assert list(response.headers) == OK
    body = [e.data for e in events if isinstance(e, h2.events.DataReceived)]
    assert body == [b"body {}"]


def test_no_push_when_the_client_disabled_it() -> None:
    """SETTINGS_ENABLE_PUSH is the client's to give; ours (0) is about the client pushing."""
    peer = Peer()
    parent = opened(peer)
    client_settings(peer, {h2.settings.SettingCodes.ENABLE_PUSH: 0})
    assert peer.server.push(parent, PROMISED) is None
    assert not any(isinstance(f, PushPromiseFrame) for f in frames_in(peer.server.data_to_send()))


def test_pushes_stop_at_the_client_s_max_concurrent_streams() -> None:
    peer = Peer()
    parent = opened(peer)
    client_settings(peer, {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    promised = peer.server.push(parent, PROMISED)
    assert promised == 2
    assert peer.server.push(parent, PROMISED) is None  # reserved streams count too
    peer.server.send_headers(promised, OK, end_stream=True)
    assert peer.server.push(parent, PROMISED) == 4  # the first one is over


def test_no_push_on_a_pushed_stream_an_ended_one_or_a_closing_connection() -> None:
    peer = Peer()
    parent = opened(peer)
    promised = peer.server.push(parent, PROMISED)
    assert promised is not None
    assert peer.server.push(promised, PROMISED) is None  # §8.4: no push on a push
    peer.server.send_headers(parent, OK, end_stream=True)
    assert peer.server.push(parent, PROMISED) is None  # §6.6: not on a stream we ended
    assert peer.server.push(99, PROMISED) is None  # no such stream
    other = opened(peer)
    peer.server.start_graceful_close()
    assert peer.server.push(other, PROMISED) is None
    # The refused pushes sent nothing and took no stream id.
    promises = [f for f in frames_in(peer.server.data_to_send()) if isinstance(f, PushPromiseFrame)]
    assert [f.promised_stream_id for f in promises] == [promised]


def test_a_client_reset_of_a_promised_stream_is_a_reset_like_any_other() -> None:
    peer = Peer()
    parent = opened(peer)
    promised = peer.server.push(parent, PROMISED)
    peer.server_to_client()
    peer.client.reset_stream(promised, ErrorCodes.CANCEL)
    [reset] = peer.client_to_server()
    assert (reset.stream_id, reset.error_code) == (promised, ErrorCodes.CANCEL)
    with pytest.raises(StreamGone):
        peer.server.send_headers(promised, OK, end_stream=True)


def test_early_hints_go_out_before_the_final_response() -> None:
    peer = Peer()
    stream_id = opened(peer)
    peer.server.send_informational(stream_id, EARLY_HINTS)
    peer.server.send_informational(stream_id, EARLY_HINTS)  # as many as the app likes
    peer.server.send_headers(stream_id, OK, end_stream=False)
    peer.server.send_informational(stream_id, EARLY_HINTS)  # too late: ignored
    peer.server.send_data(stream_id, b"page", end_stream=True)
    events = [e for e in peer.server_to_client() if getattr(e, "stream_id", None) == stream_id]
    assert [type(e) for e in events] == [
        h2.events.InformationalResponseReceived,
        h2.events.InformationalResponseReceived,
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]
    assert list(events[0].headers) == EARLY_HINTS


def test_early_hints_on_a_pushed_stream_are_ignored_and_on_a_reset_one_fail() -> None:
    peer = Peer()
    parent = opened(peer)
    promised = peer.server.push(parent, PROMISED)
    peer.server.send_informational(promised, EARLY_HINTS)  # nobody waits on a pushed response
    peer.server.send_headers(promised, OK, end_stream=True)  # the stream is still usable
    frames = frames_in(peer.server.data_to_send())
    assert [type(f).__name__ for f in frames if f.stream_id == promised] == ["HeadersFrame"]
    peer.client.reset_stream(parent, ErrorCodes.CANCEL)
    peer.client_to_server()
    with pytest.raises(StreamGone):
        peer.server.send_informational(parent, EARLY_HINTS)


def priority_update(stream_id: int, value: bytes) -> bytes:
    return raw_frame(FrameType.PRIORITY_UPDATE, 0, 0, struct.pack(">I", stream_id) + value)


def test_priority_update_for_a_promised_stream_reprioritises_it() -> None:
    """RFC 9218 §7.1: a client may re-prioritise a push stream in the reserved or open state."""
    peer = Peer(initial_window_size=1 << 20)
    parent = opened(peer)
    promised = peer.server.push(parent, PROMISED)
    for stream_id in (parent, promised):
        peer.server.send_headers(stream_id, OK, end_stream=False)
        peer.server.send_data(stream_id, b"x" * 16_384, end_stream=True)
    assert peer.server.receive(priority_update(promised, b"u=0")) == []
    data = [f.stream_id for f in frames_in(peer.server.data_to_send()) if isinstance(f, DataFrame)]
    assert data == [promised, parent]


def test_priority_update_for_a_push_stream_never_promised_is_a_connection_error() -> None:
    """RFC 9218 §7.1: a push stream in the idle state; one promised and closed is ignored."""
    peer = Peer()
    parent = opened(peer)
    promised = peer.server.push(parent, PROMISED)
    peer.server.send_headers(promised, OK, end_stream=True)
    assert peer.server.receive(priority_update(promised, b"u=0")) == []
    events = peer.server.receive(priority_update(promised + 2, b"u=0"))
    assert events == [
        ConnectionFailed(ErrorCodes.PROTOCOL_ERROR, "PRIORITY_UPDATE for an idle push stream")
    ]
    assert peer.server.closed
