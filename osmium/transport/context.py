"""What every connection of one server shares: the app, the settings, the live connections."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from email.utils import formatdate
from typing import Any, Protocol

from osmium.admin.stats import RequestStats
from osmium.admission import Admission, ConcurrencyLimit
from osmium.asgi import SERVER_FIELD, ASGIApp, ResponseFields
from osmium.channel import Counters
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from osmium.protocol.ws import WebSocketSettings

log = logging.getLogger("osmium.connection")


#: Seconds between exact recounts of the worker's buffered output when its tally is over budget.
RECOUNT_INTERVAL = 0.1


class ConnectionTally:
    """What a connection moved and served, for the worker's counters and the admin plane. One
    attribute of the connection, not five: a protocol object with 30 attributes or more loses
    CPython's split instance dict, and every attribute access on the hot path gets slower."""

    __slots__ = ("bytes_in", "bytes_out", "opened_at", "requests", "serial")

    def __init__(self) -> None:
        #: The connection's number in its worker (ServerContext.register): its admin id.
        self.serial = 0
        self.opened_at = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0


class Connection(Protocol):
    reported_output: int
    tally: ConnectionTally

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

    def now(self) -> bytes:
        """The value for this second (a method, handed out bound: calling an instance goes
        through its type's __call__ slot, several times the cost)."""
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
    #: Largest request body in bytes (0: no limit): a larger one gets 413, the app sees no more.
    max_request_body_size: int = 0
    #: Requests and WebSockets in flight at once (0: no limit); see `concurrency`.
    limit_concurrency: InitVar[int] = 0
    #: Send `server: osmium` where the app sent no `server` field.
    server_header: InitVar[bool] = True
    #: Fields every response gets unless it names them itself: (name, value), names lower case.
    default_headers: InitVar[tuple[tuple[str, str], ...]] = ()
    connections: set[Connection] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)
    #: Output bytes buffered by all connections, as of each one's last write (drains that
    #: happen in between are not seen, so it can only overstate; a recount makes it exact).
    output_buffered: int = 0
    _last_recount: float = -RECOUNT_INTERVAL
    _recount_pending: bool = False
    _all_closed: asyncio.Event = field(default_factory=asyncio.Event)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    #: --http: "auto" (HTTP/2 and HTTP/1.1), "1" or "2" (that one only: no sniffing, no h2c).
    http: str = "auto"
    #: Per-request counts for the admin plane; None while it is off, so nothing is counted.
    request_stats: RequestStats | None = None
    #: Told of defences fired and policy closes: (kind, message, what fired, peer), for the
    #: admin plane's event log; None while it is off.
    on_event: Callable[[str, str, str, str], None] | None = None
    #: Bytes moved by the connections already closed (live ones keep their own count).
    _closed_bytes_in: int = 0
    _closed_bytes_out: int = 0
    #: The last connection number given out (ids for the admin plane).
    _serial: int = 0
    #: The worker's handler slots, shared by its connections; None without a cap, so that a
    #: server without one spends nothing on admission.
    admission: Admission | None = field(init=False, default=None)
    #: The worker's requests in flight, refused past --limit-concurrency; None without a limit.
    concurrency: ConcurrencyLimit | None = field(init=False, default=None)
    #: Date, server and --header fields, added to every response (precomputed once).
    response_fields: ResponseFields = field(init=False)

    def __post_init__(
        self,
        limit_concurrency: int,
        server_header: bool,
        default_headers: tuple[tuple[str, str], ...],
    ) -> None:
        # Set on the instance even when None: read on every request, an attribute only the
        # class has takes Python 3.11's slow path (no specialisation) each time.
        self.admission = Admission(self.max_active_handlers) if self.max_active_handlers else None
        self.concurrency = ConcurrencyLimit(limit_concurrency) if limit_concurrency else None
        defaults = [(name.encode(), value.encode()) for name, value in default_headers]
        if server_header and all(name != b"server" for name, _ in defaults):
            defaults.insert(0, SERVER_FIELD)
        self.response_fields = ResponseFields(DateHeader().now, defaults)

    def register(self, connection: Connection, new: bool = True) -> None:
        """A connection to serve; `new` is False for one an upgrade handed over (h2c, a
        WebSocket), already counted as the HTTP/1.1 connection it was."""
        self.connections.add(connection)
        self._serial += 1
        connection.tally.serial = self._serial
        if new:
            self.counters.connections_total += 1
        self._all_closed.clear()

    def unregister(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            # Bytes are counted per connection only (one addition per read or write, not two).
            self._closed_bytes_in += connection.tally.bytes_in
            self._closed_bytes_out += connection.tally.bytes_out
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

    def defence_fired(self, defence: str, peer: str) -> None:
        """A budget closed a connection: counted, and told to the admin plane when it is on."""
        defences = self.counters.defences
        defences[defence] = defences.get(defence, 0) + 1
        if self.on_event is not None:
            self.on_event("defence", f"{defence}: closed a connection from {peer}", defence, peer)

    def refused(self, limit: str, status: int | None = None) -> None:
        """A request stopped by `limit` (413, 503), counted with the defences. `status`: the
        answer to one no handler ran for, recorded as a response when the admin plane is on (a
        running handler's request is recorded when it ends)."""
        defences = self.counters.defences
        defences[limit] = defences.get(limit, 0) + 1
        if status is not None and self.request_stats is not None:
            self.request_stats.record(status, 0.0)

    def closed_by_policy(self, policy: str, peer: str) -> None:
        """A connection closed by a policy (idle-ping): told to the admin plane when it is on."""
        if self.on_event is not None:
            message = f"connection from {peer} closed by the {policy} policy"
            self.on_event("connection-closed", message, policy, peer)

    def snapshot(self) -> Counters:
        """The counters with the open connections and streams filled in, for a report."""
        counters = self.counters
        connections = self.connections
        counters.connections = len(connections)
        counters.streams = sum(connection.open_streams for connection in connections)
        counters.bytes_received = self._closed_bytes_in + sum(c.tally.bytes_in for c in connections)
        counters.bytes_sent = self._closed_bytes_out + sum(c.tally.bytes_out for c in connections)
        return counters

    async def wait_all_closed(self) -> None:
        if self.connections:
            await self._all_closed.wait()
