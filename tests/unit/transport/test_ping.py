"""An operator's PING through the HTTP/2 transport (`H2ServerProtocol.ping`), over loopback.

The client is h2 on an asyncio stream: it answers PINGs when it reads, and a silent one never
reads after the handshake, so the PING's ACK never comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import h2.config
import h2.connection
import h2.events

from osmium.demo import app
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from osmium.transport.context import ServerContext
from osmium.transport.h2 import H2ServerProtocol

PING_TIMEOUT = 0.3
DEADLINE = 5.0


class Client:
    """h2's client side on a loopback connection; `answer()` reads and ACKs what comes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.pings = 0

    async def handshake(self) -> None:
        self.h2.initiate_connection()
        self.writer.write(self.h2.data_to_send())
        while not any(isinstance(e, h2.events.SettingsAcknowledged) for e in await self._read()):
            pass

    async def answer(self) -> bool:
        """Read once, ACK what needs it; False at EOF."""
        events = await self._read()
        self.pings += sum(isinstance(e, h2.events.PingReceived) for e in events)
        return not any(isinstance(e, h2.events.ConnectionTerminated) for e in events)

    async def _read(self) -> list[h2.events.Event]:
        data = await asyncio.wait_for(self.reader.read(65536), DEADLINE)
        if not data:
            return [h2.events.ConnectionTerminated()]
        events = self.h2.receive_data(data)
        self.writer.write(self.h2.data_to_send())
        return events


@asynccontextmanager
async def served() -> AsyncIterator[tuple[ServerContext, list[H2ServerProtocol], Client]]:
    """A listening H2ServerProtocol (idle PINGs off: only the operator pings) and one client
    past its handshake."""
    context = ServerContext(
        app=app,
        protocol=ProtocolSettings(),
        keep_alive_timeout=20.0,
        limits=Limits(idle_ping=0, ping_timeout=PING_TIMEOUT),
    )
    protocols: list[H2ServerProtocol] = []

    def factory() -> H2ServerProtocol:
        protocols.append(H2ServerProtocol(context))
        return protocols[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Client(*await asyncio.open_connection("127.0.0.1", port))
    try:
        await client.handshake()
        yield context, protocols, client
    finally:
        client.writer.close()
        server.close()
        await server.wait_closed()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_ping_returns_the_round_trip_of_the_ack() -> None:
    async def scenario() -> None:
        async with served() as (_, [protocol], client):
            answering = asyncio.create_task(client.answer())
            rtt = await protocol.ping()
            assert await answering and client.pings == 1
            assert rtt is not None and 0 <= rtt < PING_TIMEOUT
            assert protocol._core.ping_rtt == rtt

    asyncio.run(scenario())


def test_pings_at_once_share_one_ping() -> None:
    async def scenario() -> None:
        async with served() as (_, [protocol], client):
            answering = asyncio.create_task(client.answer())
            first, second = await asyncio.gather(protocol.ping(), protocol.ping())
            assert await answering and client.pings == 1
            assert first is not None and first == second

    asyncio.run(scenario())


def test_an_unanswered_ping_returns_none_and_closes_the_connection_counted() -> None:
    async def scenario() -> None:
        async with served() as (context, [protocol], client):
            started = time.monotonic()
            assert await protocol.ping() is None
            assert time.monotonic() - started >= PING_TIMEOUT
            await until(lambda: context.counters.timeouts == 1, "the timeout to be counted")
            while await client.answer():  # the PING, the GOAWAY, then EOF
                pass
            assert client.pings == 1
            assert await protocol.ping() is None  # closed: nothing to ping

    asyncio.run(scenario())
