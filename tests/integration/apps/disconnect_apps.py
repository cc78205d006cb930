"""Endless event streams whose clients go away, and an app error, for test_disconnects.py.

Each stream prints one line when the server stops it, so a test can time how long the app was kept
waiting after its client left (X names the stream in that line and in the server's log lines):
  /sse/X                 plain ASGI: a tick every 20 ms; prints `sse X: send raised <Error>`
  /starlette/sse/X       a Starlette StreamingResponse over an async generator; prints
                         `starlette sse X: generator closed` from the generator's `finally`
  /fail/X                raises RuntimeError (a real app error, for the error log line)
A tick is `TICK_SIZE` bytes, or ?size=N (large ticks fill the socket buffers of a peer that does not
read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

TICK_SIZE = 64
TICK_INTERVAL = 0.02
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _tick(number: int, size: int) -> bytes:
    prefix = f"data: tick {number} ".encode()
    return prefix + b"." * max(0, size - len(prefix) - 2) + b"\n\n"


def _say(line: str) -> None:
    # The worker's stdout is the test's pipe; flushed so the test sees the line at once.
    print(line, flush=True)


async def _sse(marker: str, query: dict[str, list[str]], send: Any) -> None:
    size = int(query.get("size", [str(TICK_SIZE)])[0])
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    number = 0
    try:
        while True:
            await send(
                {"type": "http.response.body", "body": _tick(number, size), "more_body": True}
            )
            number += 1
            await asyncio.sleep(TICK_INTERVAL)
    except Exception as error:
        _say(f"sse {marker}: send raised {type(error).__name__}")
        raise


async def _starlette_sse(request: Request) -> StreamingResponse:
    marker = request.path_params["marker"]
    size = int(request.query_params.get("size", TICK_SIZE))

    async def ticks() -> AsyncIterator[bytes]:
        try:
            number = 0
            while True:
                yield _tick(number, size)
                number += 1
                await asyncio.sleep(TICK_INTERVAL)
        finally:
            _say(f"starlette sse {marker}: generator closed")

    return StreamingResponse(ticks(), media_type="text/event-stream")


starlette_app = Starlette(routes=[Route("/starlette/sse/{marker}", _starlette_sse)])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await starlette_app(scope, receive, send)
        return
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode("latin-1"))
    if path.startswith("/starlette/"):
        await starlette_app(scope, receive, send)
    elif path.startswith("/sse/"):
        await _sse(path.removeprefix("/sse/"), query, send)
    elif path.startswith("/fail/"):
        raise RuntimeError(f"failing on purpose: {path.removeprefix('/fail/')}")
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
