"""Response fields and request limits against a live server (README: Settings, Limits, Handler
admission): `server: osmium` and --no-server-header, --header defaults, --max-request-body-size
(413) and --limit-concurrency (503), over HTTP/1.1 and HTTP/2, with real clients and raw frames.

`app` below is the server's app in these tests; it runs in the server process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from osmium import demo
from osmium.protocol.events import ErrorCode
from tests.conformance.frames import RawClient
from tests.integration.apps import asgi_apps
from tests.integration.support import h2c_client, run_osmium, run_tool, wait_until
from tests.integration.test_cli import assert_one_line_error
from tests.server_process import ServerProcess, running_server
from tests.support.admin import AdminServer, admin_server
from tests.support.h2_websocket import H2WebSocketClient

pytestmark = pytest.mark.timeout(60)

APP = "tests.integration.test_response_settings:app"
LIMIT = 64 * 1024


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """asgi_apps' routes (lifespan, /events, /wait-disconnect, /raise-before...) and the demo's
    WebSocket echo, plus:

    /own?NAME=VALUE...  a response carrying those fields of its own
    /body?id=X          reads the body; records for /events how many bytes it saw and whether
                        `receive` ended with the whole body ("complete") or http.disconnect
    """
    if scope["type"] == "websocket":
        await demo.app(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == "/own":
        fields = [(name.encode(), value.encode()) for name, value in parse_qsl(_query(scope))]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": b"own"})
    elif scope["type"] == "http" and scope["path"] == "/body":
        seen, ended = 0, "complete"
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                ended = "disconnect"
                break
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        marker = dict(parse_qsl(_query(scope))).get("id", "?")
        asgi_apps.EVENTS.append({"id": marker, "event": ended, "bytes": seen})
        if ended == "complete":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": str(seen).encode()})
    else:
        await asgi_apps.app(scope, receive, send)


def _query(scope: dict[str, Any]) -> str:
    return scope["query_string"].decode("latin-1")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    args = ("--max-request-body-size", str(LIMIT), "--header", "X-Frame-Options: DENY")
    with running_server(*args, app=APP) as process:
        yield process


def events(server: ServerProcess, marker: str) -> list[dict[str, Any]]:
    """What the app recorded for `marker` (asgi_apps' /events)."""
    recorded = httpx.get(f"{server.url}/events", timeout=10).json()
    return [event for event in recorded if event["id"] == marker]


def get(server: ServerProcess, path: str, http2: bool) -> httpx.Response:
    if http2:
        with h2c_client(server) as client:
            return client.get(path)
    return httpx.get(server.url + path, timeout=30)


def raw_client(server: ServerProcess) -> RawClient:
    client = RawClient(server.host, server.port)
    client.handshake()
    return client


# -- server and default fields ---------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http/1.1", "h2"])
def test_every_response_names_the_server_once_with_the_default_fields(
    server: ServerProcess, http2: bool
) -> None:
    for path in ("/sleep?ms=0", "/raise-before", "/missing"):
        response = get(server, path, http2)
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert response.headers.get_list("server") == ["osmium"], path
        assert response.headers.get_list("x-frame-options") == ["DENY"], path
        assert len(response.headers.get_list("date")) == 1, path


@pytest.mark.parametrize("http2", [False, True], ids=["http/1.1", "h2"])
def test_the_app_s_own_fields_win_without_a_duplicate(server: ServerProcess, http2: bool) -> None:
    date = "Thu, 01 Jan 1970 00:00:00 GMT"
    response = get(server, f"/own?Server=shop&x-frame-options=SAMEORIGIN&date={date}", http2)
    assert response.status_code == 200
    assert response.headers.get_list("server") == ["shop"]
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers.get_list("date") == [date]


def test_no_server_header_leaves_the_server_unnamed() -> None:
    with running_server("--no-server-header", "--header", "x-env: test", app=APP) as server:
        for http2 in (False, True):
            response = get(server, "/sleep?ms=0", http2)
            assert "server" not in response.headers
            assert response.headers.get_list("x-env") == ["test"]


def test_the_config_file_sets_default_fields_and_a_server_of_its_own(tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text('[server]\nheaders = ["Server: edge-7", "Cache-Control: no-store"]\n')
    with running_server("--config", str(config), app=APP) as server:
        for http2 in (False, True):
            response = get(server, "/sleep?ms=0", http2)
            assert response.headers.get_list("server") == ["edge-7"]
            assert response.headers.get_list("cache-control") == ["no-store"]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("x-frame-options DENY", "expected NAME:VALUE"),
        (":authority: evil", "the name is empty"),
        ("bad name: 1", "not a field name"),
        ("x-bad: line\x01break", "visible ASCII"),
        ("Connection: close", "connection-specific"),
        ("Transfer-Encoding: chunked", "connection-specific"),
        ("keep-alive: timeout=5", "connection-specific"),
        ("Upgrade: h2c", "connection-specific"),
    ],
)
def test_a_malformed_header_is_a_one_line_error(entry: str, fragment: str) -> None:
    result = run_osmium("serve", "--bind", "127.0.0.1:0", "--header", entry)
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--max-request-body-size", "-1"), "max_request_body_size"),
        (("--limit-concurrency", "-5"), "limit_concurrency"),
        (("--limit-concurrency", "many"), "--limit-concurrency"),
    ],
)
def test_a_bad_limit_is_a_one_line_error(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run_osmium("serve", "--bind", "127.0.0.1:0", *args), fragment)


