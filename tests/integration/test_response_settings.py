"""Response fields and request limits against a live server (README: Settings, Limits, Handler
admission): `server: osmium` and --no-server-header, --header defaults, --max-request-body-size
(413) and --limit-concurrency (503), over HTTP/1.1 and HTTP/2, with real clients and raw frames;
the answers the server makes itself (refusals, WebSocket handshakes) carry the fields too.

`app` below is the server's app in these tests; it runs in the server process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from osmium import demo
from osmium.asgi import CONNECTION_SPECIFIC
from osmium.protocol.events import ErrorCode
from tests.conformance.frames import RawClient
from tests.integration.apps import asgi_apps
from tests.integration.apps.http1_raw import RawConnection, RawResponse, request_bytes
from tests.integration.support import h2c_client, run_osmium, run_tool, wait_until
from tests.integration.test_cli import assert_one_line_error
from tests.server_process import ServerProcess, running_server
from tests.support.admin import AdminServer, admin_server
from tests.support.h2_websocket import H2WebSocketClient
from tests.support.websocket import handshake_headers, new_key

pytestmark = pytest.mark.timeout(60)

APP = "tests.integration.test_response_settings:app"
LIMIT = 64 * 1024


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """asgi_apps' routes (lifespan, /events, /wait-disconnect, /raise-before...) and the demo's
    WebSocket echo, plus:

    /own?NAME=VALUE...         a response carrying those fields of its own
    /body?id=X                 reads the body; records for /events how many bytes it saw and
                               whether `receive` ended with the whole body ("complete") or
                               http.disconnect
    /ws/own?NAME=VALUE...      (WebSocket) accepted with those fields of its own, then closed
    /ws/deny-own?NAME=VALUE... (WebSocket) denied with a 401 carrying those fields
    """
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == "/own":
        fields = _own_fields(scope)
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


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/ws/own":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "headers": _own_fields(scope)})
    elif scope["path"] == "/ws/deny-own":
        await receive()
        start = {"type": "websocket.http.response.start", "status": 401}
        await send({**start, "headers": _own_fields(scope)})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
    else:
        await demo.app(scope, receive, send)


def _query(scope: dict[str, Any]) -> str:
    return scope["query_string"].decode("latin-1")


def _own_fields(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in parse_qsl(_query(scope))]


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


# -- the answers the server makes itself -----------------------------------------------------------

TEAM = ("--header", "x-team:core")
#: A field the server's answers carry (name and value as sent; names lower case on HTTP/2).
Field = tuple[str | bytes, str | bytes]


@pytest.fixture(scope="module")
def team_server() -> Iterator[ServerProcess]:
    with running_server(*TEAM, app=APP) as process:
        yield process


def values(fields: Sequence[Field]) -> dict[str, list[str]]:
    """Each field's values by lower-case name, in the order sent."""
    found: dict[str, list[str]] = {}
    for name, value in fields:
        text = (name.decode() if isinstance(name, bytes) else name).lower()
        found.setdefault(text, []).append(value.decode() if isinstance(value, bytes) else value)
    return found


def assert_the_server_s_fields(fields: Sequence[Field], server: str | None = "osmium") -> None:
    """`server` (None: no server field), x-team and a date, each exactly once."""
    found = values(fields)
    assert found.get("server", []) == ([server] if server else []), fields
    assert found.get("x-team") == ["core"], fields
    assert len(found.get("date", [])) == 1, fields


def h1_answer(server: ServerProcess, request: bytes) -> RawResponse:
    """The server's answer to `request`, written on a fresh HTTP/1.1 connection (a 101's head)."""
    with RawConnection.open(server.host, server.port) as connection:
        connection.send_tolerant(request)  # the server may answer, and close, before it has all
        return connection.read_response()


def upgrade_request(server: ServerProcess, path: str, headers: list[tuple[str, str]]) -> bytes:
    return request_bytes("GET", path, f"{server.host}:{server.port}", headers)


def h2c_request(server: ServerProcess) -> bytes:
    headers = [
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
    ]
    return upgrade_request(server, "/sleep?ms=0", headers)


