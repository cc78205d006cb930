"""RFC 9113 §6.8 GOAWAY: graceful shutdown in both directions; §9.1 idle connections."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame

from tests.conformance.conftest import Connect
from tests.conformance.frames import ErrorCode, RawClient
from tests.conformance.servers import conformance_server
from tests.server_process import ServerProcess

MAX_STREAM_ID = 2**31 - 1

KEEP_ALIVE = 0.5


@pytest.fixture(scope="module")
def keep_alive_server() -> Iterator[ServerProcess]:
    """A server closing connections idle for more than 0.5 s."""
    with conformance_server("--keep-alive-timeout", str(KEEP_ALIVE)) as process:
        yield process


@pytest.fixture
def stoppable() -> Iterator[ServerProcess]:
    """A server for this test alone (it gets SIGTERM)."""
    with conformance_server("--graceful-timeout", "10") as process:
        yield process


def _goaways(client: RawClient) -> list[GoAwayFrame]:
    return [f for f in client.received if isinstance(f, GoAwayFrame)]


# -- client GOAWAY -------------------------------------------------------------------------------


def test_in_flight_stream_completes_after_client_goaway(h2: RawClient) -> None:
    """§6.8: streams at or below the last stream id may still complete after GOAWAY: a
    /slow?ms=300 response in flight when the client sends GOAWAY(NO_ERROR) arrives whole."""
    stream = h2.request("/slow?ms=300")
    h2.ping()
    h2.send_goaway(0, ErrorCode.NO_ERROR)
    response = h2.read_response(stream)
    assert response.status == 200
    assert response.body == b"slow response"


def test_several_in_flight_streams_complete_after_client_goaway(h2: RawClient) -> None:
    """§6.8: every stream in flight completes, including one that needs WINDOW_UPDATEs."""
    streams = {
        h2.request("/slow?ms=200"): b"slow response",
        h2.request("/big?size=150000"): b"x" * 150_000,
        h2.request("/stream?chunks=3&size=100"): b"s" * 300,
    }
    h2.ping()
    h2.send_goaway(0, ErrorCode.NO_ERROR, b"client going away")
    for stream, body in streams.items():
        assert h2.read_response(stream).body == body


def test_server_answers_client_goaway_and_closes_after_streams(h2: RawClient) -> None:
    """§6.8: the server shuts down gracefully: GOAWAY(NO_ERROR) naming the in-flight stream as
    last stream, the response, then it closes the connection (§5.4 "SHOULD send GOAWAY")."""
    stream = h2.request("/slow?ms=300")
    h2.ping()
    h2.send_goaway(0, ErrorCode.NO_ERROR)
    h2.read_response(stream)
    h2.expect_closed()
    goaways = _goaways(h2)
    assert goaways, "the server closed without GOAWAY"
    assert all(g.error_code == ErrorCode.NO_ERROR for g in goaways)
    assert goaways[-1].last_stream_id == stream


def test_client_goaway_on_idle_connection_closes_it(h2: RawClient) -> None:
    """§6.8: with nothing in flight the connection closes after GOAWAY, with one final
    GOAWAY(NO_ERROR) naming the last stream (no two-step close: no new stream is coming)."""
    h2.get("/")
    h2.send_goaway(0, ErrorCode.NO_ERROR)
    frames = h2.expect_closed()
    goaways = _goaways(h2)
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(ErrorCode.NO_ERROR, 1)]
    assert not [f for f in frames if isinstance(f, PingFrame)]


def test_client_goaway_with_error_closes_connection(h2: RawClient) -> None:
    """§5.4.1, §6.8: after a client's GOAWAY for an error the connection is closed."""
    h2.send_goaway(0, ErrorCode.PROTOCOL_ERROR, b"client detected an error")
    frames = h2.expect_closed()
    assert not [f for f in frames if isinstance(f, GoAwayFrame) and f.error_code not in (0, 1)]


# -- server GOAWAY: idle timeout, graceful stop --------------------------------------------------


def test_idle_connection_gets_goaway_then_close(
    connect: Connect, keep_alive_server: ServerProcess
) -> None:
    """§9.1, §6.8: a server may close an idle connection; it SHOULD send GOAWAY(NO_ERROR)
    first: 2^31-1 announces the shutdown, and after a PING round trip the final one names the
    last stream it processed."""
    client = connect(keep_alive_server)
    client.get("/")
    announce = client.expect_goaway(ErrorCode.NO_ERROR, last_stream_id=MAX_STREAM_ID)
    assert announce.stream_id == 0
    client.expect_goaway(ErrorCode.NO_ERROR, last_stream_id=1)
    client.expect_closed()


def test_busy_connection_is_not_idle(connect: Connect, keep_alive_server: ServerProcess) -> None:
    """§9.1: only idle connections are closed: a 1.2 s stream outlives the 0.5 s idle timeout."""
    client = connect(keep_alive_server)
    stream = client.request("/slow?ms=1200")
    response = client.read_response(stream)
    assert response.body == b"slow response"
    assert not [g for g in _goaways(client) if g.last_stream_id < stream]


def test_graceful_shutdown_finishes_in_flight_and_refuses_new_streams(
    connect: Connect, stoppable: ServerProcess
) -> None:
    """§6.8: on shutdown the server announces GOAWAY(NO_ERROR, 2^31-1) with a PING, then, one
    round trip later, GOAWAY with the last stream it will serve; that stream completes; a
    stream opened after it is not processed (ignored or REFUSED_STREAM); then the connection
    closes."""
    client = connect(stoppable)
    stream = client.request("/slow?ms=400")
    client.ping()
    stoppable.signal(signal.SIGTERM)
    client.expect_goaway(ErrorCode.NO_ERROR, last_stream_id=MAX_STREAM_ID)
    client.expect_goaway(ErrorCode.NO_ERROR, last_stream_id=stream)
    late = client.request("/")
    response = client.read_response(stream)
    assert response.body == b"slow response"
    client.expect_closed()
    on_late = [f for f in client.received if f.stream_id == late]
    assert not [f for f in on_late if isinstance(f, HeadersFrame)], on_late
    for frame in on_late:
        assert isinstance(frame, RstStreamFrame), frame
        assert frame.error_code == ErrorCode.REFUSED_STREAM
    assert stoppable.process.wait(timeout=10) == 0
