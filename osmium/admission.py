"""Handler admission: at most `limit` application handlers run at once in a worker; the rest wait.
And the concurrency limit: past `limit` requests in flight, one more is refused (503), not queued.

Waiting streams are admitted fairly across connections (round robin over the connections that
have one waiting) and, within a connection, most urgent first (RFC 9218 urgency), then in stream
order. Below the limit admission is a counter: no future, no task. Without a limit there is no
Admission at all (`ServerContext.admission` is None).
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Hashable

#: A waiting stream: (urgency, stream id, what its task awaits). A connection's streams have
#: distinct ids, so the heap never compares two futures.
Waiter = tuple[int, int, "asyncio.Future[bool]"]


class Admission:
    """The worker's handler slots: `try_enter` or `wait` for one, `leave` when done.

    A waiting stream's future ends True when the stream got a slot, False when it was cancelled
    (reset, or its connection went) and must not run its handler.
    """

    def __init__(self, limit: int) -> None:
        #: Handlers allowed to run at once.
        self.limit = limit
        #: Handlers running (or admitted and about to run).
        self.active = 0
        self._queues: dict[Hashable, list[Waiter]] = {}
        #: Connections with a waiting stream, in the order their turns come.
        self._ring: deque[Hashable] = deque()

    @property
    def waiting(self) -> int:
        """Streams waiting for a slot."""
        return sum(len(queue) for queue in self._queues.values())

    def is_waiting(self, connection: Hashable, stream_id: int) -> bool:
        """Whether that stream waits for a slot (for the admin plane's view)."""
        return any(waiter[1] == stream_id for waiter in self._queues.get(connection, ()))

    def try_enter(self) -> bool:
        """Take a slot if one is free. Streams wait only while all slots are taken, because
        `leave` hands a freed slot straight to a waiter: a free slot means nobody waits."""
        if self.active < self.limit:
            self.active += 1
            return True
        return False

    def wait(self, connection: Hashable, stream_id: int, urgency: int) -> asyncio.Future[bool]:
        """Queue a stream that found no free slot; the future says how its wait ended."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(connection)
        if queue is None:
            queue = self._queues[connection] = []
            self._ring.append(connection)
        heapq.heappush(queue, (urgency, stream_id, future))
        return future

    def leave(self, future: asyncio.Future[bool] | None = None) -> None:
        """A stream's task ends (`future`: what it waited on, None if it entered at once): the
        slot it holds, if any, goes to the next connection's most urgent stream, or is freed."""
        if future is not None and not (
            future.done() and not future.cancelled() and future.result()
        ):
            return  # refused, or its task was cancelled while waiting: it held no slot
        ring = self._ring
        while ring:
            connection = ring.popleft()
            queue = self._queues[connection]
            _urgency, _stream_id, waiting = heapq.heappop(queue)
            if queue:
                ring.append(connection)
            else:
                del self._queues[connection]
            if not waiting.done():  # a task cancelled while waiting left its future behind
                waiting.set_result(True)
                return
        self.active -= 1

    def cancel(self, connection: Hashable, stream_id: int) -> None:
        """A waiting stream was reset: out of the queue, its task told not to run the handler."""
        queue = self._queues.get(connection)
        if queue is None:
            return
        waiter = next((waiter for waiter in queue if waiter[1] == stream_id), None)
        if waiter is None:
            return
        queue.remove(waiter)
        heapq.heapify(queue)
        if not queue:
            del self._queues[connection]
            self._ring.remove(connection)
        _refuse(waiter[2])

    def forget(self, connection: Hashable) -> None:
        """The connection is gone: none of its waiting streams will run."""
        queue = self._queues.pop(connection, None)
        if queue is None:
            return
        self._ring.remove(connection)
        for _urgency, _stream_id, future in queue:
            _refuse(future)


class ConcurrencyLimit:
    """--limit-concurrency: the requests and WebSockets a worker has in flight (running, or
    waiting for a handler slot). Past `limit` a new one is refused at once: the server answers
    503 and the app never sees it, where Admission would make it wait."""

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    @property
    def full(self) -> bool:
        return self.in_flight >= self.limit

    def try_enter(self) -> bool:
        """Count one more in flight; False, and nothing counted, at the limit."""
        if self.in_flight < self.limit:
            self.in_flight += 1
            return True
        return False

    def leave(self) -> None:
        """One that entered is done (its handler returned, its WebSocket ended)."""
        self.in_flight -= 1


def _refuse(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
