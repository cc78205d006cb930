"""The admin process: forked by the acceptor, it serves the admin API on its own listener with
osmium's own HTTP stack, and asks the acceptor (over a socket pair, JSON lines) for answers.

A process of its own keeps HTTP out of the acceptor's select loop and threads out of a process
that forks; it ends when the acceptor closes the link or sends TERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from typing import Any

from osmium.admin.api import AdminAPI
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from osmium.transport.context import ServerContext
from osmium.transport.negotiate import ProtocolNegotiator

log = logging.getLogger("osmium.admin")

#: Seconds an API request waits for the acceptor; it answers every query by its own deadline
#: (a second for the workers, the ping timeout for a PING), so this only guards a lost answer.
QUERY_TIMEOUT = 60.0
KEEP_ALIVE_TIMEOUT = 60.0


class AcceptorLink:
    """Queries to the acceptor, answered in any order, matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._waiting: dict[int, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._next_id = 0

    async def query(self, op: str, **arguments: Any) -> tuple[int, dict[str, Any]]:
        self._next_id += 1
        query_id = self._next_id
        future = asyncio.get_running_loop().create_future()
        self._waiting[query_id] = future
        line = json.dumps({"id": query_id, "op": op, **arguments}).encode() + b"\n"
        self._writer.write(line)
        try:
            return await asyncio.wait_for(future, QUERY_TIMEOUT)
        except TimeoutError:
            return 504, {"error": "the acceptor did not answer"}
        finally:
            self._waiting.pop(query_id, None)

    async def read_answers(self) -> None:
        """Until the acceptor closes the link."""
        while line := await self._reader.readline():
            answer = json.loads(line)
            future = self._waiting.get(answer["id"])
            if future is not None and not future.done():
                future.set_result((answer["status"], answer["body"]))


def run_admin(listener: socket.socket, link: socket.socket, token: str | None) -> int:
    """The whole life of the admin process; returns its exit status."""
    return asyncio.run(_serve(listener, link, token))


async def _serve(listener: socket.socket, link_socket: socket.socket, token: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader, writer = await asyncio.open_connection(sock=link_socket, limit=64 * 1024 * 1024)
    link = AcceptorLink(reader, writer)
    context = ServerContext(
        app=AdminAPI(link, token),
        protocol=ProtocolSettings(),
        keep_alive_timeout=KEEP_ALIVE_TIMEOUT,
        limits=Limits(),
    )
    server = await loop.create_server(lambda: ProtocolNegotiator(context), sock=listener)
    answers = asyncio.ensure_future(link.read_answers())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({answers, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.close()
    for connection in list(context.connections):
        connection.abort()
    answers.cancel()
    stopped.cancel()
    return 0
