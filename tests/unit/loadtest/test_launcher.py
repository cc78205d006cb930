"""The launcher starts a server command on a free port, waits for HTTP/2, and stops it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loadtest.launcher import (
    LaunchedServer,
    LaunchError,
    ServerSpec,
    TLSFiles,
    osmium,
    speaks_http2,
)


def test_osmium_is_up_when_launched_and_stops_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "osmium.log"
    with LaunchedServer(osmium(workers=2), log) as server:
        assert speaks_http2(server.port, tls=False)
        assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.exit_code == 0
    assert not speaks_http2(server.port, tls=False)
    assert "stopped after" in log.read_text()  # the log is kept; "listening" may race the stop


def test_a_server_that_exits_at_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = ServerSpec(
        "broken", (sys.executable, "-c", "print('no such luck'); raise SystemExit(3)")
    )
    with pytest.raises(LaunchError, match="broken exited at start-up: no such luck"):
        LaunchedServer(spec, tmp_path / "broken.log").start()


def test_tls_arguments_are_added_only_with_certificates() -> None:
    spec = osmium()
    plain = spec.argv(8443, None)
    assert "--certfile" not in plain and "127.0.0.1:8443" in plain
    secured = spec.argv(8443, TLSFiles("c.pem", "k.pem"))
    assert secured[-4:] == ["--certfile", "c.pem", "--keyfile", "k.pem"]
