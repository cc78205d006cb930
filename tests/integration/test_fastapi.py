"""FastAPI, unmodified: an HTTP route over HTTP/2 and a WebSocket route with path and query
parameters over HTTP/1.1."""

from __future__ import annotations

import json

from websockets.sync.client import connect

from tests.integration.support import h2c_client
from tests.server_process import running_server

APP = "tests.integration.apps.fastapi_app:app"


def test_fastapi_http_and_websocket_routes() -> None:
    with running_server(app=APP) as server:
        with h2c_client(server) as client:
            response = client.get("/")
            assert (response.http_version, response.json()) == ("HTTP/2", {"ok": True})
        with connect(f"ws://{server.host}:{server.port}/ws/lobby?token=t1") as websocket:
            for number in range(3):
                websocket.send(json.dumps({"n": number}))
                reply = json.loads(websocket.recv(timeout=5))
                assert reply == {"room": "lobby", "token": "t1", "echo": {"n": number}}
