"""What every connection of one server shares: the app, the settings, the live connections."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol

from osmium.admission import Admission
from osmium.asgi import ASGIApp
from osmium.channel import Counters
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings

log = logging.getLogger("osmium.connection")


#: Seconds between exact recounts of the worker's buffered output when its tally is over budget.
RECOUNT_INTERVAL = 0.1


class Connection(Protocol):
    reported_output: int

    @property
    def open_streams(self) -> int: ...
    @property
    def output_buffered(self) -> int: ...
    def retire(self) -> None: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...
    def drop(self) -> None: ...


class DateHeader:
    """The RFC 9110 Date value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


@dataclass
class ServerContext:
    app: ASGIApp
    protocol: ProtocolSettings
    keep_alive_timeout: float
    debug_frames: bool = False
    limits: Limits = field(default_factory=Limits)
    lifespan_state: dict[str, Any] | None = None
    #: Called once, when the request counter reaches max_requests (0: never).
    max_requests: int = 0
    on_max_requests: Callable[[], None] | None = None
    #: Application handlers run at once (0: no cap); see `admission`.
    max_active_handlers: int = 0
    #: Server pushes one HTTP/2 request may make (0: push off, not offered to apps).
    max_pushes_per_request: int = 0
    connections: set[Connection] = field(default_factory=set)
    date_header: DateHeader = field(default_factory=DateHeader)
    counters: Counters = field(default_factory=Counters)
    #: Output bytes buffered by all connections, as of each one's last write (drains that
    #: happen in between are not seen, so it can only overstate; a recount makes it exact).
    output_buffered: int = 0
    _last_recount: float = -RECOUNT_INTERVAL
    _recount_pending: bool = False
    _all_closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: The worker's handler slots, shared by its connections; None without a cap, so that a
    #: server without one spends nothing on admission.
    admission: Admission | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.max_active_handlers:
            self.admission = Admission(self.max_active_handlers)

    def register(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.counters.connections_total += 1
        self._all_closed.clear()

    def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._all_closed.set()

    def track_output(self, connection: Connection, buffered: int) -> None:
        """`connection` now holds `buffered` unsent bytes; over the worker budget, shed some."""
        self.output_buffered += buffered - connection.reported_output
        connection.reported_output = buffered
        if self.output_buffered > self.limits.max_worker_output:
            self._shed_output()

    def _shed_output(self) -> None:
        """Recount exactly; still over budget: drop the connections holding the most.

        At most every RECOUNT_INTERVAL: a call sooner defers the recount to the interval's end
        (stalled connections write nothing more that would call it again).
        """
        if self._recount_pending:
            return
        wait = self._last_recount + RECOUNT_INTERVAL - time.monotonic()
        if wait > 0:
            self._recount_pending = True
            asyncio.get_running_loop().call_later(wait, self._deferred_recount)
            return
        self._last_recount = time.monotonic()
        holdings = []
        for connection in self.connections:
            connection.reported_output = connection.output_buffered
            holdings.append((connection.reported_output, connection))
        self.output_buffered = sum(size for size, _ in holdings)
        holdings.sort(key=lambda holding: holding[0], reverse=True)
        dropped = 0
        for size, connection in holdings:
            if self.output_buffered <= self.limits.max_worker_output:
                break
            self.output_buffered -= size
            connection.reported_output = 0
            connection.drop()
            dropped += 1
        if dropped:
            log.warning(
                "worker output buffers over %d bytes: closed the %d connection(s) holding most",
                self.limits.max_worker_output,
                dropped,
            )

    def _deferred_recount(self) -> None:
        self._recount_pending = False
        if self.output_buffered > self.limits.max_worker_output:
            self._shed_output()

    def snapshot(self) -> Counters:
        """The counters with the open connections and streams filled in, for a report."""
        counters = self.counters
        counters.connections = len(self.connections)
        counters.streams = sum(connection.open_streams for connection in self.connections)
        return counters

    async def wait_all_closed(self) -> None:
        if self.connections:
            await self._all_closed.wait()
