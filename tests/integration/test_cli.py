"""`osmium serve` as a user runs it: one-line errors with exit status 2, config files, defaults."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from tests.conftest import TLSFiles
from tests.integration.h2client import H2Client
from tests.integration.support import REPO_ROOT, h2c_client, run_osmium, run_tool
from tests.server_process import running_server

ERROR_PREFIX = "osmium: error:"


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2, nothing on stdout, exactly one `osmium: error:` line on stderr."""
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, detail
    assert "Traceback" not in result.stdout + result.stderr, detail
    assert result.stdout == "", detail
    lines = result.stderr.splitlines()
    assert len(lines) == 1, detail
    assert lines[0].startswith(ERROR_PREFIX), detail
    for fragment in fragments:
        assert fragment in lines[0], detail
    return lines[0]


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return run_osmium("serve", *args)


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


# -- errors: exit 2, one line ----------------------------------------------------------------------


def test_port_in_use(listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    result = serve("--bind", f"127.0.0.1:{port}")
    assert_one_line_error(result, f"127.0.0.1:{port}", "address already in use")


def test_missing_certificate_file(tls_files: TLSFiles, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cert.pem"
    result = serve(
        "--bind", "127.0.0.1:0", "--certfile", str(missing), "--keyfile", str(tls_files.keyfile)
    )
    assert_one_line_error(result, str(missing))


def test_missing_key_file(tls_files: TLSFiles, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key.pem"
    result = serve(
        "--bind", "127.0.0.1:0", "--certfile", str(tls_files.certfile), "--keyfile", str(missing)
    )
    assert_one_line_error(result, str(missing))


def test_certificate_and_key_mismatch(tls_files: TLSFiles) -> None:
    result = serve(
        "--bind", "127.0.0.1:0",
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.other_keyfile),
    )  # fmt: skip
    assert_one_line_error(result, str(tls_files.certfile))


def test_certfile_without_keyfile(tls_files: TLSFiles) -> None:
    result = serve("--bind", "127.0.0.1:0", "--certfile", str(tls_files.certfile))
    assert_one_line_error(result, "--keyfile")


@pytest.mark.parametrize(
    ("app", "fragments"),
    [
        ("nosuchmodule:app", ("nosuchmodule",)),
        ("osmium.demo:no_such_attribute", ("no_such_attribute",)),
        ("osmium.demo", ("module:attribute",)),
        ("osmium.demo:CHUNK_SIZE", ("not callable",)),
        (
            "tests.integration.apps.startup_apps:create_app",
            ("looks like an app factory: use --factory",),
        ),
    ],
    ids=["unimportable-module", "missing-attribute", "no-colon", "not-callable", "app-factory"],
)
def test_bad_app(app: str, fragments: tuple[str, ...]) -> None:
    assert_one_line_error(serve(app, "--bind", "127.0.0.1:0"), *fragments)


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (("--max-frame-size", "10"), ("max_frame_size",)),
        (("--max-concurrent-streams", "0"), ("max_concurrent_streams",)),
        (("--initial-window-size", "2147483648"), ("initial_window_size",)),
        (("--max-concurrent-streams", "lots"), ("--max-concurrent-streams",)),
        (("--keep-alive-timeout", "0"), ("keep_alive_timeout",)),
        (("--log-level", "loud"), ("loud",)),
        (("--loop", "tokio"), ("--loop",)),
        (("--no-such-flag",), ("--no-such-flag",)),
        (("--bind", "no-port-here"), ("no-port-here",)),
        (("--bind", "127.0.0.1:70000"), ("70000",)),
        (("--bind", "192.0.2.1:0"), ("192.0.2.1",)),
        (("--graceful-timeout", "-1"), ("graceful_timeout",)),
        (("--send-timeout", "0"), ("send_timeout",)),
        (("--header-timeout", "soon"), ("--header-timeout",)),
        (("--max-connection-output", "100"), ("max_connection_output", "16384")),
        (("--max-worker-output", "-1"), ("max_worker_output",)),
    ],
    ids=[
        "frame-size-too-small",
        "zero-streams",
        "window-too-large",
        "not-an-integer",
        "zero-keep-alive",
        "bad-log-level",
        "bad-loop",
        "unknown-flag",
        "bad-bind",
        "port-out-of-range",
        "address-not-local",
        "negative-graceful-timeout",
        "zero-send-timeout",
        "header-timeout-not-a-number",
        "connection-output-under-a-frame",
        "negative-worker-output",
    ],
)
def test_bad_flag(flags: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    args = flags if "--bind" in flags else ("--bind", "127.0.0.1:0", *flags)
    assert_one_line_error(serve(*args), *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[server]\nno_such_setting = 1\n", ("no_such_setting",)),
        ("max_concurrent_streams = 'ten'\n", ("max_concurrent_streams", "int")),
        ("max_frame_size = 100\n", ("max_frame_size",)),
        ("this is not toml\n", ("not valid TOML",)),
        ("server = 5\n", ("[server]",)),
        ("handshake_timeout = 'slow'\n", ("handshake_timeout", "float")),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "bad-value",
        "invalid-toml",
        "server-not-a-table",
        "timeout-wrong-type",
    ],
)
def test_bad_config_file(tmp_path: Path, content: str, fragments: tuple[str, ...]) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text(content)
    assert_one_line_error(serve("--bind", "127.0.0.1:0", "--config", str(config)), *fragments)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert_one_line_error(serve("--bind", "127.0.0.1:0", "--config", str(missing)), str(missing))


