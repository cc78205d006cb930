"""Each request's handler runs in a task of its own, made by the loop's task factory if set."""

from __future__ import annotations

import asyncio
from typing import Any

import h2.config
import h2.connection

from osmium.protocol.settings import ProtocolSettings
from osmium.transport.base import HANDLER_TASK_NAME
from osmium.transport.context import ServerContext
from osmium.transport.negotiate import ProtocolNegotiator
from tests.support.h2_peer import GET
from tests.support.transports import HeldBytesTransport

DEADLINE = 2.0


def handler_tasks(requests: int, task_factory: Any = None) -> list[asyncio.Task[Any] | None]:
    """The task each of `requests` requests' handlers ran in (one connection), on a loop with
    `task_factory`."""
    seen: list[asyncio.Task[Any] | None] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(asyncio.current_task())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> None:
        asyncio.get_running_loop().set_task_factory(task_factory)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        for stream_id in range(1, 2 * requests, 2):
            client.send_headers(stream_id, GET, end_stream=True)
        context = ServerContext(app=app, protocol=ProtocolSettings(), keep_alive_timeout=20.0)
        negotiator = ProtocolNegotiator(context)
        negotiator.connection_made(HeldBytesTransport(negotiator))
        negotiator.data_received(client.data_to_send())
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while len(seen) < requests:
            assert asyncio.get_running_loop().time() < deadline, "the handlers did not run"
            await asyncio.sleep(0)

    asyncio.run(scenario())
    return seen


def test_each_handler_runs_in_a_named_task_of_its_own() -> None:
    first, second = handler_tasks(2)
    assert first is not None and second is not None and first is not second
    assert first.get_name() == second.get_name() == HANDLER_TASK_NAME


def test_handlers_tasks_come_from_the_loops_task_factory() -> None:
    """An app may set one (in its lifespan, say): osmium's own tasks then come from it too."""
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    [task] = handler_tasks(1, factory)
    assert task in made
