"""--http auto|1|2: one protocol only, with no sniffing, no h2c upgrade, and ALPN offering only
that one."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from tests.conformance.frames import RawClient
from tests.conftest import TLSFiles
from tests.integration.support import h2c_client, run_osmium
from tests.server_process import running_server

PROTOCOL_ERROR = 0x1


def tls_args(tls_files: TLSFiles, backend: str) -> tuple[str, ...]:
    return (
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile),
        "--tls-backend", backend,
    )  # fmt: skip


def alpn_and_status(port: int, tls_files: TLSFiles, offered: list[str]) -> tuple[str | None, str]:
    """The protocol ALPN picked for a client offering `offered`, and the first line of the
    server's answer to an HTTP/1.1 request ("" if the connection failed or closed)."""
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    context.set_alpn_protocols(offered)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            alpn = sock.selected_alpn_protocol()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
    except (ssl.SSLError, OSError):
        return None, ""
    return alpn, answer.split(b"\r\n", 1)[0].decode("latin-1")


def test_http2_only_serves_prior_knowledge_and_answers_http1_with_goaway() -> None:
    with running_server("--http", "2") as server:
        with h2c_client(server) as client:
            assert client.get(f"{server.url}/").http_version == "HTTP/2"
        with RawClient(server.host, server.port) as raw:
            raw.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.expect_goaway(PROTOCOL_ERROR)


def test_http1_only_refuses_the_http2_preface_and_ignores_h2c_upgrades() -> None:
    with running_server("--http", "1") as server:
        with httpx.Client(timeout=10) as client:
            upgrade = {"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c",
                       "http2-settings": "AAMAAABkAAQAAP__"}  # fmt: skip
            response = client.get(f"{server.url}/", headers=upgrade)
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 505")


def test_auto_still_serves_both_and_upgrades() -> None:
    with running_server() as server:
        with h2c_client(server) as client:
            assert client.get(f"{server.url}/").http_version == "HTTP/2"
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{server.url}/").http_version == "HTTP/1.1"


@pytest.mark.parametrize("backend", ["stdlib", "pyopenssl"])
def test_over_tls_alpn_offers_only_the_chosen_protocol(tls_files: TLSFiles, backend: str) -> None:
    pytest.importorskip("OpenSSL")
    both = ["h2", "http/1.1"]
    with running_server("--http", "2", *tls_args(tls_files, backend)) as server:
        assert alpn_and_status(server.port, tls_files, both)[0] == "h2"
        alpn, first_line = alpn_and_status(server.port, tls_files, ["http/1.1"])
        assert alpn is None and not first_line.startswith("HTTP/1.1")  # never served as 1.1
    with running_server("--http", "1", *tls_args(tls_files, backend)) as server:
        assert alpn_and_status(server.port, tls_files, both) == ("http/1.1", "HTTP/1.1 200 OK")


def test_a_bad_mode_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "osmium.toml"
    config.write_text('http = "3"\n')
    result = run_osmium("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "osmium: error: http must be one of auto, 1, 2, not '3'"
    ]
