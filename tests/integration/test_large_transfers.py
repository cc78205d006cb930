"""50 MiB each way, flow control on both sides, and a reader too slow for the server."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator

import pytest
from h2.settings import SettingCodes

from tests.integration.h2client import H2Client
from tests.integration.support import h2c_client, payload_chunks, run_tool
from tests.server_process import ServerProcess, running_server

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
SIZE = 50 * MIB
SERVER_STREAM_WINDOW = 256 * 1024  # osmium's default initial_window_size
SERVER_CONNECTION_WINDOW = MIB  # osmium's default connection_window_size


@pytest.fixture(scope="module")
def sink_server() -> Iterator[ServerProcess]:
    """The test ASGI app: /sha256 reads a request body as it streams in."""
    with running_server(app="tests.integration.apps.asgi_apps:app") as process:
        yield process
        assert process.stop() == 0, process.output  # a clean exit after the module


def test_echo_50_mib_full_duplex_with_flow_control(server: ServerProcess) -> None:
    """Upload 50 MiB to /echo while reading the echo; the server's 256 KiB window must be reopened.

    The client here (raw h2) reads while it sends, so both directions are flow controlled at
    once; the bytes are checked with sha256, and the server can only have accepted the upload by
    granting at least 50 MiB minus its initial windows in WINDOW_UPDATEs.
    """
    sent = hashlib.sha256()
    echoed = hashlib.sha256()
    with H2Client(
        server.host,
        server.port,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: MIB},
        connection_window=16 * MIB,
    ) as client:
        client.ping()
        assert client.remote_settings[SettingCodes.INITIAL_WINDOW_SIZE] == SERVER_STREAM_WINDOW
        stream_id = client.request(
            "POST", "/echo", end_stream=False, on_data=echoed.update, keep_data=False
        )
        for chunk in payload_chunks(SIZE, seed=50):
            sent.update(chunk)
            client.send_body(stream_id, chunk, timeout=60)
        client.send_body(stream_id, b"", end_stream=True)
        response = client.response(stream_id, timeout=60)
        connection_credit = client.connection_window_credit
    assert response.status == 200
    assert response.reset_code is None
    assert response.received == SIZE
    assert echoed.hexdigest() == sent.hexdigest()
    assert response.window_credit >= SIZE - SERVER_STREAM_WINDOW, response.window_credit
    assert connection_credit >= SIZE - 65_535, connection_credit


def test_echo_50_mib_with_curl(server: ServerProcess, tmp_path) -> None:
    upload = tmp_path / "upload.bin"
    digest = hashlib.sha256()
    with upload.open("wb") as file:
        for chunk in payload_chunks(SIZE, seed=51):
            digest.update(chunk)
            file.write(chunk)
    echoed = tmp_path / "echoed.bin"
    result = run_tool(
        "curl", "--silent", "--show-error", "--http2-prior-knowledge", "--max-time", "120",
        "--data-binary", f"@{upload}", "-H", "content-type: application/octet-stream",
        "-o", str(echoed), "-w", "%{http_code} %{http_version} %{size_upload} %{size_download}",
        f"{server.url}/echo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"200 2 {SIZE} {SIZE}"
    with echoed.open("rb") as file:
        assert hashlib.file_digest(file, "sha256").hexdigest() == digest.hexdigest()


def test_upload_50_mib_with_httpx(sink_server: ServerProcess) -> None:
    """httpx must wait for WINDOW_UPDATEs (256 KiB stream window); the app sees every byte."""
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for chunk in payload_chunks(SIZE, seed=52):
            digest.update(chunk)
            yield chunk

    with h2c_client(sink_server) as client:
        response = client.post("/sha256", content=body())
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.json() == {"length": SIZE, "sha256": digest.hexdigest()}


def test_download_50_mib_with_httpx(server: ServerProcess) -> None:
    received = 0
    with h2c_client(server) as client, client.stream("GET", f"/big?size={SIZE}") as response:
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.headers["content-length"] == str(SIZE)
        for chunk in response.iter_raw():
            assert chunk.count(b"x") == len(chunk)
            received += len(chunk)
    assert received == SIZE


class WindowLedger:
    """Counts DATA bytes as they arrive and notes any moment they exceed what we granted."""

    def __init__(self, granted: int) -> None:
        self.granted = granted
        self.received = 0
        self.violations: list[str] = []

    def on_data(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.granted:
            self.violations.append(f"received {self.received} bytes, {self.granted} granted")

    def reached(self, expected: int) -> Callable[[], bool]:
        return lambda: self.received >= expected


@pytest.mark.parametrize("window", [16_384, 0])
def test_slow_reader_stream_window(server: ServerProcess, window: int) -> None:
    """A small (or zero) stream window, acknowledged 8 KiB at a time: the server sends just that."""
    step, total = 8_192, 200_000
    ledger = WindowLedger(granted=window)
    with H2Client(
        server.host,
        server.port,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: window},
        auto_ack=False,
    ) as client:
        stream_id = client.request("GET", f"/big?size={total}", on_data=ledger.on_data)
        stream = client.streams[stream_id]
        client.wait_for(lambda: stream.headers is not None, 10, "response headers")
        client.wait_for(ledger.reached(window), 10, "the first window of data")
        assert stream.status == 200
        # The window is spent: the server must stop. Nothing more may arrive until we ack.
        client.ping()
        client.read_for(0.3)
        assert ledger.received == window
        assert not stream.done

        while ledger.granted < total:
            ledger.granted += step  # before the WINDOW_UPDATE: the answer can come while we send
            client.acknowledge(stream_id, step)
            expected = min(ledger.granted, total)
            client.wait_for(ledger.reached(expected), 10, f"{expected} bytes")
            client.ping()
            assert ledger.received == expected
        client.response(stream_id, timeout=10)
    assert ledger.violations == []
    assert stream.ended and stream.reset_code is None
    assert bytes(stream.data) == b"x" * total


def test_slow_reader_connection_window(server: ServerProcess) -> None:
    """Two streams share the default 65535-byte connection window; only connection acks open it."""
    connection_window, step, each = 65_535, 16_384, 100_000
    ledger = WindowLedger(granted=connection_window)
    with H2Client(
        server.host,
        server.port,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: 4 * MIB},
        auto_ack=False,
    ) as client:
        stream_ids = [
            client.request("GET", f"/big?size={each}", on_data=ledger.on_data) for _ in range(2)
        ]
        streams = [client.streams[stream_id] for stream_id in stream_ids]
        client.wait_for(ledger.reached(connection_window), 10, "the connection window")
        client.ping()
        client.read_for(0.3)
        assert ledger.received == connection_window
        assert not any(stream.done for stream in streams)

        while ledger.granted < 2 * each:
            ledger.granted += step
            client.open_connection_window(step)
            expected = min(ledger.granted, 2 * each)
            client.wait_for(ledger.reached(expected), 10, f"{expected} bytes")
            client.ping()
            assert ledger.received == expected
        for stream_id in stream_ids:
            client.response(stream_id, timeout=10)
    assert ledger.violations == []
    for stream in streams:
        assert stream.status == 200
        assert stream.ended and stream.reset_code is None
        assert bytes(stream.data) == b"x" * each


def test_settings_raising_the_window_resumes_a_stalled_stream(server: ServerProcess) -> None:
    """RFC 9113 §6.9.2: a larger SETTINGS_INITIAL_WINDOW_SIZE opens every stream's window."""
    window, total = 16_384, 100_000
    ledger = WindowLedger(granted=window)
    with H2Client(
        server.host,
        server.port,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: window},
        connection_window=MIB,
        auto_ack=False,
    ) as client:
        stream_id = client.request("GET", f"/big?size={total}", on_data=ledger.on_data)
        client.wait_for(ledger.reached(window), 10, "the first window of data")
        client.ping()
        assert ledger.received == window

        ledger.granted = window + total  # the new initial size adds `total` to the open stream
        client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window + total})
        client.flush()
        stream = client.response(stream_id, timeout=10)
    assert ledger.violations == []
    assert stream.ended and stream.reset_code is None
    assert bytes(stream.data) == b"x" * total


