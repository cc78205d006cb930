"""Real HTTP/2 clients (httpx, curl, nghttp) against the demo app over h2c."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from pathlib import Path

import httpx
from h2.settings import SettingCodes

from tests.integration.h2client import H2Client
from tests.integration.support import (
    h2c_async_client,
    h2c_client,
    header,
    nghttp_rows,
    run_tool,
)
from tests.server_process import ServerProcess, running_server

# -- httpx -----------------------------------------------------------------------------------------


def test_httpx_get(server: ServerProcess) -> None:
    with h2c_client(server) as client:
        response = client.get("/")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.text == "hello world"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == "11"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", response.headers["date"])


def test_httpx_head_has_get_headers_and_no_body(server: ServerProcess) -> None:
    with h2c_client(server) as client:
        head = client.head("/")
        big_head = client.head("/big?size=5000")
    assert head.http_version == "HTTP/2"
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "11"
    assert head.headers["content-type"] == "text/plain"
    assert big_head.status_code == 200
    assert big_head.content == b""
    assert big_head.headers["content-length"] == "5000"


def test_httpx_post_echo(server: ServerProcess) -> None:
    body = os.urandom(300_000)  # larger than the server's 256 KiB stream window
    with h2c_client(server) as client:
        response = client.post("/echo", content=body)
        empty = client.post("/echo", content=b"")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == body
    assert empty.status_code == 200
    assert empty.content == b""


def test_httpx_post_echo_streamed_request_body(server: ServerProcess) -> None:
    parts = [f"part {index:04d};".encode() * 100 for index in range(50)]
    with h2c_client(server) as client:
        response = client.post("/echo", content=iter(parts))
    assert response.status_code == 200
    assert response.content == b"".join(parts)


def test_httpx_post_upload_answers_the_size_read(server: ServerProcess) -> None:
    parts = [b"u" * 100_000] * 5  # over the 256 KiB stream window: read as it arrives
    with h2c_client(server) as client:
        response = client.post("/upload", content=iter(parts))
        empty = client.post("/upload", content=b"")
    assert (response.status_code, response.text) == (200, "500000")
    assert (empty.status_code, empty.text) == (200, "0")


def test_httpx_stream_and_big(server: ServerProcess) -> None:
    with h2c_client(server) as client:
        stream = client.get("/stream", params={"chunks": 7, "size": 1000})
        big = client.get("/big", params={"size": 200_000})
        default_big = client.get("/big")
    assert stream.status_code == 200
    assert stream.content == b"s" * 7000
    assert big.status_code == 200
    assert big.headers["content-length"] == "200000"
    assert big.content == b"x" * 200_000
    assert len(default_big.content) == 1024 * 1024


def test_httpx_trailers_route_body(server: ServerProcess) -> None:
    # httpx does not expose trailers; the body must still arrive whole (nghttp checks trailers).
    with h2c_client(server) as client:
        response = client.get("/trailers")
    assert response.status_code == 200
    assert response.text == "body with trailers"
    assert response.headers["trailer"] == "x-checksum"


def test_httpx_error_statuses(server: ServerProcess) -> None:
    with h2c_client(server) as client:
        missing = client.get("/no/such/route")
        bad_query = client.get("/big", params={"size": "lots"})
        out_of_range = client.get("/slow", params={"ms": "-5"})
        wrong_method = client.post("/", content=b"x")
    assert missing.http_version == "HTTP/2"
    assert missing.status_code == 404
    assert missing.text == "not found"
    assert bad_query.status_code == 400
    assert bad_query.text == "size must be an integer"
    assert out_of_range.status_code == 400
    assert wrong_method.status_code == 405


def test_httpx_many_concurrent_requests_one_connection(server: ServerProcess) -> None:
    """300 mixed requests at once through one connection (more than max_concurrent_streams)."""

    async def main() -> list[tuple[int, int, bytes]]:
        limits = httpx.Limits(max_connections=1)
        async with h2c_async_client(server, limits=limits) as client:

            async def one(index: int) -> tuple[int, int, bytes]:
                if index % 3 == 0:
                    response = await client.get("/big", params={"size": index * 10})
                elif index % 3 == 1:
                    response = await client.post("/echo", content=str(index).encode() * 50)
                else:
                    response = await client.get("/")
                assert response.http_version == "HTTP/2"
                return index, response.status_code, response.content

            return await asyncio.gather(*(one(index) for index in range(300)))

    results = asyncio.run(main())
    assert len(results) == 300
    for index, status, body in results:
        assert status == 200, index
        if index % 3 == 0:
            assert body == b"x" * (index * 10)
        elif index % 3 == 1:
            assert body == str(index).encode() * 50
        else:
            assert body == b"hello world"


def test_streams_are_served_concurrently_on_one_connection(server: ServerProcess) -> None:
    """50 requests of 300 ms each on one connection finish together, not one after another."""
    with H2Client(server.host, server.port) as client:
        started = time.monotonic()
        stream_ids = [client.request("GET", "/slow?ms=300") for _ in range(50)]
        responses = [client.response(stream_id, timeout=15) for stream_id in stream_ids]
        elapsed = time.monotonic() - started
    assert [response.status for response in responses] == [200] * 50
    assert all(bytes(response.data) == b"slow response" for response in responses)
    assert elapsed < 5.0, f"50 x 300 ms took {elapsed:.1f}s: streams were not concurrent"


def test_trailers_over_raw_h2(server: ServerProcess) -> None:
    with H2Client(server.host, server.port) as client:
        response = client.get("/trailers")
    assert response.status == 200
    assert bytes(response.data) == b"body with trailers"
    assert response.trailers == [(b"x-checksum", b"demo-123")]
    assert header(response.headers, b"trailer") == b"x-checksum"


def test_default_settings_in_the_server_preface(server: ServerProcess) -> None:
    with H2Client(server.host, server.port) as client:
        client.ping()
        settings = client.remote_settings
        connection_credit = client.connection_window_credit
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 262_144
    assert settings[SettingCodes.MAX_FRAME_SIZE] == 16_384
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 65_536
    assert settings[SettingCodes.ENABLE_PUSH] == 0
    # The connection window is opened to 1 MiB right after SETTINGS.
    assert connection_credit == 1_048_576 - 65_535


def test_head_of_a_route_with_trailers() -> None:
    """HEAD /trailers: headers only, no trailers, and no error for the app's trailers message.

    The demo app sends body then trailers, as it should for GET; for HEAD the server drops both,
    and must not fail the app's (valid) http.response.trailers send with an exception.
    """
    with running_server("--access-log") as logged:
        with H2Client(logged.host, logged.port) as client:
            response = client.response(client.request("HEAD", "/trailers"))
        assert response.status == 200
        assert bytes(response.data) == b""
        assert response.trailers is None
        assert response.ended and response.reset_code is None
        # The access line is written after the app returned and its outcome was handled.
        logged.wait_for_line(r'"HEAD /trailers HTTP/2" 200', timeout=5)
        assert "exception in ASGI application" not in logged.output, logged.output
        assert "Traceback" not in logged.output, logged.output


# -- curl ------------------------------------------------------------------------------------------

CURL = ("curl", "--silent", "--show-error", "--http2-prior-knowledge", "--max-time", "30")


def test_curl_get(server: ServerProcess) -> None:
    result = run_tool(*CURL, "-w", "\n%{http_code} %{http_version}", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    body, status_line = result.stdout.rsplit("\n", 1)
    assert body == "hello world"
    assert status_line == "200 2"


def test_curl_head(server: ServerProcess) -> None:
    result = run_tool(*CURL, "-I", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "HTTP/2 200"
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    assert headers["content-length"] == "11"
    assert headers["content-type"] == "text/plain"
    assert "date" in headers


def test_curl_post_echo_and_errors(server: ServerProcess, tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(700_000))
    echoed = tmp_path / "echoed.bin"
    result = run_tool(
        *CURL, "--data-binary", f"@{upload}", "-o", str(echoed), "-w", "%{http_code}",
        f"{server.url}/echo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "200"
    assert echoed.read_bytes() == upload.read_bytes()

    for path, expected in (("/missing", "404"), ("/big?size=oops", "400")):
        result = run_tool(*CURL, "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}{path}")
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected, path


# -- nghttp ----------------------------------------------------------------------------------------


def test_nghttp_statistics(server: ServerProcess) -> None:
    base = server.url
    paths = ["/", "/big?size=1000", "/stream?chunks=3&size=100", "/missing"]
    result = run_tool("nghttp", "-n", "-s", *(f"{base}{path}" for path in paths))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = sorted(nghttp_rows(result.stdout), key=lambda row: row[2])
    assert rows == [
        (200, "11", "/"),
        (200, "1000", "/big?size=1000"),
        (404, "9", "/missing"),
        (200, "300", "/stream?chunks=3&size=100"),
    ], result.stdout


def test_nghttp_multiplexed_repeats(server: ServerProcess) -> None:
    result = run_tool("nghttp", "-n", "-s", "-m", "40", f"{server.url}/big?size=1000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert nghttp_rows(result.stdout) == [(200, "1000", "/big?size=1000")] * 40


def test_nghttp_body_bytes(server: ServerProcess, tmp_path: Path) -> None:
    result = run_tool("nghttp", f"{server.url}/big?size=3000000", text=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"x" * 3_000_000

    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(1_500_000))
    result = run_tool("nghttp", "-d", str(upload), f"{server.url}/echo", text=False)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(upload.read_bytes()).digest()


def test_nghttp_verbose_trailers(server: ServerProcess) -> None:
    result = run_tool("nghttp", "-v", f"{server.url}/trailers")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", output), output
    assert "body with trailers" in output
    trailer = re.search(r"recv \(stream_id=\d+\) x-checksum: demo-123", output)
    assert trailer, output
    data_frame = re.search(r"recv DATA frame <length=18, flags=0x00, stream_id=\d+>", output)
    assert data_frame and data_frame.start() < trailer.start(), output
    # The trailer block is the last HEADERS frame and ends the stream.
    trailer_frame = re.search(
        r"recv HEADERS frame <length=\d+, flags=0x05, stream_id=\d+>\s+; END_STREAM \| END_HEADERS",
        output[trailer.start() :],
    )
    assert trailer_frame, output
