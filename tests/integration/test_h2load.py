"""Load from h2load (nghttp2): every request must succeed with a 2xx, whatever the concurrency."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.integration.support import assert_all_succeeded, h2load
from tests.server_process import ServerProcess, running_server

ASGI_APPS = "tests.integration.apps.asgi_apps:app"


def data_bytes(output: str) -> int:
    """Response body bytes h2load received, from its `traffic:` line."""
    match = re.search(r"^traffic: .*\((\d+)\) data", output, re.MULTILINE)
    assert match, output
    return int(match[1])


def test_h2load_10_connections_10_streams_each(server: ServerProcess) -> None:
    result = h2load("-n", "20000", "-c", "10", "-m", "10", f"{server.url}/")
    assert_all_succeeded(result, 20000)


def test_h2load_100_connections_one_stream_each(server: ServerProcess) -> None:
    result = h2load("-n", "3000", "-c", "100", "-m", "1", f"{server.url}/")
    assert_all_succeeded(result, 3000)


def test_h2load_one_connection_at_max_concurrent_streams(server: ServerProcess) -> None:
    # 100 streams in flight on one connection: exactly SETTINGS_MAX_CONCURRENT_STREAMS.
    result = h2load("-n", "5000", "-c", "1", "-m", "100", f"{server.url}/")
    assert_all_succeeded(result, 5000)


def test_h2load_uploads_and_large_responses(server: ServerProcess, tmp_path: Path) -> None:
    upload = tmp_path / "body.bin"
    upload.write_bytes(os.urandom(100_000))
    echo = h2load("-n", "400", "-c", "4", "-m", "10", "-d", str(upload), f"{server.url}/echo")
    assert_all_succeeded(echo, 400)
    assert data_bytes(echo.output) == 400 * 100_000  # every body echoed back whole

    big = h2load("-n", "200", "-c", "4", "-m", "10", f"{server.url}/big?size=500000")
    assert_all_succeeded(big, 200)
    assert data_bytes(big.output) == 200 * 500_000


def test_a_body_sent_at_once_arrives_whole_through_windows_that_never_close() -> None:
    """4 MiB in one `http.response.body`, to a client whose windows (2^30) need no
    WINDOW_UPDATE: the server's output cap splits the body into writes, and each write the socket
    takes at once must be followed by the next without anything from the client."""
    size = 4 * 1024 * 1024
    with running_server(app=ASGI_APPS) as server:
        result = h2load(
            "-n", "4", "-c", "1", "-m", "2", "-w", "30", "-W", "30",
            f"{server.url}/one-body?size={size}", timeout=30,
        )  # fmt: skip
    assert_all_succeeded(result, 4)
    assert data_bytes(result.output) == 4 * size
