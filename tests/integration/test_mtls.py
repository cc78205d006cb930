"""Client certificates (--ca-certs, --verify-client) and the ASGI `tls` extension, on both TLS
back-ends, with certificates made for this module: a client CA with an intermediate, a client
certificate under it, an expired one, and one from a CA the server does not trust."""

from __future__ import annotations

import contextlib
import datetime
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from websockets.sync.client import connect

from tests.conftest import TLSFiles
from tests.integration.support import REPO_ROOT, run_osmium, run_tool
from tests.server_process import ServerProcess, running_server

pytest.importorskip("OpenSSL")

ASGI_APPS = "tests.integration.apps.asgi_apps:app"
WEBSOCKET_APPS = "tests.integration.apps.websocket_apps:app"
BACKENDS = ("stdlib", "pyopenssl")
ERROR_PREFIX = "osmium: error:"
TLS13_SUITES = {0x1301, 0x1302, 0x1303}


@dataclass(frozen=True)
class ClientFiles:
    """A certificate, its key and the chain it sends (leaf first), as PEM files."""

    chain: Path
    key: Path
    leaf_pem: str
    intermediate_pem: str | None


@dataclass(frozen=True)
class Certificates:
    client_ca: Path
    good: ClientFiles
    expired: ClientFiles
    stranger: ClientFiles


def write_client(directory: Path, name: str, leaf: trustme.LeafCert) -> ClientFiles:
    chain, key = directory / f"{name}-chain.pem", directory / f"{name}-key.pem"
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(chain), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    pems = [blob.bytes().decode() for blob in leaf.cert_chain_pems]
    return ClientFiles(chain, key, pems[0], pems[1] if len(pems) > 1 else None)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("mtls")
    root = trustme.CA(organization_name="osmium client CA")
    intermediate = root.create_child_ca()
    good = intermediate.issue_cert(
        "client@example.org", common_name='alice, "admin"', organization_unit_name="ops+dev"
    )
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = root.issue_cert(
        "late@example.org", not_before=past, not_after=past + datetime.timedelta(days=1)
    )
    stranger = trustme.CA().issue_cert("mallory@example.org")
    client_ca = directory / "client-ca.pem"
    root.cert_pem.write_to_path(str(client_ca))
    return Certificates(
        client_ca=client_ca,
        good=write_client(directory, "good", good),
        expired=write_client(directory, "expired", expired),
        stranger=write_client(directory, "stranger", stranger),
    )


@pytest.fixture(scope="module")
def servers(tls_files: TLSFiles, certificates: Certificates) -> Iterator:  # type: ignore[type-arg]
    """One server per (back-end, --verify-client), started when a test first asks for it."""
    started: dict[tuple[str, str], ServerProcess] = {}
    with contextlib.ExitStack() as stack:

        def server(backend: str, verify: str) -> ServerProcess:
            if (backend, verify) not in started:
                args = (
                    "--certfile", str(tls_files.certfile),
                    "--keyfile", str(tls_files.keyfile),
                    "--tls-backend", backend,
                    "--ca-certs", str(certificates.client_ca),
                    "--verify-client", verify,
                )  # fmt: skip
                started[backend, verify] = stack.enter_context(running_server(*args, app=ASGI_APPS))
            return started[backend, verify]

        yield server


