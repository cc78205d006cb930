"""What every connection of one server shares: the app, the settings, the live connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol

from osmium.asgi import ASGIApp
from osmium.channel import Counters
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings


class Connection(Protocol):
    @property
    def open_streams(self) -> int: ...
    def retire(self) -> None: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...


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
    connections: set[Connection] = field(default_factory=set)
    date_header: DateHeader = field(default_factory=DateHeader)
    counters: Counters = field(default_factory=Counters)
    _all_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def register(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.counters.connections_total += 1
        self._all_closed.clear()

    def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._all_closed.set()

    def snapshot(self) -> Counters:
        """The counters with the open connections and streams filled in, for a report."""
        counters = self.counters
        counters.connections = len(self.connections)
        counters.streams = sum(connection.open_streams for connection in self.connections)
        return counters

    async def wait_all_closed(self) -> None:
        if self.connections:
            await self._all_closed.wait()
