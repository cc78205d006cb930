"""Stopping: SIGTERM/SIGINT drain in-flight streams, the graceful timeout, keep-alive timeouts."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import h2.events
import pytest
from h2.errors import ErrorCodes

from tests.integration.h2client import H2Client
from tests.integration.support import h2c_client, nghttp_rows, wait_until
from tests.server_process import ServerProcess, running_server

EXIT_DEADLINE = 15.0


MAX_STREAM_ID = 2**31 - 1


def final_goaway(client: H2Client, timeout: float = 5) -> h2.events.ConnectionTerminated:
    """RFC 9113 §6.8's two steps: GOAWAY(2^31-1) announces, the last one names the last stream."""
    client.wait_for(
        lambda: any(g.last_stream_id != MAX_STREAM_ID for g in client.goaways),
        timeout,
        "the final GOAWAY",
    )
    assert client.goaways[0].last_stream_id == MAX_STREAM_ID
    return client.goaways[-1]


def wait_exit(server: ServerProcess, timeout: float = EXIT_DEADLINE) -> int:
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running {timeout}s later; output:\n{server.output}")


def assert_connection_refused(server: ServerProcess) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()


def test_sigterm_finishes_in_flight_streams_then_exits_0() -> None:
    with running_server("--graceful-timeout", "20") as server:
        clients = [H2Client(server.host, server.port) for _ in range(2)]
        idle = H2Client(server.host, server.port)
        try:
            started = time.monotonic()
            stream_ids = {
                client: [client.request("GET", "/slow?ms=1500") for _ in range(10)]
                for client in clients
            }
            for client in [*clients, idle]:
                client.ping()  # the server has seen (and started) every request before the signal
            server.signal(signal.SIGTERM)

            # A connection with nothing in flight is told and closed at once.
            assert final_goaway(idle).last_stream_id == 0
            idle.wait_for_eof(5)

            for client in clients:
                goaway = final_goaway(client)
                assert goaway.error_code == ErrorCodes.NO_ERROR
                assert goaway.last_stream_id == max(stream_ids[client])
            # The listener is closed before the GOAWAYs go out: new connections are refused.
            assert_connection_refused(server)

            for client in clients:
                for stream_id in stream_ids[client]:
                    response = client.response(stream_id, timeout=10)
                    assert response.status == 200, f"stream {stream_id}: {response}"
                    assert bytes(response.data) == b"slow response"
                    assert response.reset_code is None
                client.wait_for_eof(5)  # closed once its streams are done
            assert time.monotonic() - started >= 1.5
            assert wait_exit(server) == 0
        finally:
            for client in [*clients, idle]:
                client.close()
        assert "stopped" in server.output
        assert "Traceback" not in server.output


