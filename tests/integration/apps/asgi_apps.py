"""Plain ASGI 3 apps that show the integration tests what the server gave them and did to them.

`app` routes:
  /scope...                  the request's scope as JSON (after reading the whole body)
  /raise-before?marker=M     raises before http.response.start
  /raise-after?marker=M      starts the response, sends part of the body, then raises
  /no-response               returns without sending anything
  /wait-disconnect?id=X      records "started", optionally (respond=1) starts the response, then
                             reads until http.disconnect and records it, and what send() did next
  /events                    what /wait-disconnect recorded, as JSON
  /state?set=V               the lifespan state this request got, then writes V into its copy
  /sha256                    length and sha256 of the request body (read as it streams in)
  /sleep?ms=N&id=X           records "started", answers "slept" after N ms, records "finished"
Its lifespan startup writes `token` and `startups` into the state. With OSMIUM_TEST_RECORD set
to a file path, finished /sleep requests and the lifespan shutdown append a line to that file.

`failing_lifespan_app` reports lifespan.startup.failed; `no_lifespan_app` raises on lifespan.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any
from urllib.parse import parse_qs

STARTUP_FAILURE_MESSAGE = "database unreachable (failing on purpose for the integration tests)"
LIFESPAN_TOKEN = "token-from-lifespan-startup"

#: What /wait-disconnect saw, in order; one server process, so a module-level list is enough.
EVENTS: list[dict[str, Any]] = []


def _record(line: str) -> None:
    """Append to the file named by OSMIUM_TEST_RECORD (survives the server process)."""
    path = os.environ.get("OSMIUM_TEST_RECORD")
    if path:
        with open(path, "a") as file:
            file.write(line + "\n")


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _json_scope(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": _text(scope["raw_path"]) if scope.get("raw_path") is not None else None,
        "query_string": _text(scope["query_string"]),
        "root_path": scope.get("root_path"),
        "headers": [[_text(name), _text(value)] for name, value in scope["headers"]],
        "header_types": sorted({type(part).__name__ for pair in scope["headers"] for part in pair}),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "extensions": sorted(scope.get("extensions") or {}),
        "tls": (scope.get("extensions") or {}).get("tls"),
        "has_state": "state" in scope,
        "state": dict(scope["state"]) if "state" in scope else None,
        "body": _text(body),
    }


async def _json(send: Any, status: int, document: object) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state = scope.get("state")
            if state is not None:
                state["token"] = LIFESPAN_TOKEN
                state["startups"] = state.get("startups", 0) + 1
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _record("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _wait_disconnect(scope: dict[str, Any], receive: Any, send: Any, query: dict) -> None:
    marker = query.get("id", ["?"])[0]
    EVENTS.append({"id": marker, "event": "started"})
    if query.get("respond", ["0"])[0] == "1":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
    while True:
        message = await receive()
        EVENTS.append({"id": marker, "event": "message", "type": message["type"]})
        if message["type"] == "http.disconnect":
            break
    # ASGI 2.4: send() on a closed connection raises an OSError subclass (and must not hang).
    try:
        if query.get("respond", ["0"])[0] == "1":
            await send({"type": "http.response.body", "body": b"too late"})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"too late"})
    except OSError as error:
        EVENTS.append({"id": marker, "event": "send-raised", "error": type(error).__name__})
    else:
        EVENTS.append({"id": marker, "event": "send-succeeded"})


def marker_id(query: dict[str, list[str]]) -> str:
    return query.get("id", ["?"])[0]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    path = scope["path"]
    query = parse_qs(_text(scope["query_string"]))
    marker = query.get("marker", [""])[0]
    if path.startswith("/scope"):
        body = await _read_body(receive)
        await _json(send, 200, _json_scope(scope, body))
    elif path == "/raise-before":
        raise RuntimeError(f"boom before the response {marker}")
    elif path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial body", "more_body": True})
        raise RuntimeError(f"boom after the response started {marker}")
    elif path == "/no-response":
        return
    elif path == "/wait-disconnect":
        await _wait_disconnect(scope, receive, send, query)
    elif path == "/sleep":
        EVENTS.append({"id": marker_id(query), "event": "started"})
        await asyncio.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        await _json(send, 200, {"slept": True, "id": marker_id(query)})
        EVENTS.append({"id": marker_id(query), "event": "finished"})
        _record(f"request {marker_id(query)} finished")
    elif path == "/one-body":
        size = int(query.get("size", ["1000"])[0])
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x" * size})
    elif path == "/events":
        await _json(send, 200, EVENTS)
    elif path == "/state":
        state = scope.get("state")
        await _json(send, 200, dict(state) if state is not None else None)
        if state is not None and "set" in query:
            state["written_by_request"] = query["set"][0]
    elif path == "/push-sha256":  # the promised request's handler reads its (empty) body
        await send({"type": "http.response.push", "path": "/sha256", "headers": []})
        await _json(send, 200, {"pushed": "/sha256"})
    elif path == "/sha256":
        digest = hashlib.sha256()
        length = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            digest.update(chunk)
            length += len(chunk)
            if not message.get("more_body", False):
                break
        await _json(send, 200, {"length": length, "sha256": digest.hexdigest()})
    else:
        await _json(send, 404, {"error": "not found", "path": path})


async def failing_lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": STARTUP_FAILURE_MESSAGE})
        return
    await _json(send, 500, {"error": "should never be served"})


async def no_lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await _json(send, 200, {"has_state": "state" in scope, "path": scope["path"]})
