"""HTTP/2 over TLS with certificates made by trustme for this session: ALPN h2, TLS 1.2+ only."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TLSFiles
from tests.integration.support import assert_all_succeeded, h2load, nghttp_rows, run_tool
from tests.server_process import ServerProcess, running_server

CURL = ("curl", "--silent", "--show-error", "--max-time", "30")


@pytest.fixture(scope="module")
def tls_server(tls_files: TLSFiles) -> Iterator[ServerProcess]:
    with running_server(
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile)
    ) as process:
        assert process.scheme == "https"
        yield process
        assert process.stop() == 0, process.output
        assert "Traceback" not in process.output, process.output


def client_context(tls_files: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    return context


def handshake(
    server: ServerProcess, context: ssl.SSLContext, server_hostname: str = "127.0.0.1"
) -> tuple[str | None, str | None]:
    """(negotiated ALPN protocol, TLS version) of a fresh connection."""
    with (
        socket.create_connection((server.host, server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.selected_alpn_protocol(), tls.version()


# -- clients ---------------------------------------------------------------------------------------


def test_httpx_verifies_certificate_and_speaks_h2(
    tls_server: ServerProcess, tls_files: TLSFiles
) -> None:
    with httpx.Client(http2=True, verify=client_context(tls_files), timeout=30) as client:
        hello = client.get(f"{tls_server.url}/")
        echo = client.post(f"{tls_server.url}/echo", content=b"z" * 500_000)
        head = client.head(f"{tls_server.url}/")
        missing = client.get(f"{tls_server.url}/missing")
    assert hello.http_version == "HTTP/2"
    assert hello.status_code == 200
    assert hello.text == "hello world"
    assert echo.content == b"z" * 500_000
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "11"
    assert missing.status_code == 404


def test_httpx_rejects_certificate_from_unknown_ca(tls_server: ServerProcess) -> None:
    # A control: verification is real, so the trustme CA is what made the first test pass.
    with (
        httpx.Client(http2=True, verify=ssl.create_default_context(), timeout=10) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"{tls_server.url}/")


def test_curl_with_cacert(tls_server: ServerProcess, tls_files: TLSFiles) -> None:
    result = run_tool(
        *CURL, "--http2", "--cacert", str(tls_files.ca), "-w", "\n%{http_code} %{http_version}",
        f"{tls_server.url}/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n200 2"

    head = run_tool(*CURL, "--http2", "--cacert", str(tls_files.ca), "-I", f"{tls_server.url}/")
    assert head.returncode == 0, head.stderr
    assert head.stdout.splitlines()[0].strip() == "HTTP/2 200"

    unverified = run_tool(*CURL, "--http2", f"{tls_server.url}/")
    assert unverified.returncode == 60, unverified.stderr  # peer certificate cannot be verified


def test_nghttp_over_tls(tls_server: ServerProcess) -> None:
    stats = run_tool("nghttp", "-n", "-s", f"{tls_server.url}/big?size=1000", f"{tls_server.url}/")
    assert stats.returncode == 0, stats.stdout + stats.stderr
    rows = sorted(nghttp_rows(stats.stdout))
    assert rows == [(200, "1000", "/big?size=1000"), (200, "11", "/")], stats.stdout

    verbose = run_tool("nghttp", "-v", f"{tls_server.url}/trailers")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "The negotiated protocol: h2" in verbose.stdout
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", verbose.stdout)
    assert re.search(r"recv \(stream_id=\d+\) x-checksum: demo-123", verbose.stdout)


def test_h2load_over_tls(tls_server: ServerProcess) -> None:
    result = h2load("-n", "3000", "-c", "10", "-m", "10", f"{tls_server.url}/")
    assert_all_succeeded(result, 3000)
    assert re.search(r"^Application protocol: h2$", result.output, re.M), result.output


# -- ALPN and protocol versions --------------------------------------------------------------------


def test_alpn_selects_h2(tls_server: ServerProcess, tls_files: TLSFiles) -> None:
    context = client_context(tls_files)
    context.set_alpn_protocols(["http/1.1", "h2"])
    protocol, version = handshake(tls_server, context)
    assert protocol == "h2"
    assert version in ("TLSv1.2", "TLSv1.3")


def test_tls12_with_aead_cipher_is_accepted(tls_server: ServerProcess, tls_files: TLSFiles) -> None:
    context = client_context(tls_files)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    assert handshake(tls_server, context) == ("h2", "TLSv1.2")


@contextlib.contextmanager
def permissive_tls_server(tls_files: TLSFiles, context: ssl.SSLContext) -> Iterator[int]:
    """A one-connection TLS server that accepts old versions: proves the client can offer them."""
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: list[str] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with (
            connection,
            contextlib.suppress(ssl.SSLError, OSError),
            context.wrap_socket(connection, server_side=True) as tls,
        ):
            outcome.append(tls.version() or "")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()


def tls11_client() -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.set_alpn_protocols(["h2"])
    return context


def test_tls11_client_is_refused(tls_server: ServerProcess, tls_files: TLSFiles) -> None:
    # Control: this client really does complete TLS 1.1 with a server that allows it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        old.minimum_version = ssl.TLSVersion.TLSv1
    old.set_ciphers("ALL:@SECLEVEL=0")
    old.load_cert_chain(tls_files.certfile, tls_files.keyfile)
    with (
        permissive_tls_server(tls_files, old) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        tls11_client().wrap_socket(raw) as tls,
    ):
        assert tls.version() == "TLSv1.1"

    with pytest.raises(ssl.SSLError):
        handshake(tls_server, tls11_client())
    # The server is unharmed by the failed handshake.
    context = client_context(tls_files)
    context.set_alpn_protocols(["h2"])
    assert handshake(tls_server, context)[0] == "h2"


def test_tls12_without_aead_cipher_is_refused(
    tls_server: ServerProcess, tls_files: TLSFiles
) -> None:
    """RFC 9113 §9.2.2: HTTP/2 over TLS 1.2 needs an ephemeral-key AEAD cipher suite."""
    cbc_only = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    old.set_ciphers(cbc_only)
    old.load_cert_chain(tls_files.certfile, tls_files.keyfile)

    def cbc_client() -> ssl.SSLContext:
        context = client_context(tls_files)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cbc_only)
        context.set_alpn_protocols(["h2"])
        return context

    with (
        permissive_tls_server(tls_files, old) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        cbc_client().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.2"  # control: the client can use these ciphers

    with pytest.raises(ssl.SSLError):
        handshake(tls_server, cbc_client())


# -- the app sees https ----------------------------------------------------------------------------


def test_asgi_scope_scheme_is_https(tls_files: TLSFiles) -> None:
    with running_server(
        "--certfile",
        str(tls_files.certfile),
        "--keyfile",
        str(tls_files.keyfile),
        app="tests.integration.apps.asgi_apps:app",
    ) as server:
        with httpx.Client(http2=True, verify=client_context(tls_files), timeout=30) as client:
            response = client.get(f"https://localhost:{server.port}/scope")
        assert response.http_version == "HTTP/2"
        scope = response.json()
        assert scope["scheme"] == "https"
        assert scope["http_version"] == "2"
        assert ["host", f"localhost:{server.port}"] in scope["headers"]
