"""TLS settings end to end: SNI certificates, encrypted keys, back-ends by dotted path, the RFC
9113 §9.2.2 cipher rule, and certificates re-read by a rolling reload."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from hyperframe.frame import Frame, GoAwayFrame

from tests.conftest import TLSFiles
from tests.integration.support import run_osmium, wait_until
from tests.server_process import ServerProcess, running_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
INADEQUATE_SECURITY = 0xC
#: Ephemeral key exchange but no AEAD: on RFC 9113's block list (trustme keys are ECDSA).
CBC_SUITE = "ECDHE-ECDSA-AES128-SHA"


def peer_names(server: ServerProcess, ca: Path, server_hostname: str) -> list[str]:
    """The DNS/IP names in the certificate the server presents for `server_hostname`."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with (
        socket.create_connection((server.host, server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        certificate = tls.getpeercert()
    return [value for _, value in certificate["subjectAltName"]]


def write_cert(directory: Path, ca: trustme.CA, *names: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(*names)
    certfile, keyfile = directory / f"{names[0]}.pem", directory / f"{names[0]}.key"
    leaf.cert_chain_pems[0].write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def test_sni_picks_the_certificate_for_the_asked_name(
    tmp_path: Path, authority: tuple[trustme.CA, Path]
) -> None:
    ca, ca_path = authority
    default = write_cert(tmp_path, ca, "127.0.0.1")
    other = write_cert(tmp_path, ca, "other.test")
    args = ("--certfile", str(default[0]), "--keyfile", str(default[1]))
    with running_server(*args, "--sni", f"other.test={other[0]},{other[1]}") as server:
        assert peer_names(server, ca_path, "other.test") == ["other.test"]
        assert peer_names(server, ca_path, "unknown.test") == ["127.0.0.1"]


def test_encrypted_key_needs_its_password(tmp_path: Path, tls_files: TLSFiles) -> None:
    key = serialization.load_pem_private_key(tls_files.keyfile.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    files = ("--certfile", str(tls_files.certfile), "--keyfile", str(encrypted))
    with running_server(*files, "--keyfile-password", "s3cret") as server:
        assert peer_names(server, tls_files.ca, "127.0.0.1") == ["127.0.0.1", "localhost"]
    missing = run_osmium("serve", "--bind", "127.0.0.1:0", *files)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"osmium: error: key {encrypted} is encrypted: give --keyfile-password"
    )
    wrong = run_osmium("serve", "--bind", "127.0.0.1:0", *files, "--keyfile-password", "nope")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert wrong.stderr.startswith(f"osmium: error: cannot load certificate {tls_files.certfile}")


def test_backend_by_dotted_path_and_unknown_backends(tls_files: TLSFiles) -> None:
    files = ("--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile))
    backend = "tests.integration.apps.tls_backend_custom:MarkedTLS"
    with running_server(*files, "--tls-backend", backend) as server:
        server.wait_for_line("custom TLS back-end loaded", timeout=5)
        assert peer_names(server, tls_files.ca, "127.0.0.1") == ["127.0.0.1", "localhost"]
    unknown = run_osmium("serve", "--bind", "127.0.0.1:0", *files, "--tls-backend", "nosuch")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("osmium: error: unknown TLS back-end 'nosuch'")


def read_frames_until_goaway(tls: ssl.SSLSocket) -> GoAwayFrame:
    data = b""
    while True:
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9 : 9 + length]))
            data = data[9 + length :]
            if isinstance(frame, GoAwayFrame):
                return frame
        chunk = tls.recv(65536)
        assert chunk, "closed without GOAWAY"
        data += chunk


def test_tls12_cipher_outside_rfc9113_gets_inadequate_security(tls_files: TLSFiles) -> None:
    """§9.2.2: with a cipher list that lets a CBC suite through, HTTP/2 still refuses it."""
    files = ("--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile))
    permissive = ("--tls-ciphers", f"ECDHE+AESGCM:{CBC_SUITE}")
    with running_server(*files, *permissive) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(tls_files.ca))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(CBC_SUITE)
        context.set_alpn_protocols(["h2"])
        with (
            socket.create_connection((server.host, server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.cipher()[0] == CBC_SUITE and tls.selected_alpn_protocol() == "h2"
            tls.sendall(PREFACE)
            assert read_frames_until_goaway(tls).error_code == INADEQUATE_SECURITY


def test_rolling_reload_reads_the_certificate_files_again(
    tmp_path: Path, authority: tuple[trustme.CA, Path]
) -> None:
    ca, ca_path = authority
    first = write_cert(tmp_path / "", ca, "127.0.0.1")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(first[0], live_cert)
    shutil.copy(first[1], live_key)
    renewed = ca.issue_cert("127.0.0.1", "renewed.test")
    with running_server("--certfile", str(live_cert), "--keyfile", str(live_key)) as server:
        assert peer_names(server, ca_path, "127.0.0.1") == ["127.0.0.1"]
        renewed.cert_chain_pems[0].write_to_path(str(live_cert))
        renewed.private_key_pem.write_to_path(str(live_key))
        server.signal(signal.SIGHUP)
        wait_until(
            lambda: peer_names(server, ca_path, "127.0.0.1") == ["127.0.0.1", "renewed.test"],
            15,
            "the renewed certificate served",
        )
