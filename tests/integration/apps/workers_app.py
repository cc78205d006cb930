"""An ASGI app for the worker-pool tests: every answer says which worker process gave it.

Routes:
  /pid          the serving worker's pid, as text
  /slow?ms=N    the worker's pid after N ms (the event loop keeps running meanwhile)
  /block?s=S    blocks the worker's whole event loop for S seconds (time.sleep), then its pid
Any other path answers 404. Lifespan is supported and always succeeds.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import parse_qs

from osmium.demo import app as demo_app

TEXT = [(b"content-type", b"text/plain")]


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [*TEXT, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await demo_app(scope, receive, send)  # the demo's lifespan: always succeeds
        return
    query = parse_qs(scope["query_string"].decode("latin-1"))
    pid = str(os.getpid()).encode()
    path = scope["path"]
    if path == "/pid":
        await _respond(send, 200, pid)
    elif path == "/slow":
        await asyncio.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        await _respond(send, 200, pid)
    elif path == "/block":
        time.sleep(float(query.get("s", ["1"])[0]))  # on purpose: no heartbeat while it blocks
        await _respond(send, 200, pid)
    else:
        await _respond(send, 404, b"not found")
