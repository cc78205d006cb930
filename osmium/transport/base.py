"""What the HTTP/2 and HTTP/1.1 connection protocols share: their server context, the socket
they adopt, and the one way bytes go out and the connection closes."""

from __future__ import annotations

import asyncio
from typing import Protocol

from osmium.transport.context import ServerContext
from osmium.transport.drain import WriteGate

#: asyncio write buffer size above which the app's sends wait (and HTTP/2 stops reading).
WRITE_HIGH_WATER = 512 * 1024


class OutputCore(Protocol):
    def data_to_send(self) -> bytes: ...


def address(info: object) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


class ConnectionProtocol(asyncio.Protocol):
    """Base of one connection's protocol; subclasses own a sans-IO core and its events."""

    _core: OutputCore | None

    def __init__(self, context: ServerContext) -> None:
        self._context = context
        self._counters = context.counters
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._scheme = "http"
        self._client: tuple[str, int] | None = None
        self._server: tuple[str, int] | None = None
        self._write_gate = WriteGate(self._loop)
        self._closing = False
        self._closed = False

    def _adopt(self, transport: asyncio.BaseTransport) -> None:
        """Take the socket: buffer limits, scheme, addresses, and a place among the connections."""
        self._transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if transport.get_extra_info("ssl_object") is not None:
            self._scheme = "https"
        self._client = address(transport.get_extra_info("peername"))
        self._server = address(transport.get_extra_info("sockname"))
        self._context.register(self)  # type: ignore[arg-type]

    def _flush(self) -> None:
        """Everything the core has queued, in one write."""
        assert self._core is not None
        data = self._core.data_to_send()
        if data and not self._closed:
            assert self._transport is not None
            self._transport.write(data)
            self._counters.bytes_sent += len(data)

    def _close_transport(self) -> None:
        if self._closed or self._transport is None:
            return
        self._flush()
        self._closed = True
        self._transport.close()

    def abort(self) -> None:
        """Close now, whatever is in flight (the graceful timeout ran out)."""
        self._close_transport()

    def date_header(self) -> bytes:
        return self._context.date_header()
