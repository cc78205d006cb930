"""An ordinary Starlette application, written as anyone would, served by osmium unmodified."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


class State(TypedDict):
    greeting: str
    inventory: dict[str, int]
    startup_count: int


STARTUPS = 0


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[State]:
    global STARTUPS
    STARTUPS += 1
    yield {
        "greeting": "hello from the lifespan",
        "inventory": {"apple": 3, "pear": 0},
        "startup_count": STARTUPS,
    }


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("starlette on osmium")


async def user(request: Request) -> JSONResponse:
    user_id = request.path_params["user_id"]
    return JSONResponse({"user_id": user_id, "is_int": isinstance(user_id, int)})


async def item(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    return JSONResponse(
        {
            "name": name,
            "q": request.query_params.get("q"),
            "in_stock": request.state.inventory.get(name),
        }
    )


async def create(request: Request) -> JSONResponse:
    document = await request.json()
    return JSONResponse({"received": document, "keys": sorted(document)}, status_code=201)


async def upload(request: Request) -> JSONResponse:
    digest = hashlib.sha256()
    length = 0
    async for chunk in request.stream():
        digest.update(chunk)
        length += len(chunk)
    return JSONResponse({"length": length, "sha256": digest.hexdigest()})


async def numbers(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("n", "5"))

    async def lines() -> AsyncIterator[bytes]:
        for number in range(count):
            yield f"line {number}\n".encode()

    return StreamingResponse(lines(), media_type="text/plain")


async def state(request: Request) -> JSONResponse:
    return JSONResponse(
        {"greeting": request.state.greeting, "startup_count": request.state.startup_count}
    )


async def request_info(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "http_version": request.scope["http_version"],
            "scheme": request.url.scheme,
            "host": request.headers.get("host"),
            "user_agent": request.headers.get("user-agent"),
            "x_custom": request.headers.get("x-custom"),
            "client_host": request.client.host if request.client else None,
        }
    )


async def fail(request: Request) -> PlainTextResponse:
    raise RuntimeError("starlette route failing on purpose")


class Shout(WebSocketEndpoint):
    """Starlette's class-based WebSocket endpoint: every text message back in capitals."""

    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: str) -> None:
        await websocket.send_text(data.upper())


async def greet(websocket: WebSocket) -> None:
    """A function WebSocket route: JSON in, JSON out, then a close with a code of its own."""
    await websocket.accept(subprotocol="json")
    name = (await websocket.receive_json())["name"]
    await websocket.send_json({"greeting": f"hello {name}"})
    await websocket.close(code=4000, reason="done")


app = Starlette(
    routes=[
        WebSocketRoute("/ws/shout", Shout),
        WebSocketRoute("/ws/greet", greet),
        Route("/", home),
        Route("/users/{user_id:int}", user),
        Route("/items/{name}", item),
        Route("/items", create, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/numbers", numbers),
        Route("/state", state),
        Route("/info", request_info),
        Route("/fail", fail),
    ],
    lifespan=lifespan,
)
