"""Sequential HTTP/1.1 keep-alive requests on one connection answer at once, on both loops.

A response that leaves in two small segments without TCP_NODELAY waits for the client's delayed
ACK: at least 40 ms a request on Linux (its minimum delayed-ACK time). These tests fail on that.
"""

from __future__ import annotations

import http.client
import ssl
import statistics
import time

import pytest

from tests.conftest import TLSFiles
from tests.server_process import ServerProcess, running_server

REQUESTS = 20
#: A delayed-ACK stall costs at least 40 ms; anything near it is the bug, not noise.
STALL_MS = 35.0
TYPICAL_MS = 10.0


def keep_alive_timings(server: ServerProcess, path: str, tls: TLSFiles | None) -> list[float]:
    """Milliseconds per request after the first, all on one HTTP/1.1 connection."""
    if tls is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            server.host, server.port, timeout=10
        )
    else:
        context = ssl.create_default_context(cafile=str(tls.ca))
        context.set_alpn_protocols(["http/1.1"])
        connection = http.client.HTTPSConnection(
            server.host, server.port, timeout=10, context=context
        )
    timings = []
    try:
        for _ in range(REQUESTS + 1):
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status == 200, body
            assert response.version == 11 and not response.will_close
    finally:
        connection.close()
    return timings[1:]  # the first pays for the connection and the handshake


def assert_no_stall(timings: list[float]) -> None:
    """The stall hits every request; one slow one in twenty is the shared machine, not it."""
    summary = ", ".join(f"{ms:.1f}" for ms in timings)
    stalled = [ms for ms in timings if ms >= STALL_MS]
    assert len(stalled) <= 1, f"requests stalled (ms per request: {summary})"
    assert statistics.median(timings) < TYPICAL_MS, f"ms per request: {summary}"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("path", ["/", "/items"])
def test_cleartext_keep_alive_requests_do_not_stall(loop: str, path: str) -> None:
    with running_server("--loop", loop) as server:
        assert_no_stall(keep_alive_timings(server, path, None))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("backend", ["stdlib", "pyopenssl"])
def test_tls_keep_alive_requests_do_not_stall(loop: str, backend: str, tls_files: TLSFiles) -> None:
    tls_args = ["--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile)]
    with running_server("--loop", loop, "--tls-backend", backend, *tls_args) as server:
        assert_no_stall(keep_alive_timings(server, "/items", tls_files))
