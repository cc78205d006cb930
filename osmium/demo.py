"""The built-in demo application that benchmarks and tests drive.

Each route exercises one server path: tiny responses, large bodies, streaming both ways, delays,
CPU work, trailers, server push and early hints. Query parameters are validated so a bad value
gets a 400, not a crash.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CHUNK_SIZE = 64 * 1024
DEFAULT_BIG_SIZE = 1024 * 1024
TEXT = [(b"content-type", b"text/plain")]
OCTETS = [(b"content-type", b"application/octet-stream")]
JSON = [(b"content-type", b"application/json")]
HTML = [(b"content-type", b"text/html; charset=utf-8")]
#: What `/push` pushes (and hints at), served by the app like any other route.
PUSHED = {
    "/push/style.css": (b"text/css", b"body { font-family: sans-serif }\n"),
    "/push/app.js": (b"text/javascript", b"console.log('pushed');\n"),
}
PUSH_PAGE = (
    b"<!doctype html>\n<title>osmium push</title>\n"
    b'<link rel="stylesheet" href="/push/style.css">\n'
    b'<script src="/push/app.js"></script>\n<p>pushed: style.css, app.js</p>\n'
)
PUSH_LINKS = [
    b"</push/style.css>; rel=preload; as=style",
    b"</push/app.js>; rel=preload; as=script",
]
ITEMS = [{"id": number, "name": f"item {number}", "price": number * 1.25} for number in range(5)]
_FILLER = b"x" * CHUNK_SIZE
#: Seconds of CPU `/cpu` burns between two yields to the event loop, as a handler that does
#: heavy work in steps (or awaits now and then) would.
CPU_STEP = 0.001


class BadRequest(Exception):
    """A query parameter the demo cannot use."""


def _int_param(query: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not 0 <= value <= maximum:
        raise BadRequest(f"{name} must be between 0 and {maximum}")
    return value


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def hello(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    await _respond(send, 200, b"hello world", TEXT)


async def items(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """A small JSON document encoded per request, like a typical API endpoint's."""
    await _respond(send, 200, json.dumps({"items": ITEMS}).encode(), JSON)


async def big(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    size = _int_param(query, "size", DEFAULT_BIG_SIZE, 1 << 40)
    headers = [*OCTETS, (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    remaining = size
    while remaining > CHUNK_SIZE:
        await send({"type": "http.response.body", "body": _FILLER, "more_body": True})
        remaining -= CHUNK_SIZE
    await send({"type": "http.response.body", "body": _FILLER[:remaining]})


async def echo(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """Streams the request body back as it arrives, so flow control is exercised both ways."""
    await send({"type": "http.response.start", "status": 200, "headers": OCTETS})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more_body = message.get("more_body", False)
        body = message.get("body", b"")
        if body or not more_body:
            await send({"type": "http.response.body", "body": body, "more_body": more_body})
        if not more_body:
            return


async def upload(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """Reads the request body and answers its size: an upload that moves its bytes one way
    (`/echo` moves each twice), to compare with a download of the same size."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _respond(send, 200, str(size).encode(), TEXT)


async def stream(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    chunks = _int_param(query, "chunks", 10, 1_000_000)
    size = _int_param(query, "size", 1024, 16 * 1024 * 1024)
    chunk = b"s" * size
    await send({"type": "http.response.start", "status": 200, "headers": OCTETS})
    for _ in range(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def slow(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    delay_ms = _int_param(query, "ms", 100, 600_000)
    await asyncio.sleep(delay_ms / 1000)
    await _respond(send, 200, b"slow response", TEXT)


async def cpu(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """Burns `ms` milliseconds of CPU time, in steps, then answers."""
    remaining = _int_param(query, "ms", 10, 10_000) / 1000
    while remaining > 0:
        step = min(remaining, CPU_STEP)
        # The thread's CPU clock also runs for other handlers: count only this step's share.
        step_end = time.thread_time() + step
        while time.thread_time() < step_end:
            pass
        remaining -= step
        await asyncio.sleep(0)
    await _respond(send, 200, b"cpu response", TEXT)


async def trailers(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    supports_trailers = "http.response.trailers" in scope.get("extensions", {})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*TEXT, (b"trailer", b"x-checksum")],
            "trailers": supports_trailers,
        }
    )
    await send({"type": "http.response.body", "body": b"body with trailers"})
    if supports_trailers:
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-checksum", b"demo-123")],
                "more_trailers": False,
            }
        )


async def push(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """An HTML page that hints at its two resources (103 Early Hints) and pushes them (HTTP/2);
    a client that takes neither fetches them as usual."""
    extensions = scope.get("extensions", {})
    if "http.response.early_hint" in extensions:
        await send({"type": "http.response.early_hint", "links": PUSH_LINKS})
    if "http.response.push" in extensions:
        for path in PUSHED:
            await send({"type": "http.response.push", "path": path, "headers": []})
    await _respond(send, 200, PUSH_PAGE, HTML)


async def pushed(scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """One of `/push`'s resources, whether pushed or asked for."""
    content_type, body = PUSHED[scope["path"]]
    await _respond(send, 200, body, [(b"content-type", content_type)])


ROUTES: dict[tuple[str, str], Callable[..., Awaitable[None]]] = {
    ("GET", "/"): hello,
    ("GET", "/items"): items,
    ("GET", "/big"): big,
    ("POST", "/echo"): echo,
    ("POST", "/upload"): upload,
    ("GET", "/stream"): stream,
    ("GET", "/slow"): slow,
    ("GET", "/cpu"): cpu,
    ("GET", "/trailers"): trailers,
    ("GET", "/push"): push,
    **{("GET", path): pushed for path in PUSHED},
}


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """`/ws/echo`: every message back as it came (text as text), the first offered subprotocol
    accepted; any other path is refused (403)."""
    await receive()  # websocket.connect
    if scope["path"] != "/ws/echo":
        await send({"type": "websocket.close"})
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    handler = ROUTES.get((method, scope["path"]))
    if handler is None:
        known_path = any(path == scope["path"] for _, path in ROUTES)
        if known_path:
            await _respond(send, 405, b"method not allowed", TEXT)
        else:
            await _respond(send, 404, b"not found", TEXT)
        return
    query_string = scope["query_string"]
    query = parse_qs(query_string.decode("latin-1")) if query_string else {}
    try:
        await handler(scope, receive, send, query)
    except BadRequest as error:
        await _respond(send, 400, str(error).encode(), TEXT)
