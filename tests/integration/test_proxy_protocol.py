"""--proxy-protocol v1|v2: curl --haproxy-protocol over HTTP/1.1, h2c, TLS (both back-ends) and a
unix socket; raw sockets for the header's addresses reaching the scope, a header sharing its
segment with the request or the ClientHello, and every way a header can be wrong."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TLSFiles
from tests.integration.support import run_osmium, run_tool
from tests.integration.test_listeners import assert_one_line_error
from tests.integration.test_proxy_headers import stopped_cleanly
from tests.server_process import ServerProcess, running_server

ASGI_APPS = "tests.integration.apps.asgi_apps:app"
V1_HEADER = b"PROXY TCP4 203.0.113.7 198.51.100.2 4711 8443\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
REQUEST = b"GET /scope HTTP/1.1\r\nhost: example.org\r\nconnection: close\r\n\r\n"
BACKENDS = ("stdlib", "pyopenssl")
DEADLINE = 10.0


def v2_header(command: int = 0x21) -> bytes:
    """A v2 PROXY (or LOCAL) header for a TCP over IPv6 client, with one TLV after it."""
    client = socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    server = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    block = client + server + struct.pack("!HH", 4711, 443) + b"\x01\x00\x02h2"
    return V2_SIGNATURE + bytes((command, 0x21)) + struct.pack("!H", len(block)) + block


@pytest.fixture(scope="module")
def v1_server() -> Iterator[ServerProcess]:
    """On the default loop (uvloop where installed)."""
    with running_server("--proxy-protocol", "v1", "--handshake-timeout", "1", app=ASGI_APPS) as s:
        yield s
        stopped_cleanly(s)


@pytest.fixture(scope="module")
def v2_server() -> Iterator[ServerProcess]:
    with running_server("--proxy-protocol", "v2", "--loop", "asyncio", app=ASGI_APPS) as s:
        yield s
        stopped_cleanly(s)


def tls_args(tls_files: TLSFiles, backend: str) -> tuple[str, ...]:
    return (
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile),
        "--tls-backend", backend,
    )  # fmt: skip


def raw_exchange(server: ServerProcess, *chunks: bytes) -> bytes:
    """Send `chunks` (each its own write, no delay), read until the server closes."""
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            sock.sendall(chunk)
        return read_to_end(sock)


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the peer closes; a reset counts as the end (a refused header)."""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def scope_from(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:200]
    return json.loads(body)