def test_reset_of_a_stream_blocked_on_flow_control(server: ServerProcess) -> None:
    """Resetting a stream the server is waiting to send on leaves the connection usable."""
    with H2Client(
        server.host,
        server.port,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: 16_384},
        auto_ack=False,
    ) as client:
        blocked = client.request("GET", f"/big?size={10 * MIB}")
        stream = client.streams[blocked]
        client.wait_for(lambda: stream.received >= 16_384, 10, "the first window of data")
        client.reset(blocked)
        # What is left of both windows (16384 per stream, 65535 - 16384 shared) fits the next two.
        follow_up = client.response(client.request("GET", "/big?size=10000"), timeout=10)
        hello = client.response(client.request("GET", "/"), timeout=10)
    assert follow_up.status == 200
    assert bytes(follow_up.data) == b"x" * 10_000
    assert bytes(hello.data) == b"hello world"


def test_client_that_stops_reading_keeps_server_memory_bounded(server: ServerProcess) -> None:
    """Windows wide open but the socket unread: the server must not buffer the whole response."""
    size = 300 * 1000 * 1000
    with H2Client(
        server.host,
        server.port,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1},
        connection_window=2**31 - 1 - 65_535,
    ) as client:
        before = server.rss_bytes()
        stream_id = client.request("GET", f"/big?size={size}", keep_data=False)
        # Not reading for a second: the server may only fill its bounded write buffer meanwhile.
        peak = before
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            peak = max(peak, server.rss_bytes())
            time.sleep(0.05)
        response = client.response(stream_id, timeout=60)
    assert response.received == size
    growth_mib = (peak - before) / 2**20
    assert growth_mib < 64, f"server grew by {growth_mib:.0f} MiB while the client did not read"