# -- what works ------------------------------------------------------------------------------------


def test_config_file_settings_reach_the_wire(tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text(
        "[server]\n"
        "max_concurrent_streams = 2\n"
        "initial_window_size = 100000\n"
        "max_frame_size = 32768\n"
        "max-header-list-size = 8192\n"
    )
    with running_server("--config", str(config)) as server:
        with H2Client(server.host, server.port, ignore_stream_limit=True) as client:
            client.ping()
            settings = client.remote_settings
            assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 2
            assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 100_000
            assert settings[SettingCodes.MAX_FRAME_SIZE] == 32_768
            assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 8_192

            # Behaviour too: a third concurrent stream is refused, the first two are served.
            streams = [client.request("GET", "/slow?ms=500") for _ in range(3)]
            responses = [client.response(stream_id, timeout=10) for stream_id in streams]
        assert [response.status for response in responses[:2]] == [200, 200]
        assert responses[2].reset_code == ErrorCodes.REFUSED_STREAM
        assert responses[2].headers is None


def test_flags_override_config_file(tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text("max_concurrent_streams = 7\ninitial_window_size = 70000\n")
    with (
        running_server("--config", str(config), "--max-concurrent-streams", "9") as server,
        H2Client(server.host, server.port) as client,
    ):
        client.ping()
        assert client.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 9
        assert client.remote_settings[SettingCodes.INITIAL_WINDOW_SIZE] == 70_000


def test_no_app_serves_the_demo_app() -> None:
    with running_server() as server, h2c_client(server) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert response.text == "hello world"
        assert re.search(r"listening on http://127\.0\.0\.1:\d+", server.output)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_event_loop_choice_and_access_log(loop: str) -> None:
    with running_server("--loop", loop, "--access-log") as server:
        with h2c_client(server) as client:
            assert client.get("/big", params={"size": 10}).content == b"x" * 10
            assert client.get("/missing").status_code == 404
        server.wait_for_line(r'"GET /big\?size=10 HTTP/2" 200 OK 10 ', timeout=5)
        server.wait_for_line(r'"GET /missing HTTP/2" 404 Not Found', timeout=5)
        assert server.stop() == 0


def test_debug_frames_logs_frames_both_ways_and_is_silent_by_default() -> None:
    with running_server("--debug-frames") as server, h2c_client(server) as client:
        assert client.get("/").status_code == 200
        server.wait_for_line(r"osmium\.frames: Received frame: HeadersFrame", timeout=5)
        server.wait_for_line(r"osmium\.frames: Send headers on stream ID 1", timeout=5)
    with running_server() as server, h2c_client(server) as client:
        assert client.get("/").status_code == 200
        assert server.stop() == 0
        assert "osmium.frames" not in server.output


def test_no_command() -> None:
    assert_one_line_error(run_osmium())


def test_app_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text('app = "tests.integration.apps.asgi_apps:app"\n')
    with running_server("--config", str(config)) as server, h2c_client(server) as client:
        assert client.get("/scope").json()["path"] == "/scope"


def test_app_module_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'from the working directory'})\n"
    )
    env = {"PYTHONPATH": str(REPO_ROOT)}  # osmium itself, as if installed
    with (
        running_server(app="myapp:app", cwd=str(tmp_path), env=env) as server,
        h2c_client(server) as client,
    ):
        assert client.get("/").text == "from the working directory"


def test_ipv6_bind() -> None:
    with running_server("--bind", "[::1]:0") as server:
        assert server.url.startswith("http://[::1]:")
        result = run_tool(
            "curl", "--silent", "--http2-prior-knowledge", "--max-time", "10", f"{server.url}/"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello world"


def test_version_flag() -> None:
    result = run_osmium("--version")
    assert result.returncode == 0
    assert re.fullmatch(
        r"osmium \d+\.\d+\.\d+ \(h2 [\d.]+, h11 [\d.]+, .*; CPython 3\.\d+\.\d+\)\n", result.stdout
    )
