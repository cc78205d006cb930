"""bare-h2, the Python ceiling the benchmark compares osmium with: HTTP/2 over h2c and TLS,
hello world, 1 MiB within flow control, request bodies, h2load at full tilt, a clean stop."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.bare_h2 import HELLO
from loadtest.launcher import LaunchedServer, TLSFiles, bare_h2, resolved_loop
from tests.conftest import TLSFiles as CertificateFiles
from tests.integration.support import REPO_ROOT, assert_all_succeeded, h2load, wait_until

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def cleartext(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedServer]:
    """bare-h2 on the stdlib loop, h2c with prior knowledge, for the whole module."""
    log = tmp_path_factory.mktemp("bare-h2") / "bare-h2.log"
    with LaunchedServer(bare_h2(loop="asyncio"), log) as server:
        yield server
    assert server.exit_code == 0


def h2_client(**kwargs: object) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_every_request_gets_hello_world_over_h2c(cleartext: LaunchedServer) -> None:
    with h2_client() as client:
        response = client.get(cleartext.url + "/anything?at=all")
    assert (response.http_version, response.status_code) == ("HTTP/2", 200)
    assert response.content == HELLO
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == str(len(HELLO))


def test_a_mebibyte_arrives_whole_within_the_clients_window(cleartext: LaunchedServer) -> None:
    """httpx opens 64 KiB stream windows: the body goes out as WINDOW_UPDATEs allow."""
    with h2_client() as client:
        response = client.get(cleartext.url + f"/big?size={MIB}")
    assert response.status_code == 200
    assert response.content == b"x" * MIB  # the bytes osmium's demo app sends on /big
    assert response.headers["content-length"] == str(MIB)


def test_a_bad_size_is_a_400(cleartext: LaunchedServer) -> None:
    with h2_client() as client:
        assert client.get(cleartext.url + "/big?size=lots").status_code == 400


def test_a_request_body_is_read_before_the_answer(cleartext: LaunchedServer) -> None:
    """Larger than the 64 KiB initial window: it only arrives if every DATA is acknowledged."""
    with h2_client() as client:
        response = client.post(cleartext.url + "/echo", content=b"b" * (300 * 1024))
    assert (response.status_code, response.content) == (200, HELLO)


def test_h2load_at_full_tilt_fails_nothing(cleartext: LaunchedServer) -> None:
    result = h2load("-n", "2000", "-c", "4", "-m", "10", cleartext.url + "/")
    assert_all_succeeded(result, 2000)


def test_tls_with_alpn_h2_on_the_runs_loop(tmp_path: Path, tls_files: CertificateFiles) -> None:
    loop = resolved_loop(None)
    tls = TLSFiles(str(tls_files.certfile), str(tls_files.keyfile))
    with (
        LaunchedServer(bare_h2(loop=loop), tmp_path / "bare-h2.log", tls) as server,
        h2_client(verify=ssl.create_default_context(cafile=tls_files.ca)) as client,
    ):
        response = client.get(server.url + "/")
        big = client.get(server.url + f"/big?size={MIB}")
    assert (response.http_version, response.content) == ("HTTP/2", HELLO)
    assert big.content == b"x" * MIB
    assert server.exit_code == 0
    assert f"listening on https://127.0.0.1:{server.port} ({loop})" in server.log_path.read_text()


def test_two_workers_serve_one_port_and_stop_together(tmp_path: Path) -> None:
    with LaunchedServer(bare_h2(2, loop="asyncio"), tmp_path / "bare-h2.log") as server:
        log = server.log_path
        wait_until(lambda: log.read_text().count("listening") == 2, 20, "both workers")
        result = h2load("-n", "400", "-c", "4", "-m", "4", server.url + "/")
    assert_all_succeeded(result, 400)
    assert server.exit_code == 0
    assert log.read_text().count(f"listening on http://127.0.0.1:{server.port} ") == 2
    assert log.read_text().count("bare-h2 stopped") == 2


def test_a_missing_certificate_is_one_line_and_status_2(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    completed = subprocess.run(
        [sys.executable, "-m", "loadtest.bare_h2", "--port", "0", "--certfile", missing,
         "--keyfile", missing],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr == (
        f"bare_h2: error: cannot load {missing} and {missing}: No such file or directory\n"
    )