def client_context(tls_files: TLSFiles, client: ClientFiles | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    if client is not None:
        context.load_cert_chain(str(client.chain), str(client.key))
    return context


def scope_tls(
    server: ServerProcess, tls_files: TLSFiles, client: ClientFiles | None, http2: bool = True
) -> dict | None:  # type: ignore[type-arg]
    """The `tls` extension the app saw for one request (None if it had none)."""
    context = client_context(tls_files, client)
    with httpx.Client(verify=context, http2=http2, timeout=10) as http:
        response = http.get(f"https://127.0.0.1:{server.port}/scope")
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    return response.json()["tls"]  # type: ignore[no-any-return]


def same_certificate(first: str, second: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(first) == ssl.PEM_cert_to_DER_cert(second)


def subject_name(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def refused(server: ServerProcess, tls_files: TLSFiles, client: ClientFiles | None) -> bool:
    """The handshake (or the first read after it, in TLS 1.3) fails: no response at all."""
    try:
        scope_tls(server, tls_files, client)
    except (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        return True
    return False


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http1.1"])
def test_a_verified_client_is_named_in_the_scope(
    servers, tls_files: TLSFiles, certificates: Certificates, backend: str, http2: bool
) -> None:  # type: ignore[no-untyped-def]
    tls = scope_tls(servers(backend, "required"), tls_files, certificates.good, http2)
    assert tls is not None
    good = certificates.good
    chain = tls["client_cert_chain"]
    assert same_certificate(chain[0], good.leaf_pem)
    if backend == "pyopenssl":  # the stdlib gives only the leaf before Python 3.13
        assert good.intermediate_pem is not None and len(chain) == 2
        assert same_certificate(chain[1], good.intermediate_pem)
    assert tls["client_cert_name"] == subject_name(good.leaf_pem)
    assert '\\"admin\\"' in tls["client_cert_name"] and "ops\\+dev" in tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in TLS13_SUITES
    server_pem = tls_files.certfile.read_text()
    assert tls["server_cert"] is not None and same_certificate(tls["server_cert"], server_pem)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("client", ["none", "expired", "stranger"])
def test_required_refuses_a_client_without_a_valid_certificate(
    servers, tls_files: TLSFiles, certificates: Certificates, backend: str, client: str
) -> None:  # type: ignore[no-untyped-def]
    files = None if client == "none" else getattr(certificates, client)
    server = servers(backend, "required")
    assert refused(server, tls_files, files)
    assert scope_tls(server, tls_files, certificates.good) is not None  # still serving


@pytest.mark.parametrize("backend", BACKENDS)
def test_optional_serves_a_client_without_a_certificate(
    servers, tls_files: TLSFiles, backend: str
) -> None:  # type: ignore[no-untyped-def]
    tls = scope_tls(servers(backend, "optional"), tls_files, None)
    assert tls is not None
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None and tls["client_cert_error"] is None


@pytest.mark.parametrize(
    ("client", "error"),
    [("stranger", "unable to get local issuer certificate"), ("expired", "has expired")],
)
def test_optional_on_pyopenssl_passes_a_failed_certificate_to_the_app_with_why(
    servers, tls_files: TLSFiles, certificates: Certificates, client: str, error: str
) -> None:  # type: ignore[no-untyped-def]
    files: ClientFiles = getattr(certificates, client)
    tls = scope_tls(servers("pyopenssl", "optional"), tls_files, files)
    assert tls is not None
    assert error in tls["client_cert_error"]
    assert same_certificate(tls["client_cert_chain"][0], files.leaf_pem)
    assert tls["client_cert_name"] == subject_name(files.leaf_pem)


def test_optional_on_stdlib_refuses_a_certificate_that_does_not_verify(
    servers, tls_files: TLSFiles, certificates: Certificates
) -> None:  # type: ignore[no-untyped-def]
    """ssl has no verify callback: a certificate that fails verification fails the handshake."""
    assert refused(servers("stdlib", "optional"), tls_files, certificates.stranger)


@pytest.mark.parametrize("backend", BACKENDS)
def test_none_asks_for_no_certificate_but_still_reports_tls(
    servers, tls_files: TLSFiles, certificates: Certificates, backend: str
) -> None:  # type: ignore[no-untyped-def]
    tls = scope_tls(servers(backend, "none"), tls_files, certificates.good)
    assert tls is not None
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["tls_version"] == 0x0304 and tls["cipher_suite"] in TLS13_SUITES


def test_tls12_reports_its_version_and_cipher_suite(
    servers, tls_files: TLSFiles, certificates: Certificates
) -> None:  # type: ignore[no-untyped-def]
    context = client_context(tls_files, certificates.good)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM")
    with httpx.Client(verify=context, http2=True, timeout=10) as http:
        response = http.get(f"https://127.0.0.1:{servers('stdlib', 'required').port}/scope")
    tls = response.json()["tls"]
    assert tls["tls_version"] == 0x0303
    # ECDHE-ECDSA-AES128/256-GCM (trustme keys are ECDSA): 0xC02B or 0xC02C.
    assert tls["cipher_suite"] in {0xC02B, 0xC02C}


def test_a_websocket_over_tls_carries_the_extension(
    tls_files: TLSFiles, certificates: Certificates
) -> None:
    args = (
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile),
        "--ca-certs", str(certificates.client_ca), "--verify-client", "required",
    )  # fmt: skip
    with running_server(*args, app=WEBSOCKET_APPS) as server:
        url = f"wss://127.0.0.1:{server.port}/scope"
        context = client_context(tls_files, certificates.good)
        with connect(url, ssl=context, open_timeout=10) as websocket:
            shown = json.loads(websocket.recv(timeout=10))
    assert shown["scheme"] == "wss"
    assert shown["tls"]["client_cert_name"] == subject_name(certificates.good.leaf_pem)
    assert shown["tls"]["tls_version"] == 0x0304


def test_a_cleartext_request_has_no_tls_extension() -> None:
    with running_server(app=ASGI_APPS) as server, httpx.Client(timeout=10) as http:
        response = http.get(f"{server.url}/scope")
    assert response.json()["tls"] is None
    assert "tls" not in response.json()["extensions"]


def test_curl_with_a_client_certificate(
    servers, tls_files: TLSFiles, certificates: Certificates
) -> None:  # type: ignore[no-untyped-def]
    server = servers("stdlib", "required")
    result = run_tool(
        "curl", "--silent", "--show-error", "--max-time", "10", "--http2",
        "--cacert", str(tls_files.ca),
        "--cert", str(certificates.good.chain), "--key", str(certificates.good.key),
        f"https://127.0.0.1:{server.port}/scope",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tls = json.loads(result.stdout)["tls"]
    assert tls["client_cert_name"] == subject_name(certificates.good.leaf_pem)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--verify-client", "required"), "--verify-client required needs --ca-certs"),
        (("--ca-certs", "/nonexistent/ca.pem"), "cannot load CA certificates /nonexistent/ca.pem"),
    ],
)
def test_bad_client_certificate_settings_are_one_line_errors(
    tls_files: TLSFiles, args: tuple[str, ...], message: str
) -> None:
    result = run_osmium(
        "serve", "--bind", "127.0.0.1:0",
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile), *args,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX) and message in lines[0], lines


def test_client_certificates_without_tls_are_refused() -> None:
    result = run_osmium("serve", "--bind", "127.0.0.1:0", "--ca-certs", str(REPO_ROOT))
    assert result.returncode == 2
    assert "--ca-certs needs --certfile and --keyfile" in result.stderr


def test_the_pyopenssl_backend_without_pyopenssl_names_the_extra(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    """As if pyOpenSSL were not installed: its import fails the way a missing package does."""
    (tmp_path / "OpenSSL.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'OpenSSL'\", name='OpenSSL')\n"
    )
    result = run_osmium(
        "serve", "--bind", "127.0.0.1:0", "--tls-backend", "pyopenssl",
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile),
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'osmium[pyopenssl]'" in result.stderr
    assert "needs OpenSSL" in result.stderr
