"""Backpressure at the socket: senders wait while the write buffer is above its high-water
mark (WriteGate); reading stops while the app has too much input it has not taken (ReadGate)."""

from __future__ import annotations

import asyncio

#: Input bytes the app has not taken before the socket is no longer read.
READ_LIMIT = 256 * 1024


class WriteGate:
    """Open unless asyncio paused writing; `wait()` returns once it reopens or the socket closes."""

    __slots__ = ("_loop", "_waiter", "paused")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Writing may go on (resume_writing), or never will (connection lost): wake everyone."""
        self.paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        if self._waiter is None:
            self._waiter = self._loop.create_future()
        # Shielded: one cancelled sender must not cancel the wait of every other one.
        await asyncio.shield(self._waiter)


class ReadGate:
    """Input read for the app and not yet taken by it (an HTTP/1.1 request body, WebSocket
    messages): past `limit` the socket is no longer read, until the app has taken half."""

    __slots__ = ("_limit", "held", "paused")

    def __init__(self, limit: int = READ_LIMIT) -> None:
        self._limit = limit
        self.held = 0
        self.paused = False

    def hold(self, transport: asyncio.Transport, size: int) -> None:
        self.held += size
        if self.held > self._limit and not self.paused:
            self.paused = True
            transport.pause_reading()

    def release(self, transport: asyncio.Transport, size: int) -> None:
        self.held -= size
        if self.held <= self._limit // 2:
            self.resume(transport)

    def resume(self, transport: asyncio.Transport) -> None:
        if self.paused:
            self.paused = False
            transport.resume_reading()

    def forget(self) -> None:
        """What was held will never be taken (its request is over)."""
        self.held = 0
