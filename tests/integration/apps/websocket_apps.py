"""Plain ASGI WebSocket apps for test_websocket.py: one route per behaviour under test.

Apps that must tell the test what they saw print one line (the worker's stdout is the test's pipe);
X in a path names the connection in that line:
  /echo                 accept, echo every message (text as text, bytes as bytes)
  /scope                accept with the last subprotocol offered and a header `x-accepted: yes`,
                        send the scope as JSON, then echo
  /deny                 websocket.close before accept: the server must answer 403
  /deny-http            websocket.http.response: 401 with a body and a header of its own
  /close?code=C&reason=R  accept, then close with that code and reason
  /flood/X?count=N&size=S[&trigger]  accept, (with `trigger`: wait for one message,) then
                        send N binary messages of S bytes (`flood_message`) as fast as
                        `send` returns, print `flood X: sent N`, then close 1000 (or print
                        `flood X: send raised ERROR` for the OSError of a client gone)
  /record/X             accept, echo, and at websocket.disconnect print
                        `record X: disconnect CODE REASON`
  /fail?when=before|after  raise before or after accepting (its tracebacks need a server of
                        their own)
  /idle/X?seconds=T     accept, read nothing for T seconds, print `idle X: reading`, then read until
                        the disconnect and print `idle X: received N messages, B bytes`
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DENY_BODY = b"no entry without a token"


def flood_message(index: int, size: int) -> bytes:
    """Message `index` of a flood: its number, then a byte that changes with it."""
    return struct.pack("!I", index) + bytes([index % 251]) * (size - 4)


def _say(line: str) -> None:
    print(line, flush=True)


def _query(scope: Scope) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}


async def _echo_until_disconnect(receive: Receive, send: Send) -> dict[str, Any]:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def echo(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    await send({"type": "websocket.accept"})
    await _echo_until_disconnect(receive, send)


async def show_scope(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    offered = scope.get("subprotocols") or []
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[-1] if offered else None,
            "headers": [(b"x-accepted", b"yes")],
        }
    )
    shown = {
        key: scope.get(key)
        for key in ("type", "asgi", "http_version", "scheme", "path", "subprotocols", "client")
    }
    shown["raw_path"] = scope["raw_path"].decode("latin-1")
    shown["query_string"] = scope["query_string"].decode("latin-1")
    shown["root_path"] = scope.get("root_path")
    shown["server"] = scope.get("server")
    shown["extensions"] = sorted(scope.get("extensions") or {})
    shown["tls"] = (scope.get("extensions") or {}).get("tls")
    shown["headers"] = [[name.decode(), value.decode()] for name, value in scope["headers"]]
    await send({"type": "websocket.send", "text": json.dumps(shown)})
    await _echo_until_disconnect(receive, send)


async def deny(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    await send({"type": "websocket.close"})


async def deny_http(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(DENY_BODY)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": DENY_BODY})


async def close(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    query = _query(scope)
    await send({"type": "websocket.accept"})
    code, reason = int(query.get("code", "1000")), query.get("reason", "")
    await send({"type": "websocket.close", "code": code, "reason": reason})


async def flood(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    query = _query(scope)
    count, size = int(query["count"]), int(query["size"])
    await send({"type": "websocket.accept"})
    if "trigger" in query:
        await receive()  # the client says when: one message, any content
    try:
        for index in range(count):
            await send({"type": "websocket.send", "bytes": flood_message(index, size)})
    except OSError as error:  # ASGI 2.4: `send` on a closed connection raises an OSError
        _say(f"flood {marker}: send raised {type(error).__name__}")
        return
    _say(f"flood {marker}: sent {count}")
    await send({"type": "websocket.close", "code": 1000})


async def record(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    await send({"type": "websocket.accept"})
    message = await _echo_until_disconnect(receive, send)
    _say(f"record {marker}: disconnect {message.get('code')} {message.get('reason') or ''}")


async def fail(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    if _query(scope).get("when") == "after":
        await send({"type": "websocket.accept"})
    raise RuntimeError("failing on purpose")


async def idle(scope: Scope, receive: Receive, send: Send, marker: str) -> None:
    await send({"type": "websocket.accept"})
    await asyncio.sleep(float(_query(scope)["seconds"]))
    _say(f"idle {marker}: reading")
    count = size = 0
    while (message := await receive())["type"] == "websocket.receive":
        count += 1
        size += len(message.get("bytes") or message.get("text") or "")
    _say(f"idle {marker}: received {count} messages, {size} bytes")


ROUTES = {
    "echo": echo,
    "scope": show_scope,
    "deny": deny,
    "deny-http": deny_http,
    "close": close,
    "flood": flood,
    "record": record,
    "idle": idle,
    "fail": fail,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    route, _, marker = scope["path"].strip("/").partition("/")
    if scope["type"] != "websocket" or route not in ROUTES:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    assert (await receive())["type"] == "websocket.connect"
    await ROUTES[route](scope, receive, send, marker)