def test_headers_in_the_config_file_must_be_a_list(tmp_path: Path) -> None:
    config = tmp_path / "osmium.toml"
    config.write_text('headers = "x-a: b"\n')
    result = run_osmium("serve", "--bind", "127.0.0.1:0", "--config", str(config))
    assert_one_line_error(result, "headers must be a list")


# -- --max-request-body-size: HTTP/1.1 -------------------------------------------------------------


def test_http1_a_declared_body_over_the_limit_gets_413_and_no_handler(
    server: ServerProcess,
) -> None:
    response = httpx.post(
        f"{server.url}/wait-disconnect?id=h1-declared", content=b"x" * (LIMIT + 1), timeout=30
    )
    assert response.status_code == 413
    assert response.text == "Content Too Large"
    assert response.headers["connection"] == "close"
    assert response.headers.get_list("server") == ["osmium"]
    assert events(server, "h1-declared") == []  # the handler never started
    at_limit = httpx.post(f"{server.url}/body?id=h1-at-limit", content=b"x" * LIMIT, timeout=30)
    assert (at_limit.status_code, at_limit.text) == (200, str(LIMIT))


def test_http1_a_chunked_body_past_the_limit_gets_413_and_the_app_sees_no_more(
    server: ServerProcess,
) -> None:
    chunks = (b"y" * 16384 for _ in range(4 * LIMIT // 16384))  # a generator: chunked framing
    response = httpx.post(f"{server.url}/body?id=h1-chunked", content=chunks, timeout=30)
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    wait_until(lambda: events(server, "h1-chunked") != [], 10, "the app to record its end")
    (seen,) = events(server, "h1-chunked")
    assert seen["event"] == "disconnect"
    assert seen["bytes"] <= LIMIT


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_curl_uploading_8_mib_over_http1_gets_413(
    server: ServerProcess, tmp_path: Path, declared: bool
) -> None:
    """HTTP/1.1 only: over HTTP/2, curl 7.88 takes the RST_STREAM(NO_ERROR) that follows the 413
    while it still uploads for an error (92); httpx and raw frames check HTTP/2 below."""
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"z" * (8 * 1024 * 1024))
    framing = [] if declared else ["-H", "Transfer-Encoding: chunked"]
    started = time.monotonic()
    result = run_tool(
        "curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", *framing,
        "--data-binary", f"@{upload}", f"{server.url}/body?id=curl", timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "413"), result.stderr
    assert time.monotonic() - started < 30


def test_httpx_posting_over_the_limit_on_h2_gets_413(server: ServerProcess) -> None:
    with h2c_client(server) as client:
        # A first request lets the server's connection WINDOW_UPDATE arrive: then the whole body
        # fits the windows and httpx sends it without reading. Otherwise it waits for window,
        # reads the 413 and the RST_STREAM(NO_ERROR) that follows it (RFC 9113 §8.1), and fails
        # on its next DATA instead of returning the response, which is httpx's limit, not ours
        # (the raw-frame tests below check the server's side).
        assert client.get("/sleep?ms=0").status_code == 200
        response = client.post("/wait-disconnect?id=h2-httpx", content=b"x" * (2 * LIMIT))
        assert response.status_code == 413
        assert response.text == "Content Too Large"
        assert client.get("/sleep?ms=0").status_code == 200  # the same connection serves on
    assert events(server, "h2-httpx") == []


# -- --max-request-body-size: HTTP/2, frame by frame -----------------------------------------------


def assert_answered_413_then_reset(client: RawClient, stream_id: int) -> None:
    """413, complete (END_STREAM), then RST_STREAM(NO_ERROR): RFC 9113 §8.1's 'stop sending'."""
    client.expect_rst(stream_id, ErrorCode.NO_ERROR)
    state = client.streams[stream_id]
    assert dict(state.header_blocks[0])[":status"] == "413"
    assert state.ended and bytes(state.data) == b"Content Too Large"


def assert_connection_serves_on(client: RawClient) -> None:
    client.ping()  # no GOAWAY before the ACK
    assert client.get("/sleep?ms=0").status == 200


def test_h2_a_declared_body_over_the_limit_gets_413_up_front(server: ServerProcess) -> None:
    with raw_client(server) as client:
        stream_id = client.request(
            "/wait-disconnect?id=h2-declared",
            "POST",
            headers=[("content-length", str(LIMIT + 1))],
            body=b"x" * 1000,
            end_stream=False,
        )
        assert_answered_413_then_reset(client, stream_id)
        assert_connection_serves_on(client)
    assert events(server, "h2-declared") == []


def test_h2_a_body_past_the_limit_gets_413_the_app_a_disconnect(server: ServerProcess) -> None:
    with raw_client(server) as client:
        stream_id = client.request("/body?id=h2-mid", "POST", body=b"", end_stream=False)
        for _ in range(2 * LIMIT // 16384):
            client.send_data(stream_id, b"m" * 16384, end_stream=False)
        assert_answered_413_then_reset(client, stream_id)
        assert_connection_serves_on(client)
    wait_until(lambda: events(server, "h2-mid") != [], 10, "the app to record its end")
    (seen,) = events(server, "h2-mid")
    assert seen["event"] == "disconnect"
    assert seen["bytes"] <= LIMIT


def test_h2_a_body_past_the_limit_after_the_response_started_is_cancelled(
    server: ServerProcess,
) -> None:
    with raw_client(server) as client:
        stream_id = client.request(
            "/wait-disconnect?respond=1&id=h2-started", "POST", body=b"", end_stream=False
        )
        client.wait_for(lambda f: getattr(f, "stream_id", 0) == stream_id, "the response head")
        for _ in range(2 * LIMIT // 16384):
            client.send_data(stream_id, b"s" * 16384, end_stream=False)
        client.expect_rst(stream_id, ErrorCode.CANCEL)
        assert dict(client.streams[stream_id].header_blocks[0])[":status"] == "200"
        assert_connection_serves_on(client)
    disconnected = {"id": "h2-started", "event": "message", "type": "http.disconnect"}
    wait_until(
        lambda: disconnected in events(server, "h2-started"), 10, "the app to see the disconnect"
    )


# -- --limit-concurrency ---------------------------------------------------------------------------


@pytest.fixture
def limited() -> Iterator[AdminServer]:
    """At most 2 requests or WebSockets in flight; the admin plane shows what was refused."""
    with admin_server("--limit-concurrency", "2", app=APP) as admin:
        yield admin


def plain_get(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.url}/sleep?ms=0", timeout=30)


def refusals(admin: AdminServer) -> int:
    (worker,) = admin.state()["workers"]
    return worker["defences"].get("limit_concurrency", 0)


def test_past_the_limit_requests_and_websockets_get_503_at_once(limited: AdminServer) -> None:
    server = limited.server
    with raw_client(server) as client:
        # One connection, frames handled in order: the first two are in flight (held until
        # reset) when the third arrives.
        held = [client.request(f"/wait-disconnect?id=held-{index}") for index in (1, 2)]
        response = client.read_response(client.request("/sleep?ms=0"))
        assert (response.status, response.body) == (503, b"Service Unavailable")
        assert response.header("server") == "osmium"

        refused = plain_get(server)
        assert (refused.status_code, refused.headers["connection"]) == (503, "close")
        with pytest.raises(InvalidStatus) as denied:
            connect(f"ws://{server.host}:{server.port}/ws/echo", open_timeout=10)
        assert denied.value.response.status_code == 503
        over_h2 = H2WebSocketClient(server.host, server.port)
        try:
            assert over_h2.open("/ws/echo")[1] == 503
        finally:
            over_h2.close()
        assert not any(stream_id in client.streams for stream_id in held)  # no answer yet

        for stream_id in held:
            client.send_rst_stream(stream_id, ErrorCode.CANCEL)

        def served() -> bool:  # their handlers end, and free their slots, once they see the reset
            return client.get("/sleep?ms=0").status == 200

        wait_until(served, 10, "the held requests' slots")
    for marker in ("held-1", "held-2"):
        assert {"id": marker, "event": "started"} in events(server, marker)
    wait_until(lambda: refusals(limited) >= 4, 10, "the refusals in the worker's report")


def test_websockets_in_flight_count_against_the_limit(limited: AdminServer) -> None:
    server = limited.server
    with connect(f"ws://{server.host}:{server.port}/ws/echo", open_timeout=10) as over_h1:
        over_h2 = H2WebSocketClient(server.host, server.port)
        try:
            assert over_h2.open("/ws/echo")[1] == 200
            over_h1.send("still here")
            assert over_h1.recv(timeout=10) == "still here"
            assert plain_get(server).status_code == 503
        finally:
            over_h2.close()
        wait_until(lambda: plain_get(server).status_code == 200, 10, "the h2 WebSocket's slot")
    with raw_client(server) as client:
        client.request("/wait-disconnect?id=after-websockets")  # holds one of the two slots
        wait_until(lambda: plain_get(server).status_code == 200, 10, "the h1 WebSocket's slot")
    wait_until(lambda: refusals(limited) >= 1, 10, "the refusal in the worker's report")
