"""Signals to the whole process group, as a terminal's Ctrl-C and systemd send them.

The acceptor and every worker get such a signal at the same moment. A request in flight must
still finish (the stop is graceful), and only a second signal stops the server at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.h2client import H2Client
from tests.integration.support import wait_until
from tests.server_process import ServerProcess, running_server

APP = "tests.integration.apps.signals_app:app"
#: Long enough to be surely in flight when the signal comes, short enough for a fast test.
SLOW_MS = 1500
EXIT_DEADLINE = 15.0
CURL_FLAGS = {"h2": "--http2-prior-knowledge", "http/1.1": "--http1.1"}
CURL_VERSIONS = {"h2": "2", "http/1.1": "1.1"}
#: What the acceptor prints on the first signal, per signal.
AGAIN = {signal.SIGINT: "Ctrl-C again to quit now", signal.SIGTERM: "SIGTERM again to quit now"}


@contextmanager
def signals_server(
    tmp_path: Path, workers: int, *args: str
) -> Iterator[tuple[ServerProcess, Path]]:
    """The server in its own process group, and the file its app records started requests in."""
    record = tmp_path / "started.txt"
    record.touch()
    with running_server(
        "--workers",
        str(workers),
        *args,
        app=APP,
        env={"OSMIUM_TEST_RECORD": str(record)},
        new_session=True,
    ) as server:
        yield server, record


@contextmanager
def in_flight(
    server: ServerProcess, record: Path, protocol: str, ms: int
) -> Iterator[subprocess.Popen[str]]:
    """curl GET /slow?ms=`ms`, yielded once the app has started it; killed if still running."""
    curl = subprocess.Popen(
        [
            "curl", "--silent", "--show-error", "--max-time", "60", CURL_FLAGS[protocol],
            "--write-out", "\n%{http_code} %{http_version}", f"{server.url}/slow?ms={ms}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: "started /slow" in record.read_text(), 10, "the app to start /slow")
        assert curl.poll() is None, "the request ended before the signal"
        yield curl
    finally:
        if curl.poll() is None:
            curl.kill()
        curl.communicate()


def signal_group(server: ServerProcess, signum: int) -> None:
    """What a terminal does on Ctrl-C: the signal to every process of the server's group."""
    os.killpg(server.process.pid, signum)


def wait_exit(server: ServerProcess, timeout: float = EXIT_DEADLINE) -> int:
    try:
        return server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running {timeout}s later; output:\n{server.output}")


@pytest.mark.parametrize("protocol", ["h2", "http/1.1"])
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_signal_to_the_group_finishes_the_request_in_flight(
    tmp_path: Path, signum: int, workers: int, protocol: str
) -> None:
    with (
        signals_server(tmp_path, workers) as (server, record),
        in_flight(server, record, protocol, SLOW_MS) as curl,
    ):
        signal_group(server, signum)
        stdout, stderr = curl.communicate(timeout=20)
        assert curl.returncode == 0, f"{stderr}\nserver output:\n{server.output}"
        assert stdout == f"slow response\n200 {CURL_VERSIONS[protocol]}"
        assert wait_exit(server) == 0, server.output
    assert server.wait_for_line(r"waiting for \d+ stream\(s\) in flight \(up to [\d.]+ s\)")
    assert AGAIN[signum] in server.output
    assert "stopping now" not in server.output
    assert "Traceback" not in server.output


@pytest.mark.parametrize("workers", [1, 2])
def test_second_ctrl_c_stops_at_once(tmp_path: Path, workers: int) -> None:
    with (
        signals_server(tmp_path, workers, "--graceful-timeout", "60") as (server, record),
        in_flight(server, record, "h2", 30_000) as curl,
    ):
        signal_group(server, signal.SIGINT)
        server.wait_for_line(AGAIN[signal.SIGINT])
        assert server.process.poll() is None  # the first Ctrl-C waits for the 30 s request
        signalled = time.monotonic()
        signal_group(server, signal.SIGINT)
        assert wait_exit(server) == 0, server.output
        stopped_after = time.monotonic() - signalled
        curl.communicate(timeout=10)
        assert curl.returncode != 0  # cut off: no response after the second Ctrl-C
    assert stopped_after < 8, f"exit {stopped_after:.1f} s after the second Ctrl-C"
    assert "stopping now" in server.output


def test_worker_signalled_directly_drains_however_often(tmp_path: Path) -> None:
    """TERM sent to a worker twice (by an operator, not the acceptor): that worker drains."""
    with (
        signals_server(tmp_path, 1) as (server, _),
        H2Client(server.host, server.port) as client,
    ):
        [worker] = server.worker_pids()
        stream_id = client.request("GET", f"/slow?ms={SLOW_MS}")
        client.ping()  # the worker has the request before the signal
        os.kill(worker, signal.SIGTERM)
        client.wait_for(lambda: bool(client.goaways), 5, "GOAWAY: the worker took the first TERM")
        os.kill(worker, signal.SIGTERM)
        response = client.response(stream_id, timeout=10)
        assert response.status == 200, f"{response}\nserver output:\n{server.output}"
        assert bytes(response.data) == b"slow response"
        assert server.stop() == 0, server.output
