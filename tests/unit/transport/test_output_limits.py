"""Output a peer leaves unread, on a stand-in socket: the send deadline and the worker budget.

The transport here only pretends to hold unsent bytes, so each test decides how much a connection
buffers and sees exactly when the server gives up on it (abort) instead of waiting (close).
"""

from __future__ import annotations

import asyncio
import time

from osmium.demo import app
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from osmium.transport.context import ServerContext
from osmium.transport.h2 import H2ServerProtocol
from tests.support.transports import HeldBytesTransport

SEND_TIMEOUT = 0.05
DEADLINE = 2.0


def context(**limits: float) -> ServerContext:
    return ServerContext(
        app=app,
        protocol=ProtocolSettings(),
        keep_alive_timeout=20.0,
        limits=Limits(send_timeout=SEND_TIMEOUT, **limits),  # type: ignore[arg-type]
    )


def connect(server: ServerContext) -> tuple[H2ServerProtocol, HeldBytesTransport]:
    protocol = H2ServerProtocol(server)
    transport = HeldBytesTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport


async def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_connection_paused_past_the_send_timeout_is_aborted() -> None:
    async def scenario() -> None:
        server = context()
        protocol, transport = connect(server)
        protocol.pause_writing()
        await until(lambda: transport.aborted, "the abort")
        assert server.counters.connections_dropped == 1
        await until(lambda: not server.connections, "the connection to be forgotten")

    asyncio.run(scenario())


def test_connection_that_resumes_in_time_is_kept() -> None:
    async def scenario() -> None:
        server = context()
        protocol, transport = connect(server)
        protocol.pause_writing()
        protocol.resume_writing()
        await asyncio.sleep(SEND_TIMEOUT * 4)  # past the deadline that must not fire
        assert not transport.aborted and server.counters.connections_dropped == 0

    asyncio.run(scenario())


def test_closing_with_unsent_bytes_aborts_after_the_send_timeout() -> None:
    """close() would wait for the peer to read; a peer that never reads must not keep it."""

    async def scenario() -> None:
        server = context()
        protocol, transport = connect(server)
        # The server preface, written at the end of the turn and never taken.
        await until(lambda: transport.buffered > 0, "the server preface")
        protocol.abort()  # the graceful timeout ran out: close
        assert transport.closing and not transport.aborted
        await until(lambda: transport.aborted, "the abort")

    asyncio.run(scenario())


def test_worker_over_its_output_budget_drops_the_biggest_holders_first() -> None:
    async def scenario() -> None:
        server = context(max_worker_output=1_000_000)
        connections = [connect(server) for _ in range(3)]
        for (protocol, transport), held in zip(
            connections, (900_000, 300_000, 50_000), strict=True
        ):
            transport.buffered = held
            server.track_output(protocol, held)
        big, middle, small = (transport for _, transport in connections)
        assert big.aborted and not middle.aborted and not small.aborted
        assert server.output_buffered == 350_000
        assert server.counters.connections_dropped == 1

    asyncio.run(scenario())


def test_recount_corrects_a_stale_tally_without_dropping_anyone() -> None:
    """Drained bytes are not reported; when the tally looks over budget, a recount finds the
    real total and drops nobody."""

    async def scenario() -> None:
        server = context(max_worker_output=1_000_000)
        (first, first_transport), (second, second_transport) = connect(server), connect(server)
        first_transport.buffered = 800_000
        server.track_output(first, 800_000)
        first_transport.buffered = 0  # drained, unreported
        second_transport.buffered = 400_000
        server.track_output(second, 400_000)
        assert not first_transport.aborted and not second_transport.aborted
        assert server.output_buffered == 400_000

    asyncio.run(scenario())