#: HTTP/1.1 requests the server answers itself, and with what.
H1_ANSWERS: dict[str, tuple[int, Callable[[ServerProcess], bytes]]] = {
    "400 both framings": (
        400,
        lambda _server: (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    ),
    "431 header block": (
        431,
        lambda _server: b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * 200_000 + b"\r\n\r\n",
    ),
    "505 version": (505, lambda _server: b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
    "501 CONNECT": (
        501,
        lambda _server: b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ),
    "101 h2c": (101, h2c_request),
    "101 WebSocket": (
        101,
        lambda server: upgrade_request(server, "/ws/echo", handshake_headers(new_key())),
    ),
    "400 WebSocket without a key": (
        400,
        lambda server: upgrade_request(server, "/ws/echo", handshake_headers(None)),
    ),
    "426 WebSocket version": (
        426,
        lambda server: upgrade_request(server, "/ws/echo", handshake_headers(new_key(), "8")),
    ),
    "403 WebSocket closed before accept": (
        403,
        lambda server: upgrade_request(server, "/ws/closed", handshake_headers(new_key())),
    ),
}


def h2_answer(server: ServerProcess, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The head of the server's answer to a stream opened with `headers` (it need not end)."""
    with raw_client(server) as client:
        stream_id = client.next_stream_id()
        client.send_headers(stream_id, headers, end_stream=False)

        def answered(_frame: object) -> bool:
            state = client.streams.get(stream_id)
            return state is not None and bool(state.header_blocks)

        client.wait_for(answered, f"the answer on stream {stream_id}")
        return client.streams[stream_id].header_blocks[0]


def extended_connect(server: ServerProcess, path: str) -> list[tuple[str, str]]:
    """RFC 8441's request for a WebSocket on a stream."""
    return [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", path),
        (":authority", f"{server.host}:{server.port}"),
        ("sec-websocket-version", "13"),
    ]


#: HTTP/2 streams the server answers itself, and with what.
H2_ANSWERS: dict[str, tuple[str, Callable[[ServerProcess], list[tuple[str, str]]]]] = {
    "501 plain CONNECT": (
        "501",
        lambda server: [(":method", "CONNECT"), (":authority", "example.com:443")],
    ),
    "200 extended CONNECT": ("200", lambda server: extended_connect(server, "/ws/echo")),
    "403 WebSocket closed before accept": (
        "403",
        lambda server: extended_connect(server, "/ws/closed"),
    ),
}


@pytest.mark.parametrize("case", list(H1_ANSWERS))
def test_the_server_s_own_http1_answers_name_it_once(team_server: ServerProcess, case: str) -> None:
    status, request = H1_ANSWERS[case]
    response = h1_answer(team_server, request(team_server))
    assert response.status == status, response
    assert_the_server_s_fields(response.headers)


@pytest.mark.parametrize("case", list(H2_ANSWERS))
def test_the_server_s_own_h2_answers_name_it_once(team_server: ServerProcess, case: str) -> None:
    status, request = H2_ANSWERS[case]
    head = h2_answer(team_server, request(team_server))
    assert head[0] == (":status", status), head
    assert_the_server_s_fields(head)
    assert not CONNECTION_SPECIFIC & {name.encode() for name, _ in head}, head


def test_no_server_header_leaves_the_server_s_own_answers_unnamed() -> None:
    with running_server("--no-server-header", *TEAM, app=APP) as server:
        for case, (status, request) in H1_ANSWERS.items():
            response = h1_answer(server, request(server))
            assert response.status == status, (case, response)
            assert_the_server_s_fields(response.headers, server=None)
        for case, (h2_status, h2_request) in H2_ANSWERS.items():
            head = h2_answer(server, h2_request(server))
            assert head[0] == (":status", h2_status), (case, head)
            assert_the_server_s_fields(head, server=None)


OWN = "?server=shop&x-team=own&date=Thu,%2001%20Jan%201970%2000:00:00%20GMT"


def assert_the_app_s_fields_won(fields: Sequence[Field]) -> None:
    found = values(fields)
    assert found.get("server") == ["shop"], fields
    assert found.get("x-team") == ["own"], fields
    assert found.get("date") == ["Thu, 01 Jan 1970 00:00:00 GMT"], fields


@pytest.mark.parametrize(("path", "status"), [("/ws/own", 101), ("/ws/deny-own", 401)])
def test_a_websocket_s_own_fields_win_over_http1(
    team_server: ServerProcess, path: str, status: int
) -> None:
    request = upgrade_request(team_server, path + OWN, handshake_headers(new_key()))
    response = h1_answer(team_server, request)
    assert response.status == status, response
    assert_the_app_s_fields_won(response.headers)


@pytest.mark.parametrize(("path", "status"), [("/ws/own", "200"), ("/ws/deny-own", "401")])
def test_a_websocket_s_own_fields_win_over_h2(
    team_server: ServerProcess, path: str, status: str
) -> None:
    head = h2_answer(team_server, extended_connect(team_server, path + OWN))
    assert head[0] == (":status", status), head
    assert_the_app_s_fields_won(head)


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
