"""Apps that fail while the server starts or stops, each in one way, for the start-up error tests.

`startup_raises` and `shutdown_raises` raise inside the lifespan protocol; `create_app` is an app
factory (serve it with --factory); `failing_factory` raises and `factory_of_nothing` returns None;
`starlette_startup_raises` is a Starlette app whose lifespan raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

STARTUP_ERROR = "database unreachable at startup (osmium start-up test)"
SHUTDOWN_ERROR = "could not flush the cache at shutdown (osmium start-up test)"
FACTORY_ERROR = "settings missing in the factory (osmium start-up test)"
FACTORY_BODY = b"served by the app the factory made"
STARLETTE_STARTUP_ERROR = "Starlette lifespan cannot reach its database (osmium start-up test)"


async def _hello(scope: dict[str, Any], receive: Any, send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _connect_to_database() -> None:
    raise RuntimeError(STARTUP_ERROR)


async def startup_raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        _connect_to_database()
    await _hello(scope, receive, send, b"never served")


async def shutdown_raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError(SHUTDOWN_ERROR)
    await _hello(scope, receive, send, b"serving until shutdown")


def create_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await _hello(scope, receive, send, FACTORY_BODY)

    return app


def failing_factory() -> Any:
    raise LookupError(FACTORY_ERROR)


def factory_of_nothing() -> None:
    return None


@asynccontextmanager
async def _unreachable_database(app: Starlette) -> AsyncIterator[None]:
    raise RuntimeError(STARLETTE_STARTUP_ERROR)
    yield  # a generator, as a lifespan must be; never reached


#: Starlette reports lifespan.startup.failed (its traceback as the message), then raises again.
starlette_startup_raises = Starlette(lifespan=_unreachable_database)
