"""Dead and idle peers against a live osmium, while a normal client keeps using it.

A peer silent for `--idle-ping` gets a PING; one that leaves it unanswered for `--ping-timeout`
is closed as dead (logged, counted with the timeouts), streams open or not. A peer that answers
is left alone, and without a stream it still gets GOAWAY(NO_ERROR) at the keep-alive timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hyperframe.frame import Frame, GoAwayFrame, PingFrame

from osmium.protocol.h2 import MAX_STREAM_ID
from tests.conformance.frames import ErrorCode, RawClient
from tests.security.attacks import assert_still_serves
from tests.security.probe import normal_traffic
from tests.server_process import ServerProcess, running_server

IDLE_PING = 0.5
PING_TIMEOUT = 0.5
KEEP_ALIVE = 2.0
#: The issue's bound on closing a dead peer: idle-ping + ping-timeout, 10 % slack.
DEAD_PEER_BOUND = (IDLE_PING + PING_TIMEOUT) * 1.1
#: Clock skew between the client's last send and the server's read of it, loopback.
SKEW = 0.05
ARGS = (
    "--idle-ping", str(IDLE_PING),
    "--ping-timeout", str(PING_TIMEOUT),
    "--keep-alive-timeout", str(KEEP_ALIVE),
)  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server(*ARGS) as process:
        yield process


def pings(frames: list[Frame]) -> list[PingFrame]:
    return [f for f in frames if isinstance(f, PingFrame) and "ACK" not in f.flags]


def connected(server: ServerProcess) -> tuple[RawClient, float]:
    """A client past its handshake, and when it sent its last frame (the SETTINGS ACK)."""
    client = RawClient(server.host, server.port)
    client.handshake()
    return client, time.monotonic()


def closed_as_dead(server: ServerProcess, client: RawClient, last_sent: float) -> None:
    """The silent client gets one PING, then GOAWAY(NO_ERROR) and a close within the bound."""
    frames = client.expect_closed(timeout=DEAD_PEER_BOUND + 2.0)  # reads, never answers
    closed_after = time.monotonic() - last_sent
    assert len(pings(frames)) == 1, frames
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaways] == [ErrorCode.NO_ERROR], frames
    assert IDLE_PING + PING_TIMEOUT - SKEW <= closed_after <= DEAD_PEER_BOUND, closed_after
    server.wait_for_line(r"closing connection from 127\.0\.0\.1: PING ACK not complete", 2.0)


def test_a_peer_that_never_answers_pings_is_closed(server: ServerProcess) -> None:
    start_line = len(server.lines)
    with normal_traffic(server) as probe:
        client, last_sent = connected(server)
        with client:
            closed_as_dead(server, client, last_sent)
    assert_still_serves(server, probe, start_line)


def test_a_silent_peer_with_a_stream_open_is_closed_too(server: ServerProcess) -> None:
    """Idle PINGs watch the peer, not the streams: a response still being made does not
    keep a dead peer's connection open."""
    start_line = len(server.lines)
    with normal_traffic(server) as probe:
        client, _ = connected(server)
        with client:
            client.request("/slow?ms=10000")
            last_sent = time.monotonic()
            closed_as_dead(server, client, last_sent)
    assert_still_serves(server, probe, start_line)


def test_a_healthy_idle_peer_gets_goaway_at_the_keep_alive(server: ServerProcess) -> None:
    """It answers every PING (`wait_for` ACKs them) and opens no stream: the keep-alive, counted
    from the connection's start, closes it gracefully (GOAWAY(2^31-1), NO_ERROR)."""
    start_line = len(server.lines)
    with normal_traffic(server) as probe:
        client = RawClient(server.host, server.port)
        with client:
            started = time.monotonic()
            client.handshake()
            client.expect_goaway(ErrorCode.NO_ERROR, last_stream_id=MAX_STREAM_ID)
            goaway_after = time.monotonic() - started
            assert len(pings(client.received)) >= 2, client.received  # each one answered
            assert KEEP_ALIVE - SKEW <= goaway_after <= KEEP_ALIVE * 1.1, goaway_after
            client.expect_closed()
    assert "PING ACK" not in "".join(server.lines[start_line:])
    assert_still_serves(server, probe, start_line)


def test_a_healthy_peer_keeps_a_long_stream(server: ServerProcess) -> None:
    """A peer answering PINGs keeps its connection past idle-ping + ping-timeout and the
    keep-alive while its response takes 3 s."""
    with RawClient(server.host, server.port) as client:
        client.handshake()
        response = client.get("/slow?ms=3000")
        assert (response.status, response.body) == (200, b"slow response")
        assert len(pings(client.received)) >= 2
        assert not [f for f in client.received if isinstance(f, GoAwayFrame)]
