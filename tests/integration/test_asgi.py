"""The ASGI contract as an app sees it: scope, errors, disconnects, lifespan."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from h2.errors import ErrorCodes

from tests.integration.apps.asgi_apps import LIFESPAN_TOKEN, STARTUP_FAILURE_MESSAGE
from tests.integration.h2client import H2Client
from tests.integration.support import h2c_client, run_osmium, wait_until
from tests.server_process import ServerProcess, running_server

APPS = "tests.integration.apps.asgi_apps"


@pytest.fixture(scope="module")
def asgi_server() -> Iterator[ServerProcess]:
    with running_server(app=f"{APPS}:app") as process:
        yield process
        assert process.stop() == 0, process.output  # a clean exit after the module


def logged_stream_id(server: ServerProcess, marker: str, message: str) -> int:
    """The stream id in the last `stream N: <message>` log line before `marker` appears."""
    server.wait_for_line(re.escape(marker), timeout=5)
    output = server.output
    before = output[: output.index(marker)]
    matches = re.findall(rf"stream (\d+): {re.escape(message)}", before)
    assert matches, f"no 'stream N: {message}' line before {marker!r}:\n{output}"
    return int(matches[-1])


# -- scope -----------------------------------------------------------------------------------------


def test_scope_fields(asgi_server: ServerProcess) -> None:
    with H2Client(asgi_server.host, asgi_server.port) as client:
        response = client.response(
            client.request(
                "GET",
                "/scope/caf%C3%A9/a%2Fb?x=1&y=two%20words",
                [(b"x-test", b"Some Value"), (b"accept", b"*/*")],
            )
        )
        client_port = client.local_port
    assert response.status == 200
    scope = json.loads(bytes(response.data))
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/café/a/b"
    assert scope["raw_path"] == "/scope/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == "x=1&y=two%20words"
    assert scope["root_path"] == ""
    headers = scope["headers"]
    assert ["host", f"127.0.0.1:{asgi_server.port}"] in headers
    assert ["x-test", "Some Value"] in headers
    assert ["accept", "*/*"] in headers
    assert not [name for name, _ in headers if name.startswith(":")], headers
    assert scope["header_types"] == ["bytes"]
    assert scope["client"] == ["127.0.0.1", client_port]
    assert scope["server"] == ["127.0.0.1", asgi_server.port]
    assert "http.response.trailers" in scope["extensions"]
    assert scope["state"] == {"token": LIFESPAN_TOKEN, "startups": 1}
    assert scope["body"] == ""


def test_scope_post_with_body_via_httpx(asgi_server: ServerProcess) -> None:
    with h2c_client(asgi_server) as client:
        response = client.post("/scope", content=b"request body", headers={"X-Mixed-Case": "Yes"})
    assert response.http_version == "HTTP/2"
    scope = response.json()
    assert scope["method"] == "POST"
    assert scope["http_version"] == "2"
    assert scope["body"] == "request body"
    # HTTP/2 header names arrive lower-case.
    assert ["x-mixed-case", "Yes"] in scope["headers"]
    assert ["host", f"127.0.0.1:{asgi_server.port}"] in scope["headers"]


def test_split_cookie_headers_are_joined(asgi_server: ServerProcess) -> None:
    """RFC 9113 §8.2.3: cookie crumbs are one `cookie` field for a generic application."""
    with H2Client(asgi_server.host, asgi_server.port) as client:
        response = client.response(
            client.request("GET", "/scope", [(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        )
    cookies = [
        value for name, value in json.loads(bytes(response.data))["headers"] if name == "cookie"
    ]
    assert cookies == ["a=1; b=2"]


# -- application errors ----------------------------------------------------------------------------


def test_exception_before_response_is_500_logged_with_stream_id(asgi_server: ServerProcess) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    with H2Client(asgi_server.host, asgi_server.port) as client:
        assert client.get("/scope").status == 200
        assert client.get("/scope").status == 200
        stream_id = client.request("GET", f"/raise-before?marker={marker}")
        response = client.response(stream_id)
    assert stream_id == 5
    assert response.status == 500
    assert bytes(response.data) == b"Internal Server Error"
    assert response.reset_code is None and response.ended
    assert logged_stream_id(asgi_server, marker, "exception in ASGI application") == stream_id
    assert f"RuntimeError: boom before the response {marker}" in asgi_server.output


def test_exception_before_response_via_httpx(asgi_server: ServerProcess) -> None:
    with h2c_client(asgi_server) as client:
        response = client.get("/raise-before", params={"marker": "httpx"})
        after = client.get("/scope")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert after.status_code == 200  # the connection survives


def test_exception_after_response_started_resets_stream(asgi_server: ServerProcess) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    with H2Client(asgi_server.host, asgi_server.port) as client:
        stream_id = client.request("GET", f"/raise-after?marker={marker}")
        response = client.response(stream_id)
        # Only the stream is reset; the connection still serves requests.
        assert client.get("/scope").status == 200
    assert response.status == 200
    assert bytes(response.data) == b"partial body"
    assert not response.ended
    assert response.reset_code == ErrorCodes.INTERNAL_ERROR
    assert logged_stream_id(asgi_server, marker, "exception in ASGI application") == stream_id


def test_exception_after_response_started_fails_httpx(asgi_server: ServerProcess) -> None:
    with h2c_client(asgi_server) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/raise-after", params={"marker": "httpx"})
        assert client.get("/scope").status_code == 200


def test_app_returning_without_response_is_500(asgi_server: ServerProcess) -> None:
    with H2Client(asgi_server.host, asgi_server.port) as client:
        stream_id = client.request("GET", "/no-response")
        response = client.response(stream_id)
    assert response.status == 500
    assert bytes(response.data) == b"Internal Server Error"
    asgi_server.wait_for_line(
        rf"stream {stream_id}: application returned without a response", timeout=5
    )


# -- disconnects -----------------------------------------------------------------------------------


def events_for(client: httpx.Client, marker: str) -> list[dict]:
    return [event for event in client.get("/events").json() if event["id"] == marker]


def wait_for_event(
    client: httpx.Client, marker: str, event: dict, timeout: float = 5
) -> list[dict]:
    def seen() -> bool:
        return any(event.items() <= recorded.items() for recorded in events_for(client, marker))

    wait_until(seen, timeout, f"{event} for {marker}")
    return events_for(client, marker)


def test_client_reset_after_response_started_gives_http_disconnect(
    asgi_server: ServerProcess,
) -> None:
    marker = uuid.uuid4().hex
    with (
        h2c_client(asgi_server) as observer,
        H2Client(asgi_server.host, asgi_server.port) as client,
    ):
        stream_id = client.request("GET", f"/wait-disconnect?id={marker}&respond=1")
        stream = client.streams[stream_id]
        client.wait_for(lambda: bytes(stream.data) == b"waiting", 5, "the app's first chunk")
        client.reset(stream_id, ErrorCodes.CANCEL)
        events = wait_for_event(observer, marker, {"event": "send-raised"})
        assert client.get("/scope").status == 200  # the connection is unaffected
    assert events == [
        {"id": marker, "event": "started"},
        # The (empty) GET body first; then receive() blocks until the client goes away.
        {"id": marker, "event": "message", "type": "http.request"},
        {"id": marker, "event": "message", "type": "http.disconnect"},
        {"id": marker, "event": "send-raised", "error": "ClientDisconnected"},
    ]


def test_client_reset_during_request_body_gives_http_disconnect(
    asgi_server: ServerProcess,
) -> None:
    marker = uuid.uuid4().hex
    with (
        h2c_client(asgi_server) as observer,
        H2Client(asgi_server.host, asgi_server.port) as client,
    ):
        stream_id = client.request("POST", f"/wait-disconnect?id={marker}", end_stream=False)
        client.send_body(stream_id, b"first part of the body")
        wait_for_event(observer, marker, {"type": "http.request"})
        client.reset(stream_id, ErrorCodes.CANCEL)
        events = wait_for_event(observer, marker, {"event": "send-raised"})
    assert events[0] == {"id": marker, "event": "started"}
    messages = [event["type"] for event in events if event["event"] == "message"]
    assert messages[-1] == "http.disconnect"
    assert set(messages[:-1]) == {"http.request"}
    assert events[-1]["event"] == "send-raised"


def test_connection_closed_gives_http_disconnect(asgi_server: ServerProcess) -> None:
    marker = uuid.uuid4().hex
    with h2c_client(asgi_server) as observer:
        client = H2Client(asgi_server.host, asgi_server.port)
        client.request("GET", f"/wait-disconnect?id={marker}")
        wait_for_event(observer, marker, {"event": "started"})
        client.close()
        events = wait_for_event(observer, marker, {"type": "http.disconnect"})
    assert events[:3] == [
        {"id": marker, "event": "started"},
        {"id": marker, "event": "message", "type": "http.request"},
        {"id": marker, "event": "message", "type": "http.disconnect"},
    ]


# -- lifespan --------------------------------------------------------------------------------------


def test_lifespan_state_is_copied_into_each_request(asgi_server: ServerProcess) -> None:
    with h2c_client(asgi_server) as client:
        first = client.get("/state", params={"set": "leaked"}).json()
        second = client.get("/state").json()
    assert first == {"token": LIFESPAN_TOKEN, "startups": 1}
    # Each request gets its own shallow copy: what one request writes, the next does not see.
    assert second == {"token": LIFESPAN_TOKEN, "startups": 1}


def test_lifespan_startup_failure_exits_3_with_message() -> None:
    result = run_osmium("serve", f"{APPS}:failing_lifespan_app", "--bind", "127.0.0.1:0")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert STARTUP_FAILURE_MESSAGE in output
    assert "listening on" not in output
    assert "Traceback" not in output


def test_app_without_lifespan_support_is_served() -> None:
    with running_server(app=f"{APPS}:no_lifespan_app") as server:
        with h2c_client(server) as client:
            response = client.get("/anything")
        assert response.status_code == 200
        assert response.json() == {"has_state": False, "path": "/anything"}
        assert server.stop() == 0
