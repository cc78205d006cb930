"""The peers' command lines: each serves the demo app on the run's event loop, with the
protocol flags that make it serve HTTP/2; a peer that cannot run says why in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

from loadtest import launcher
from loadtest.launcher import (
    DEMO_APP,
    KNOWN_SERVERS,
    LaunchedServer,
    LaunchError,
    ServerSpec,
    TLSFiles,
    available,
    osmium,
    resolved_loop,
    unavailable_reason,
    uvicorn,
)

LOOPS = ("asyncio", "uvloop")
#: Each peer's flag that picks its event loop.
LOOP_FLAGS = {
    "hypercorn": "--worker-class",
    "granian": "--loop",
    "uvicorn": "--loop",
    "uvicorn-httptools": "--loop",
    "h2corn": "--loop",
    "bare-h2": "--loop",
}
UVLOOP_INSTALLED = importlib.util.find_spec("uvloop") is not None


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", sorted(LOOP_FLAGS))
def test_every_peer_runs_on_the_loop_it_is_given(name: str, loop: str) -> None:
    spec = KNOWN_SERVERS[name](2, loop=loop)
    argv = spec.argv(8000, None)
    assert flag_value(argv, LOOP_FLAGS[name]) == loop
    assert spec.loop == loop
    assert flag_value(argv, "--workers") == "2"


def test_without_a_loop_every_server_gets_the_one_osmium_would_pick() -> None:
    expected = "uvloop" if UVLOOP_INSTALLED else "asyncio"
    assert resolved_loop(None) == resolved_loop("auto") == expected
    assert {factory().loop for factory in KNOWN_SERVERS.values()} == {expected}


def test_auto_is_asyncio_where_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher.importlib.util, "find_spec", lambda name: None)
    assert resolved_loop("auto") == "asyncio"
    assert resolved_loop("uvloop") == "uvloop"  # asked for: the server itself says it is missing


def test_osmium_gets_loop_only_when_asked() -> None:
    """Checkouts the gate compares may predate `--loop`; osmium's default picks the same."""
    assert "--loop" not in osmium().argv(8000, None)
    assert flag_value(osmium(loop="asyncio").argv(8000, None), "--loop") == "asyncio"


@pytest.mark.parametrize(
    ("name", "protocol_args"),
    [
        ("uvicorn", ["--http", "zttp", "--http2"]),
        ("uvicorn-httptools", ["--http", "httptools"]),
        ("granian", ["--interface", "asgi", "--http", "auto"]),
    ],
)
def test_protocol_flags(name: str, protocol_args: list[str]) -> None:
    argv = KNOWN_SERVERS[name]().argv(8000, None)
    start = argv.index(protocol_args[0])
    assert argv[start : start + len(protocol_args)] == protocol_args
    assert argv[-1] == DEMO_APP


@pytest.mark.parametrize(
    ("name", "http1", "http2", "websocket_h2"),
    [
        ("osmium", True, True, True),
        ("hypercorn", True, True, True),
        ("h2corn", True, True, True),
        ("granian", True, True, False),
        ("uvicorn", True, True, False),
        ("uvicorn-httptools", True, False, False),
        ("bare-h2", False, True, False),
    ],
)
def test_what_each_server_speaks(name: str, http1: bool, http2: bool, websocket_h2: bool) -> None:
    spec = KNOWN_SERVERS[name]()
    assert (spec.http1, spec.http2, spec.websocket_h2) == (http1, http2, websocket_h2)


@pytest.mark.parametrize(
    ("name", "cert_flag", "key_flag"),
    [
        ("bare-h2", "--certfile", "--keyfile"),
        ("h2corn", "--certfile", "--keyfile"),
        ("uvicorn", "--ssl-certfile", "--ssl-keyfile"),
        ("granian", "--ssl-certificate", "--ssl-keyfile"),
    ],
)
def test_tls_arguments_follow_each_peers_spelling(name: str, cert_flag: str, key_flag: str) -> None:
    spec = KNOWN_SERVERS[name]()
    assert spec.argv(8000, TLSFiles("c.pem", "k.pem"))[-4:] == [
        cert_flag,
        "c.pem",
        key_flag,
        "k.pem",
    ]
    assert cert_flag not in spec.argv(8000, None)


def test_h2corn_gets_one_io_thread_per_worker() -> None:
    assert flag_value(KNOWN_SERVERS["h2corn"]().argv(8000, None), "--runtime-threads") == "1"


def test_a_missing_peer_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        launcher.importlib.util,
        "find_spec",
        lambda name: None if name == "zttp" else real_find_spec(name),
    )
    assert unavailable_reason("uvicorn") == "zttp is not installed here (pip install zttp)"
    assert not available("uvicorn")
    assert unavailable_reason("osmium") is None
    assert unavailable_reason("bare-h2") is None
    assert unavailable_reason("nginx") == "unknown server 'nginx'"


def test_an_old_uvicorn_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("zttp") is None:
        pytest.skip("uvicorn and zttp are not installed")
    monkeypatch.setattr(launcher.importlib.metadata, "version", lambda package: "0.53.1")
    assert unavailable_reason("uvicorn") == (
        "uvicorn 0.53.1 has no HTTP/2 (pip install 'uvicorn>=0.54' zttp)"
    )


def test_a_command_that_does_not_exist_is_a_launch_error(tmp_path: Path) -> None:
    spec = ServerSpec("ghost", ("/nonexistent/ghost-server", "--port", "{port}"))
    with pytest.raises(LaunchError, match=r"^ghost cannot start /nonexistent/ghost-server: "):
        LaunchedServer(spec, tmp_path / "ghost.log").start()


def test_uvicorn_as_compared_serves_h2c(tmp_path: Path) -> None:
    if not available("uvicorn"):
        pytest.skip(unavailable_reason("uvicorn") or "")
    with (
        LaunchedServer(uvicorn(loop="asyncio"), tmp_path / "uvicorn.log") as server,
        httpx.Client(http1=False, http2=True, timeout=10) as client,
    ):
        response = client.get(server.url + "/")
    assert (response.http_version, response.status_code) == ("HTTP/2", 200)
    assert response.text == "hello world"
