"""h2c Upgrade (RFC 7540 §3.2) on the cleartext port: 101, then HTTP/2 with the answer on stream 1.

A raw socket does the HTTP/1.1 half and `h2` the HTTP/2 half, so every byte is ours to check;
nghttp -u and curl --http2 show that real clients get there too, and that prior knowledge and
plain HTTP/1.1 keep working on the same port.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest

from tests.conftest import TLSFiles
from tests.integration.apps.http1_raw import RawConnection, RawResponse, assert_serving
from tests.integration.h2client import request_headers
from tests.integration.support import h2c_client, nghttp_rows, run_tool
from tests.server_process import ServerProcess, running_server

APPS = "tests.integration.apps.asgi_apps"
CURL = ("curl", "--silent", "--show-error", "--max-time", "30")
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def tls_server(tls_files: TLSFiles) -> Iterator[ServerProcess]:
    with running_server(
        "--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile)
    ) as process:
        yield process


@pytest.fixture(scope="module")
def scope_server() -> Iterator[ServerProcess]:
    with running_server(app=f"{APPS}:app") as process:
        yield process


@dataclass
class Stream:
    headers: list[tuple[bytes, bytes]] | None = None
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset_code: int | None = None

    @property
    def status(self) -> int:
        assert self.headers is not None, "no response headers"
        return int(dict(self.headers)[b":status"])


class UpgradeClient:
    """HTTP/1.1 request with Upgrade: h2c on a raw socket, then HTTP/2 over the same socket."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.authority = f"{server.host}:{server.port}"
        self.raw = RawConnection.open(server.host, server.port, TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        #: The base64url SETTINGS payload h2 made for the HTTP2-Settings field.
        self.settings = self.h2.initiate_upgrade_connection().decode()
        self.streams: dict[int, Stream] = {1: Stream()}
        #: The first frame header the server sent after its 101.
        self.first_frame_header = b""

    def __enter__(self) -> UpgradeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.raw.close()

    def upgrade_request(
        self,
        method: str = "GET",
        target: str = "/",
        body: bytes | None = None,
        *,
        settings: str | None = None,
        extra: list[str] | None = None,
        upgrade: str = "h2c",
        connection: str = "Upgrade, HTTP2-Settings",
    ) -> bytes:
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {self.authority}",
            f"Connection: {connection}",
            f"Upgrade: {upgrade}",
        ]
        if settings != "":  # "" leaves the field out
            lines.append(f"HTTP2-Settings: {self.settings if settings is None else settings}")
        lines += extra or []
        if body is not None and not any(
            line.lower().startswith("transfer-encoding") for line in lines
        ):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    def switch(self) -> RawResponse:
        """Read the 101, send our connection preface, and hand what followed it to h2."""
        head = self.raw.read_head()
        assert head.status == 101, f"expected 101, got {head}\n{self.server.output[-3000:]}"
        self.raw.send(self.h2.data_to_send())
        self._receive(self.raw.take_buffer())
        return head

    def request(self, method: str, path: str, body: bytes = b"") -> int:
        stream_id = self.h2.get_next_available_stream_id()
        headers = request_headers(method, path, self.authority)
        self.streams[stream_id] = Stream()
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        self.raw.send(self.h2.data_to_send())
        return stream_id

    def response(self, stream_id: int) -> Stream:
        stream = self.streams[stream_id]
        deadline = time.monotonic() + TIMEOUT
        while not (stream.ended or stream.reset_code is not None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"stream {stream_id} did not end; got {stream}")
            self.raw.sock.settimeout(remaining)
            try:
                data = self.raw.sock.recv(256 * 1024)
            except TimeoutError:
                raise TimeoutError(f"stream {stream_id} did not end; got {stream}") from None
            assert data, f"connection closed before stream {stream_id} ended; got {stream}"
            self._receive(data)
        return stream

    def _receive(self, data: bytes) -> None:
        if not data:
            return
        if len(self.first_frame_header) < 9:
            self.first_frame_header += data[: 9 - len(self.first_frame_header)]
        for event in self.h2.receive_data(data):
            stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.ResponseReceived):
                assert stream is not None
                stream.headers = list(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                assert stream is not None
                stream.data += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                assert stream is not None
                stream.ended = True
            elif isinstance(event, h2.events.StreamReset) and stream is not None:
                stream.reset_code = int(event.error_code)
        if outgoing := self.h2.data_to_send():
            self.raw.send(outgoing)


# -- raw upgrade -----------------------------------------------------------------------------------


def test_upgrade_get_then_second_request_on_stream_3(server: ServerProcess) -> None:
    with UpgradeClient(server) as client:
        client.raw.send(client.upgrade_request("GET", "/"))
        head = client.switch()
        assert head.version == b"HTTP/1.1"
        assert head.tokens(b"upgrade") == {b"h2c"}, head.headers
        assert b"upgrade" in head.tokens(b"connection"), head.headers
        first = client.response(1)
        # §3.5: the server's connection preface (a SETTINGS frame) is the first thing after 101.
        header = client.first_frame_header
        frame_type, flags, stream = header[3], header[4], int.from_bytes(header[5:9])
        assert (frame_type, flags & 0x1, stream) == (0x4, 0, 0), header
        assert first.status == 200
        assert bytes(first.data) == b"hello world"
        stream_id = client.request("GET", "/")
        assert stream_id == 3
        second = client.response(3)
        assert (second.status, bytes(second.data)) == (200, b"hello world")
        post = client.response(client.request("POST", "/echo", b"after the upgrade"))
        assert (post.status, bytes(post.data)) == (200, b"after the upgrade")


def test_upgraded_request_scope_is_http2(scope_server: ServerProcess) -> None:
    with UpgradeClient(scope_server) as client:
        client.raw.send(client.upgrade_request("GET", "/scope?via=upgrade"))
        client.switch()
        stream = client.response(1)
        assert stream.status == 200
        scope = json.loads(bytes(stream.data))
        assert scope["http_version"] == "2"
        assert scope["scheme"] == "http"
        assert (scope["method"], scope["path"], scope["query_string"]) == (
            "GET",
            "/scope",
            "via=upgrade",
        )
        again = json.loads(bytes(client.response(client.request("GET", "/scope")).data))
        assert again["http_version"] == "2"
        assert again["client"] == scope["client"] == ["127.0.0.1", client.raw.local_port]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upgrade_with_body_echoes_it(server: ServerProcess, framing: str) -> None:
    body = bytes(range(256)) * 400  # 100 KiB: more than one HTTP/2 window's worth of DATA
    with UpgradeClient(server) as client:
        if framing == "content-length":
            request = client.upgrade_request("POST", "/echo", body)
        else:
            chunked = b"".join(
                b"%x\r\n%s\r\n" % (len(part), part)
                for part in (body[:1000], body[1000:60000], body[60000:])
            )
            request = client.upgrade_request(
                "POST", "/echo", chunked + b"0\r\n\r\n", extra=["Transfer-Encoding: chunked"]
            )
        client.raw.send(request)
        client.switch()
        stream = client.response(1)
        assert stream.status == 200
        assert bytes(stream.data) == body


def test_upgrade_to_scope_with_body(scope_server: ServerProcess) -> None:
    with UpgradeClient(scope_server) as client:
        client.raw.send(client.upgrade_request("POST", "/scope", b"upgrade body"))
        client.switch()
        scope = json.loads(bytes(client.response(1).data))
    assert (scope["http_version"], scope["method"], scope["body"]) == ("2", "POST", "upgrade body")


def _base64url(payload: bytes) -> str:
    """RFC 7540 §3.2.1: base64url with the trailing '=' left out."""
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


INVALID_SETTINGS = {
    "not-base64url": "!!!not*base64url!!!",
    # 10 and 4 bytes: not a whole number of 6-byte settings.
    "length-10": _base64url(b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x00"),
    "length-4": _base64url(b"\x00\x03\x00\x00"),
}


@pytest.mark.parametrize("settings", INVALID_SETTINGS.values(), ids=INVALID_SETTINGS.keys())
def test_invalid_http2_settings_is_not_upgraded(server: ServerProcess, settings: str) -> None:
    with UpgradeClient(server) as client:
        client.raw.send(client.upgrade_request("GET", "/", settings=settings))
        _assert_not_upgraded(server, client.raw)
    assert_serving(server.host, server.port, server.output)


@pytest.mark.parametrize(
    "variant",
    ["missing-http2-settings", "two-http2-settings", "upgrade-h2-on-cleartext"],
)
def test_upgrade_preconditions(server: ServerProcess, variant: str) -> None:
    """§3.2.1: exactly one HTTP2-Settings; §3.3: "h2" in Upgrade is ignored on cleartext."""
    with UpgradeClient(server) as client:
        if variant == "missing-http2-settings":
            request = client.upgrade_request(settings="")
        elif variant == "two-http2-settings":
            request = client.upgrade_request(extra=[f"HTTP2-Settings: {client.settings}"])
        else:
            request = client.upgrade_request(upgrade="h2")
        client.raw.send(request)
        _assert_not_upgraded(server, client.raw)
    assert_serving(server.host, server.port, server.output)


def _assert_not_upgraded(server: ServerProcess, connection: RawConnection) -> None:
    """An HTTP/1.1 answer (200 or 400), and a connection that is usable or closed, not stuck."""
    response = connection.read_response()
    log = server.output[-3000:]
    assert response.status != 101, log
    assert response.status in (200, 400), (response, log)
    if response.status == 200:
        assert response.body == b"hello world"
    if b"close" in response.tokens(b"connection") or response.status == 400:
        assert connection.read_to_eof() == b""
    else:
        connection.send(f"GET / HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode())
        follow = connection.read_response()
        assert (follow.version, follow.status, follow.body) == (b"HTTP/1.1", 200, b"hello world")


def test_h2c_upgrade_is_ignored_over_tls(tls_server: ServerProcess, tls_files: TLSFiles) -> None:
    """ "h2c" names HTTP/2 over cleartext TCP: on a TLS http/1.1 connection it is not taken up."""
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    context.set_alpn_protocols(["http/1.1"])
    with RawConnection.open_tls(tls_server.host, tls_server.port, context) as tls:
        settings = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64").decode()
        tls.send(
            f"GET / HTTP/1.1\r\nHost: {tls_server.host}:{tls_server.port}\r\n"
            f"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            f"HTTP2-Settings: {settings}\r\n\r\n".encode()
        )
        response = tls.read_response()
        assert (response.version, response.status) == (b"HTTP/1.1", 200), response
        assert response.body == b"hello world"
        tls.send(f"GET / HTTP/1.1\r\nHost: {tls_server.host}\r\n\r\n".encode())
        assert tls.read_response().body == b"hello world"


# -- real clients ----------------------------------------------------------------------------------


def test_nghttp_upgrade(server: ServerProcess) -> None:
    result = run_tool("nghttp", "-u", "-v", f"{server.url}/", timeout=30)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "HTTP Upgrade request" in out, out
    assert "HTTP Upgrade response" in out, out
    assert "HTTP/1.1 101" in out, out
    assert "HTTP Upgrade success" in out, out
    assert "recv (stream_id=1) :status: 200" in out, out
    assert "hello world" in out, out


def test_nghttp_upgrade_then_more_streams(server: ServerProcess) -> None:
    # -u upgrades with the first URI; the others go out as ordinary HTTP/2 streams after it.
    paths = ["/", "/big?size=100000", "/missing"]
    result = run_tool(
        "nghttp", "-u", "-n", "-s", *(f"{server.url}{path}" for path in paths), timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {(status, path) for status, _, path in nghttp_rows(result.stdout)}
    assert rows == {(200, "/"), (200, "/big?size=100000"), (404, "/missing")}, result.stdout


def test_curl_http2_upgrades(server: ServerProcess) -> None:
    result = run_tool(*CURL, "--http2", "-v", "-w", "\n%{http_version}", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    assert "Upgrade: h2c" in result.stderr, result.stderr
    assert "< HTTP/1.1 101" in result.stderr, result.stderr
    assert "< HTTP/2 200" in result.stderr, result.stderr
    assert result.stdout == "hello world\n2"


def test_curl_http1_stays_http1(server: ServerProcess) -> None:
    result = run_tool(*CURL, "--http1.1", "-v", "-w", "\n%{http_version}", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    assert "< HTTP/1.1 200" in result.stderr, result.stderr
    assert "< HTTP/1.1 101" not in result.stderr, result.stderr
    assert result.stdout == "hello world\n1.1"


def test_curl_prior_knowledge_still_works(server: ServerProcess) -> None:
    result = run_tool(
        *CURL, "--http2-prior-knowledge", "-v", "-w", "\n%{http_version}", f"{server.url}/"
    )
    assert result.returncode == 0, result.stderr
    assert "Upgrade" not in result.stderr, result.stderr
    assert "< HTTP/2 200" in result.stderr, result.stderr
    assert result.stdout == "hello world\n2"


def test_httpx_prior_knowledge_still_works(server: ServerProcess) -> None:
    with h2c_client(server) as client:
        response = client.get("/")
    assert (response.http_version, response.text) == ("HTTP/2", "hello world")


def test_server_log_has_no_traceback(server: ServerProcess) -> None:
    assert "Traceback" not in server.output, server.output[-5000:]
