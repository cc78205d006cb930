"""The pyOpenSSL TLS back-end (`--tls-backend pyopenssl`): TLS over memory BIOs, same policy."""

from __future__ import annotations

import re
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import TLSFiles
from tests.integration.support import (
    assert_all_succeeded,
    h2load,
    nghttp_rows,
    run_osmium,
    run_tool,
)
from tests.server_process import ServerProcess, running_server

pytest.importorskip("OpenSSL")

BACKEND = ("--tls-backend", "pyopenssl")
CURL = ("curl", "--silent", "--show-error", "--max-time", "30")
ERROR_PREFIX = "osmium: error:"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class ExtraFiles:
    """A certificate for other.test (SNI) and the default key encrypted with PASSWORD."""

    sni_certfile: Path
    sni_keyfile: Path
    encrypted_keyfile: Path


@pytest.fixture(scope="module")
def extra_files(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> ExtraFiles:
    directory = tmp_path_factory.mktemp("pyopenssl")
    ca = trustme.CA()
    other = ca.issue_cert("other.test")
    files = ExtraFiles(
        sni_certfile=directory / "other-chain.pem",
        sni_keyfile=directory / "other-key.pem",
        encrypted_keyfile=directory / "encrypted-key.pem",
    )
    for blob in other.cert_chain_pems:
        blob.write_to_path(str(files.sni_certfile), append=True)
    other.private_key_pem.write_to_path(str(files.sni_keyfile))
    key = serialization.load_pem_private_key(tls_files.keyfile.read_bytes(), password=None)
    files.encrypted_keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    return files


def stopped_cleanly(process: ServerProcess) -> None:
    assert process.stop() == 0, process.output
    assert "Traceback" not in process.output, process.output


@pytest.fixture(scope="module")
def server(tls_files: TLSFiles, extra_files: ExtraFiles) -> Iterator[ServerProcess]:
    with running_server(
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile), *BACKEND,
        "--sni", f"other.test={extra_files.sni_certfile},{extra_files.sni_keyfile}",
    ) as process:  # fmt: skip
        assert process.scheme == "https"
        yield process
        stopped_cleanly(process)


def client_context(tls_files: TLSFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files.ca))


