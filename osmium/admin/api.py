"""The admin API as an ASGI app, served by osmium itself in the admin process: JSON under /api,
Prometheus text at /metrics, the dashboard's static files at / and /static/.

Every /api and /metrics request needs the bearer token (when there is one); a wrong or missing
token gets 401 and nothing else. Mutations are POST only. Answers come from the acceptor over
the admin link (`Link.query`); this module only routes, checks and encodes.
"""

from __future__ import annotations

import hmac
import json
import re
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from osmium.admin.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from osmium.admin.metrics import render_metrics
from osmium.asgi import Receive, Scope, Send
from osmium.protocol.events import field_value

STATIC_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}
#: Connection filters of GET /api/connections: query parameter -> the workers' name for it.
CONNECTION_FILTERS = {
    "worker": "worker",
    "peer": "peer",
    "protocol": "protocol",
    "older-than": "older_than",
    "idle-for": "idle_for",
    "limit": "limit",
}
CONNECTION_ID = r"(?P<connection>\d+-\d+-\d+)"
#: (method, path pattern) -> the acceptor's op; the pattern's groups become its arguments.
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern}$"), op)
    for method, pattern, op in (
        ("GET", "/api/state", "state"),
        ("GET", "/api/history", "history"),
        ("GET", "/api/events", "events"),
        ("GET", "/api/connections", "connections"),
        ("GET", f"/api/connections/{CONNECTION_ID}", "connection"),
        ("POST", f"/api/connections/{CONNECTION_ID}/close", "close"),
        ("POST", f"/api/connections/{CONNECTION_ID}/ping", "ping"),
        ("POST", f"/api/connections/{CONNECTION_ID}/streams/(?P<stream>\\d+)/reset", "reset"),
        ("POST", "/api/workers/(?P<worker>\\d+)/drain", "drain"),
        ("POST", "/api/workers/add", "add"),
        ("POST", "/api/workers/remove", "remove"),
        ("POST", "/api/reload", "reload"),
    )
]


class Link(Protocol):
    """The admin process's line to the acceptor."""

    async def query(self, op: str, **arguments: Any) -> tuple[int, dict[str, Any]]: ...


class AdminAPI:
    """The ASGI app of the admin listener."""

    def __init__(self, link: Link, token: str | None) -> None:
        self._link = link
        self._token = token.encode() if token else None
        self._static = resources.files("osmium.admin") / "static"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # the admin process runs no lifespan; nothing else comes here
        path, method = scope["path"], scope["method"]
        if path == "/" or path.startswith("/static/"):
            await self._serve_static(path, method, send)
        elif not self._authorised(scope):
            await _json(send, 401, {"error": "unauthorized"}, [(b"www-authenticate", b"Bearer")])
        elif path == "/metrics":
            status, state = await self._link.query("state")
            await _respond(send, status, render_metrics(state).encode(), METRICS_CONTENT_TYPE)
        else:
            await self._api(scope, path, method, send)

    def _authorised(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        expected = b"Bearer " + self._token
        given = field_value(scope["headers"], b"authorization") or b""
        return hmac.compare_digest(given, expected)

    async def _api(self, scope: Scope, path: str, method: str, send: Send) -> None:
        for route_method, pattern, op in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if method != route_method:
                allow = [(b"allow", route_method.encode())]
                await _json(send, 405, {"error": f"use {route_method}"}, allow)
                return
            arguments: dict[str, Any] = dict(match.groupdict())
            arguments.update(_query_arguments(op, scope["query_string"]))
            status, body = await self._link.query(op, **arguments)
            await _json(send, status, body)
            return
        await _json(send, 404, {"error": "not found"})

    async def _serve_static(self, path: str, method: str, send: Send) -> None:
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        suffix = name[name.rfind(".") :] if "." in name else ""
        if method not in ("GET", "HEAD") or "/" in name or suffix not in STATIC_TYPES:
            await _json(send, 404, {"error": "not found"})
            return
        try:
            content = (self._static / name).read_bytes()
        except OSError:
            await _json(send, 404, {"error": "not found"})
            return
        await _respond(send, 200, content, STATIC_TYPES[suffix].decode())


def _query_arguments(op: str, query_string: bytes) -> dict[str, str]:
    """The query parameters an op takes (others are ignored, never echoed)."""
    query = {k: v[-1] for k, v in parse_qs(query_string.decode("latin-1")).items()}
    if op == "connections":
        return {CONNECTION_FILTERS[k]: v for k, v in query.items() if k in CONNECTION_FILTERS}
    if op in ("history", "events") and "since" in query:
        return {"since": query["since"]}
    if op == "close":
        return {"mode": query.get("mode", "graceful")}
    return {}


async def _json(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    await _respond(send, status, json.dumps(body).encode(), "application/json", headers)


async def _respond(
    send: Send,
    status: int,
    content: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(content)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
