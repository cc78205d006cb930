"""An unmodified Starlette app (tests/integration/apps/starlette_app.py) served by osmium."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.integration.support import h2c_client
from tests.server_process import ServerProcess, running_server

APP = "tests.integration.apps.starlette_app:app"


@pytest.fixture(scope="module")
def starlette_server() -> Iterator[ServerProcess]:
    with running_server(app=APP) as process:
        yield process
        assert process.stop() == 0, process.output  # a clean exit after the module


@pytest.fixture
def client(starlette_server: ServerProcess) -> Iterator[httpx.Client]:
    with h2c_client(starlette_server) as http:
        yield http


def test_plain_text_route(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.text == "starlette on osmium"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len("starlette on osmium"))


def test_int_path_parameter(client: httpx.Client) -> None:
    response = client.get("/users/42")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"user_id": 42, "is_int": True}
    # The int convertor does not match, so no route does.
    assert client.get("/users/not-a-number").status_code == 404


def test_str_path_parameter_query_and_lifespan_state(client: httpx.Client) -> None:
    response = client.get("/items/apple", params={"q": "red & round"})
    assert response.status_code == 200
    assert response.json() == {"name": "apple", "q": "red & round", "in_stock": 3}
    encoded = client.get("/items/caf%C3%A9")
    assert encoded.json() == {"name": "café", "q": None, "in_stock": None}


def test_json_request_body(client: httpx.Client) -> None:
    document = {"name": "widget", "tags": ["a", "b"], "price": 9.5, "nested": {"ok": True}}
    response = client.post("/items", json=document)
    assert response.status_code == 201
    assert response.json() == {"received": document, "keys": ["name", "nested", "price", "tags"]}


def test_streamed_request_body(client: httpx.Client) -> None:
    body = os.urandom(2_000_000)
    chunks = (body[offset : offset + 100_000] for offset in range(0, len(body), 100_000))
    response = client.post("/upload", content=chunks)
    assert response.status_code == 200
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_streaming_response(client: httpx.Client) -> None:
    with client.stream("GET", "/numbers", params={"n": 500}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = "".join(response.iter_text())
    assert text == "".join(f"line {number}\n" for number in range(500))


def test_lifespan_state_reaches_requests(client: httpx.Client) -> None:
    first = client.get("/state").json()
    second = client.get("/state").json()
    # Lifespan startup ran exactly once, before the first request, and its state is shared.
    assert first == {"greeting": "hello from the lifespan", "startup_count": 1}
    assert second == first


def test_request_scope_details(client: httpx.Client, starlette_server: ServerProcess) -> None:
    response = client.get("/info", headers={"x-custom": "value 1", "user-agent": "osmium-tests"})
    assert response.json() == {
        "http_version": "2",
        "scheme": "http",
        "host": f"127.0.0.1:{starlette_server.port}",
        "user_agent": "osmium-tests",
        "x_custom": "value 1",
        "client_host": "127.0.0.1",
    }


def test_not_found_and_method_not_allowed(client: httpx.Client) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.text == "Not Found"
    wrong_method = client.delete("/items/apple")
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.headers["allow"]


def test_route_exception_is_a_500(client: httpx.Client, starlette_server: ServerProcess) -> None:
    # Starlette answers 500 itself and re-raises; osmium must log it and leave the response alone.
    response = client.get("/fail")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    starlette_server.wait_for_line(r"RuntimeError: starlette route failing on purpose", timeout=5)
    assert client.get("/").status_code == 200


def test_a_websocket_endpoint_class(starlette_server: ServerProcess) -> None:
    with connect(f"ws://{starlette_server.host}:{starlette_server.port}/ws/shout") as websocket:
        websocket.send("quiet please")
        assert websocket.recv(timeout=5) == "QUIET PLEASE"


def test_a_websocket_route_with_json_a_subprotocol_and_a_close_code(
    starlette_server: ServerProcess,
) -> None:
    url = f"ws://{starlette_server.host}:{starlette_server.port}/ws/greet"
    with connect(url, subprotocols=["json"]) as websocket:
        assert websocket.subprotocol == "json"
        websocket.send(json.dumps({"name": "osmium"}))
        assert json.loads(websocket.recv(timeout=5)) == {"greeting": "hello osmium"}
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "done")
