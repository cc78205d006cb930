"""Several listeners (--bind repeated, --insecure-bind), unix sockets (--uds-mode) and sockets
handed over by descriptor (--fd), with workers; real clients: httpx, curl --unix-socket."""

from __future__ import annotations

import socket
import ssl
import stat
from pathlib import Path

import httpx
import pytest

from tests.conftest import TLSFiles
from tests.integration.support import run_osmium, run_tool
from tests.server_process import running_server

ASGI_APPS = "tests.integration.apps.asgi_apps:app"
ERROR_PREFIX = "osmium: error:"


def h2c_get(url: str, **transport: object) -> httpx.Response:
    """One request over HTTP/2 with prior knowledge (h2c), as h2c_client does."""
    with httpx.Client(
        transport=httpx.HTTPTransport(http1=False, http2=True, **transport),
        timeout=10,  # type: ignore[arg-type]
    ) as client:
        return client.get(url)


def assert_one_line_error(result: object, fragment: str) -> None:
    assert result.returncode == 2  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX) and fragment in lines[0], lines


def test_two_tcp_listeners_are_both_served_by_every_worker() -> None:
    args = ("--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--workers", "2")
    with running_server(*args) as server:
        first, second = server.listeners
        assert first != second
        for url in (first, second):
            for _ in range(4):
                response = h2c_get(f"{url}/")
                assert response.status_code == 200 and response.text == "hello world"


def test_tls_beside_a_cleartext_listener(tls_files: TLSFiles) -> None:
    args = (
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile),
        "--bind", "127.0.0.1:0", "--insecure-bind", "127.0.0.1:0",
    )  # fmt: skip
    with running_server(*args, app=ASGI_APPS) as server:
        secure, plain = server.listeners
        assert secure.startswith("https://") and plain.startswith("http://")
        verify = ssl.create_default_context(cafile=str(tls_files.ca))
        with httpx.Client(verify=verify, http2=True, timeout=10) as client:
            over_tls = client.get(f"{secure}/scope").json()
        cleartext = h2c_get(f"{plain}/scope").json()
    assert over_tls["scheme"] == "https" and over_tls["tls"] is not None
    assert cleartext["scheme"] == "http" and cleartext["tls"] is None


def test_a_unix_socket_with_workers_its_mode_and_its_removal(tmp_path: Path) -> None:
    path = tmp_path / "osmium.sock"
    args = ("--bind", f"unix:{path}", "--uds-mode", "0600", "--workers", "2")
    with running_server(*args, app=ASGI_APPS) as server:
        assert server.listeners == [f"unix:{path}"]
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for _ in range(4):
            curl = run_tool(
                "curl", "--silent", "--show-error", "--max-time", "10",
                "--unix-socket", str(path), "http://osmium/scope",
            )  # fmt: skip
            assert curl.returncode == 0, curl.stderr
        scope = httpx.Response(200, content=curl.stdout.encode()).json()
        assert scope["server"] == [str(path), None] and scope["client"] is None
        over_h2c = h2c_get("http://osmium/scope", uds=str(path))
        assert over_h2c.http_version == "HTTP/2" and over_h2c.json()["server"][0] == str(path)
        assert server.stop() == 0
    assert not path.exists()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(str(path))  # closed without unlinking: nobody listens there now
    with running_server("--bind", f"unix:{path}") as server:
        assert h2c_get("http://osmium/", uds=str(path)).text == "hello world"
        assert server.stop() == 0


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    result = run_osmium("serve", "--bind", f"unix:{path}")
    assert_one_line_error(result, "a file that is not a socket is there")
    assert path.read_text() == "keep me"


def test_a_socket_handed_over_by_descriptor() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with running_server("--fd", str(fd), "--workers", "2", pass_fds=(fd,)) as server:
            assert server.listeners == [f"http://127.0.0.1:{port}"]
            for _ in range(4):
                assert h2c_get(f"http://127.0.0.1:{port}/").text == "hello world"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--fd", "97"), "--fd 97: Bad file descriptor"),
        (("--bind", "unix:"), "expected unix:PATH"),
        (("--bind", "fd://x"), "expected fd://N"),
        (("--bind", "unix:/tmp/x.sock", "--uds-mode", "999"), "not an octal file mode"),
    ],
)
def test_bad_listeners_are_one_line_errors(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run_osmium("serve", *args), fragment)


def test_the_same_address_twice_is_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    assert_one_line_error(
        run_osmium("serve", "--bind", address, "--bind", address), "address already in use"
    )


def test_a_descriptor_that_is_not_a_listening_socket_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "file", "w") as file:
        fd = file.fileno()
        result = run_osmium("serve", "--fd", str(fd), pass_fds=(fd,))
    assert_one_line_error(result, f"--fd {fd}:")