def handshake(
    server: ServerProcess, context: ssl.SSLContext, server_hostname: str | None = "127.0.0.1"
) -> ssl.SSLSocket:
    raw = socket.create_connection((server.host, server.port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def subject_alt_names(tls: ssl.SSLSocket) -> list[str]:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    extension = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    names = extension.value.get_values_for_type(x509.DNSName)
    addresses = extension.value.get_values_for_type(x509.IPAddress)
    return sorted([*names, *(str(address) for address in addresses)])


def assert_one_line_error(result: object, *fragments: str) -> None:
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"  # type: ignore[attr-defined]
    assert result.returncode == 2, detail  # type: ignore[attr-defined]
    assert "Traceback" not in result.stdout + result.stderr, detail  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, detail
    assert lines[0].startswith(ERROR_PREFIX), detail
    for fragment in fragments:
        assert fragment in lines[0], detail


# -- clients ---------------------------------------------------------------------------------------


def test_httpx_h2_get_and_echo(server: ServerProcess, tls_files: TLSFiles) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    with httpx.Client(http2=True, verify=client_context(tls_files), timeout=30) as client:
        hello = client.get(f"{server.url}/")
        echo = client.post(f"{server.url}/echo", content=body)
    assert hello.http_version == "HTTP/2"
    assert hello.status_code == 200 and hello.text == "hello world"
    assert echo.status_code == 200
    assert echo.content == body


@pytest.mark.parametrize(("flag", "version"), [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_alpn(server: ServerProcess, tls_files: TLSFiles, flag: str, version: str) -> None:
    result = run_tool(
        *CURL, flag, "--cacert", str(tls_files.ca), "-w", "\n%{http_code} %{http_version}",
        f"{server.url}/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello world\n200 {version}"


def test_nghttp(server: ServerProcess) -> None:
    stats = run_tool("nghttp", "-n", "-s", f"{server.url}/big?size=100000", f"{server.url}/")
    assert stats.returncode == 0, stats.stdout + stats.stderr
    rows = sorted(nghttp_rows(stats.stdout))
    assert rows == [(200, "11", "/"), (200, "97K", "/big?size=100000")], stats.stdout


def test_h2load(server: ServerProcess) -> None:
    result = h2load("-n", "2000", "-c", "4", "-m", "10", f"{server.url}/")
    assert_all_succeeded(result, 2000)
    assert re.search(r"^Application protocol: h2$", result.output, re.M), result.output


# -- ALPN, versions, SNI ---------------------------------------------------------------------------


def test_alpn_h2_and_tls12_or_later(server: ServerProcess, tls_files: TLSFiles) -> None:
    context = client_context(tls_files)
    context.set_alpn_protocols(["http/1.1", "h2"])
    with handshake(server, context) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    context = client_context(tls_files)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    with handshake(server, context) as tls:
        assert (tls.selected_alpn_protocol(), tls.version()) == ("h2", "TLSv1.2")


def test_no_common_alpn_protocol_still_connects(server: ServerProcess, tls_files: TLSFiles) -> None:
    context = client_context(tls_files)
    context.set_alpn_protocols(["spdy/3"])
    with handshake(server, context) as tls:
        assert tls.selected_alpn_protocol() is None


def test_tls11_client_is_refused(server: ServerProcess, tls_files: TLSFiles) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        handshake(server, old).close()
    # The failed handshake cost that connection only.
    context = client_context(tls_files)
    context.set_alpn_protocols(["h2"])
    with handshake(server, context) as tls:
        assert tls.selected_alpn_protocol() == "h2"


def test_sni_chooses_certificate(
    server: ServerProcess, tls_files: TLSFiles, extra_files: ExtraFiles
) -> None:
    anything = ssl.create_default_context()
    anything.check_hostname = False
    anything.verify_mode = ssl.CERT_NONE
    with handshake(server, anything, "other.test") as tls:
        assert subject_alt_names(tls) == ["other.test"]
    with handshake(server, anything, "OTHER.test") as tls:
        assert subject_alt_names(tls) == ["other.test"]
    with handshake(server, client_context(tls_files), "127.0.0.1") as tls:
        assert subject_alt_names(tls) == ["127.0.0.1", "localhost"]
    with handshake(server, anything, "unknown.test") as tls:
        assert subject_alt_names(tls) == ["127.0.0.1", "localhost"]
    with handshake(server, anything, None) as tls:
        assert subject_alt_names(tls) == ["127.0.0.1", "localhost"]


def test_garbage_instead_of_handshake_is_dropped_quietly(server: ServerProcess) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while raw.recv(4096):  # an alert perhaps, then EOF: the server closed the connection
            pass
    assert "Traceback" not in server.output, server.output


# -- configuration ---------------------------------------------------------------------------------


def test_encrypted_key_with_password(tls_files: TLSFiles, extra_files: ExtraFiles) -> None:
    with running_server(
        "--certfile", str(tls_files.certfile), "--keyfile", str(extra_files.encrypted_keyfile),
        "--keyfile-password", PASSWORD, *BACKEND,
    ) as process:  # fmt: skip
        with httpx.Client(http2=True, verify=client_context(tls_files), timeout=30) as client:
            response = client.get(f"{process.url}/")
        assert response.http_version == "HTTP/2" and response.text == "hello world"
        stopped_cleanly(process)


def serve(*args: str) -> object:
    return run_osmium("serve", "--bind", "127.0.0.1:0", *args)


def test_encrypted_key_without_password(tls_files: TLSFiles, extra_files: ExtraFiles) -> None:
    result = serve(
        "--certfile", str(tls_files.certfile), "--keyfile", str(extra_files.encrypted_keyfile),
        *BACKEND,
    )  # fmt: skip
    assert_one_line_error(result, str(extra_files.encrypted_keyfile), "password")


def test_encrypted_key_with_wrong_password(tls_files: TLSFiles, extra_files: ExtraFiles) -> None:
    result = serve(
        "--certfile", str(tls_files.certfile), "--keyfile", str(extra_files.encrypted_keyfile),
        "--keyfile-password", "wrong", *BACKEND,
    )  # fmt: skip
    assert_one_line_error(result, str(extra_files.encrypted_keyfile), "password")


def test_key_not_matching_certificate(tls_files: TLSFiles) -> None:
    result = serve(
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.other_keyfile), *BACKEND
    )
    assert_one_line_error(result, str(tls_files.certfile))


def test_missing_certfile(tls_files: TLSFiles, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = serve("--certfile", str(missing), "--keyfile", str(tls_files.keyfile), *BACKEND)
    assert_one_line_error(result, str(missing))


def test_unknown_backend(tls_files: TLSFiles) -> None:
    result = serve(
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile),
        "--tls-backend", "nosuch.module:Cls",
    )  # fmt: skip
    assert_one_line_error(result, "nosuch.module:Cls")
