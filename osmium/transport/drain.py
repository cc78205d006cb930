"""Senders wait here while the socket's write buffer is above its high-water mark."""

from __future__ import annotations

import asyncio


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