def test_sigterm_with_nghttp_clients_in_flight(tmp_path: Path) -> None:
    """Real clients: 2 nghttp connections x 10 requests of 1.5 s, SIGTERM while all are running.

    Every request gets its 200, and the app's lifespan shutdown runs only after the last one.
    (nghttp, not httpx: httpcore fails every open stream on any GOAWAY, encode/httpcore#730.)
    """
    record = tmp_path / "record.txt"
    app = "tests.integration.apps.asgi_apps:app"
    with running_server(app=app, env={"OSMIUM_TEST_RECORD": str(record)}) as server:
        urls = [
            [f"{server.url}/sleep?ms=1500&id=c{index}-{number}" for number in range(10)]
            for index in range(2)
        ]
        clients = [
            subprocess.Popen(
                ["nghttp", "-n", "-s", *connection_urls],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for connection_urls in urls
        ]
        try:
            with h2c_client(server) as observer:

                def all_started() -> bool:
                    events = observer.get("/events").json()
                    return sum(event["event"] == "started" for event in events) == 20

                wait_until(all_started, 10, "20 requests running in the app")
            server.signal(signal.SIGTERM)
            outputs = [client.communicate(timeout=20)[0] for client in clients]
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        for client, output in zip(clients, outputs, strict=True):
            assert client.returncode == 0, output
            rows = nghttp_rows(output)
            assert len(rows) == 10, output
            assert {status for status, _, _ in rows} == {200}, output
        assert wait_exit(server) == 0
    lines = record.read_text().splitlines()
    assert len(lines) == 21, lines
    assert lines[-1] == "lifespan shutdown"
    assert sorted(lines[:-1]) == sorted(
        f"request c{index}-{number} finished" for index in range(2) for number in range(10)
    )


def test_new_stream_after_goaway_is_refused() -> None:
    with running_server() as server, H2Client(server.host, server.port) as client:
        in_flight = client.request("GET", "/slow?ms=1000")
        client.ping()
        server.signal(signal.SIGTERM)
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY")
        late = client.request("GET", "/")
        late_response = client.response(late, timeout=5)
        assert late_response.reset_code == ErrorCodes.REFUSED_STREAM
        assert late_response.headers is None
        assert client.response(in_flight, timeout=10).status == 200
        assert wait_exit(server) == 0


def test_sigint_is_graceful_too() -> None:
    with running_server() as server, H2Client(server.host, server.port) as client:
        stream_id = client.request("GET", "/slow?ms=800")
        client.ping()
        server.signal(signal.SIGINT)
        response = client.response(stream_id, timeout=10)
        assert response.status == 200
        assert bytes(response.data) == b"slow response"
        assert wait_exit(server) == 0


def test_graceful_timeout_shorter_than_streams() -> None:
    with (
        running_server("--graceful-timeout", "0.5") as server,
        H2Client(server.host, server.port) as client,
    ):
        stream_ids = [client.request("GET", "/slow?ms=30000") for _ in range(3)]
        client.ping()
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        assert wait_exit(server, timeout=10) == 0
        elapsed = time.monotonic() - signalled
        assert elapsed < 8, f"took {elapsed:.1f}s to give up on 30 s streams"
        client.wait_for_eof(5)
        for stream_id in stream_ids:
            assert client.streams[stream_id].status is None  # never answered
        assert "closing 1 connection(s) with streams in flight" in server.output


def test_second_signal_stops_at_once() -> None:
    with (
        running_server("--graceful-timeout", "60") as server,
        H2Client(server.host, server.port) as client,
    ):
        client.request("GET", "/slow?ms=30000")
        client.ping()
        server.signal(signal.SIGTERM)
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY")
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        assert wait_exit(server, timeout=10) == 0
        assert time.monotonic() - signalled < 8


# -- keep-alive ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keep_alive_server() -> Iterator[ServerProcess]:
    with running_server("--keep-alive-timeout", "1") as process:
        yield process
        assert process.stop() == 0, process.output  # a clean exit after the module


def test_idle_connection_gets_goaway_and_is_closed(keep_alive_server: ServerProcess) -> None:
    server = keep_alive_server
    with H2Client(server.host, server.port) as client:
        assert client.get("/").status == 200
        idle_since = time.monotonic()
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY after the keep-alive timeout")
        idle_for = time.monotonic() - idle_since
        goaway = final_goaway(client)
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert goaway.last_stream_id == 1
        client.wait_for_eof(3)
    assert 0.8 <= idle_for < 4, f"GOAWAY after {idle_for:.2f}s idle, keep-alive timeout is 1s"


def test_connection_without_requests_is_closed(keep_alive_server: ServerProcess) -> None:
    server = keep_alive_server
    with H2Client(server.host, server.port) as client:
        opened = time.monotonic()
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY on a connection never used")
        assert final_goaway(client).last_stream_id == 0
        client.wait_for_eof(3)
        assert time.monotonic() - opened >= 0.8


def test_busy_connection_is_not_timed_out(keep_alive_server: ServerProcess) -> None:
    """A stream outlasting the keep-alive timeout keeps its connection; the timer restarts after."""
    server = keep_alive_server
    with H2Client(server.host, server.port) as client:
        response = client.get("/slow?ms=2500", timeout=10)
        finished = time.monotonic()
        assert response.status == 200
        assert bytes(response.data) == b"slow response"
        assert client.goaways == []
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY once idle")
        assert time.monotonic() - finished >= 0.8
        client.wait_for_eof(3)