def curl_scope(url: str, *args: str) -> dict[str, Any]:
    result = run_tool("curl", "-sS", "--max-time", "10", "--haproxy-protocol", *args, url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_curl_over_http1_and_h2c(v1_server: ServerProcess) -> None:
    over_http1 = curl_scope(f"{v1_server.url}/scope", "--http1.1")
    over_h2c = curl_scope(f"{v1_server.url}/scope", "--http2-prior-knowledge")
    assert over_http1["http_version"] == "1.1" and over_h2c["http_version"] == "2"
    # curl's header names curl's own connection: the scope shows the same client.
    assert over_h2c["client"][0] == "127.0.0.1" and over_h2c["server"][1] == v1_server.port


@pytest.mark.parametrize("backend", BACKENDS)
def test_curl_over_tls(tls_files: TLSFiles, backend: str) -> None:
    args = ("--proxy-protocol", "v1", *tls_args(tls_files, backend))
    with running_server(*args, app=ASGI_APPS) as server:
        cacert = ("--cacert", str(tls_files.ca))
        over_h2 = curl_scope(f"{server.url}/scope", "--http2", *cacert)
        over_http1 = curl_scope(f"{server.url}/scope", "--http1.1", *cacert)
    assert over_h2["http_version"] == "2" and over_h2["scheme"] == "https"
    assert over_h2["tls"] is not None and over_http1["http_version"] == "1.1"


def test_the_v1_header_names_the_client_and_server_of_the_scope(v1_server: ServerProcess) -> None:
    # Header and request in one write: the server takes the header's bytes and no more.
    scope = scope_from(raw_exchange(v1_server, V1_HEADER + REQUEST))
    assert scope["client"] == ["203.0.113.7", 4711]
    assert scope["server"] == ["198.51.100.2", 8443]


def test_a_header_split_over_several_writes(v1_server: ServerProcess) -> None:
    scope = scope_from(
        raw_exchange(v1_server, V1_HEADER[:3], V1_HEADER[3:20], V1_HEADER[20:], REQUEST)
    )
    assert scope["client"] == ["203.0.113.7", 4711]


def test_v2_over_ipv6_addresses_and_local(v2_server: ServerProcess) -> None:
    scope = scope_from(raw_exchange(v2_server, v2_header() + REQUEST))
    assert scope["client"] == ["2001:db8::7", 4711] and scope["server"] == ["2001:db8::2", 443]
    # LOCAL (the proxy's own health check): the connection's own addresses stand.
    local = scope_from(raw_exchange(v2_server, v2_header(command=0x20) + REQUEST))
    assert local["client"][0] == "127.0.0.1" and local["server"] == ["127.0.0.1", v2_server.port]


def tls_exchange(server: ServerProcess, tls_files: TLSFiles, header: bytes) -> bytes:
    """HTTP/1.1 over TLS with the PROXY header and the ClientHello in one write."""
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    context.set_alpn_protocols(["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection((server.host, server.port), timeout=DEADLINE) as sock:
        first = True
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall((header if first else b"") + outgoing.read())
                first = False
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        tls.write(REQUEST)
        sock.sendall(outgoing.read())
        received = b""
        while True:
            try:
                data = tls.read(65536)
                if not data:  # the server's close_notify
                    return received
                received += data
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    return received
                incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return received


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_after_a_v2_header_in_the_same_segment(tls_files: TLSFiles, backend: str) -> None:
    args = ("--proxy-protocol", "v2", *tls_args(tls_files, backend))
    with running_server(*args, app=ASGI_APPS) as server:
        scope = scope_from(tls_exchange(server, tls_files, v2_header()))
    assert scope["client"] == ["2001:db8::7", 4711] and scope["scheme"] == "https"


def test_on_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "osmium.sock"
    with running_server("--bind", f"unix:{path}", "--proxy-protocol", "v1", app=ASGI_APPS):
        # curl has no TCP addresses to give here: its header is "PROXY UNKNOWN".
        unknown = curl_scope("http://localhost/scope", "--unix-socket", str(path))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(DEADLINE)
            sock.connect(str(path))
            sock.sendall(V1_HEADER + REQUEST)
            proxied = scope_from(read_to_end(sock))
    assert unknown["client"] is None and unknown["server"] == [str(path), None]
    assert proxied["client"] == ["203.0.113.7", 4711]


@pytest.mark.parametrize(
    ("version", "sent"),
    [
        ("v1", REQUEST),  # no header at all
        ("v1", b"PROXY TCP4 " + b"9" * 120),  # no end of line within 107 bytes
        ("v1", b"PROXY TCP4 203.0.113.7 example.org 1 2\r\n" + REQUEST),
        ("v2", V1_HEADER + REQUEST),  # the other version
        ("v2", V2_SIGNATURE + b"\x21\x41\x00\x00" + REQUEST),  # an unknown family
    ],
)
def test_a_bad_header_closes_the_connection_without_an_answer(
    v1_server: ServerProcess, v2_server: ServerProcess, version: str, sent: bytes
) -> None:
    server = v1_server if version == "v1" else v2_server
    assert raw_exchange(server, sent) == b""
    server.wait_for_line(r"WARNING osmium: .*PROXY.* from 127\.0\.0\.1:\d+: connection closed")
    # The listener serves the next one.
    assert scope_from(
        raw_exchange(server, V1_HEADER + REQUEST if version == "v1" else v2_header() + REQUEST)
    )


def test_a_silent_connection_is_closed_at_the_handshake_timeout(v1_server: ServerProcess) -> None:
    with socket.create_connection((v1_server.host, v1_server.port), timeout=DEADLINE) as sock:
        sock.sendall(b"PROXY TCP4 ")
        started = time.monotonic()
        assert read_to_end(sock) == b""
        assert time.monotonic() - started < 5  # --handshake-timeout 1


def test_bad_proxy_protocol_settings_are_one_line_errors(tmp_path: Path) -> None:
    assert_one_line_error(run_osmium("serve", "--proxy-protocol", "v3"), "--proxy-protocol")
    config = tmp_path / "osmium.toml"
    config.write_text('[server]\nproxy_protocol = "v3"\n')
    assert_one_line_error(
        run_osmium("serve", "--config", str(config)), "proxy_protocol must be one of off, v1, v2"
    )


def test_every_worker_reads_the_header() -> None:
    with running_server("--proxy-protocol", "v1", "--workers", "2", app=ASGI_APPS) as server:
        scopes = [scope_from(raw_exchange(server, V1_HEADER + REQUEST)) for _ in range(8)]
        stopped_cleanly(server)
    assert all(scope["client"] == ["203.0.113.7", 4711] for scope in scopes)
