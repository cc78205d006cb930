"""The first protocol of every connection: it picks HTTP/2 or HTTP/1.1, then steps aside.

TLS connections follow ALPN; cleartext ones speak HTTP/2 when their first bytes are the client
preface (prior knowledge) and HTTP/1.1 otherwise (from where an `Upgrade: h2c` can still lead to
HTTP/2). With --http 1 or 2 there is nothing to pick: every connection speaks that one, so a
cleartext client that is wrong about it gets that protocol's error (GOAWAY(PROTOCOL_ERROR) for a
bad preface, 400 for a request line that is not HTTP/1.1).
"""

from __future__ import annotations

import asyncio

from osmium.transport.context import ServerContext
from osmium.transport.h1 import H1ServerProtocol
from osmium.transport.h2 import H2ServerProtocol

#: The first line of the HTTP/2 client preface (RFC 9113 §3.4), which no HTTP/1.1 request has.
PREFACE_LINE = b"PRI * HTTP/2.0\r\n"


class ProtocolNegotiator(asyncio.Protocol):
    def __init__(self, context: ServerContext) -> None:
        self._context = context
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        only = self._context.http
        if only != "auto":
            self._hand_over(
                H2ServerProtocol(self._context) if only == "2" else H1ServerProtocol(self._context)
            )
            return
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            self._hand_over(H2ServerProtocol(self._context))
        elif alpn == "http/1.1":
            self._hand_over(H1ServerProtocol(self._context))
        else:
            # Until the first bytes come, nothing else would ever close a silent connection.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._context.limits.handshake_timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._buffer.startswith(PREFACE_LINE):
            # An HTTP/2 attempt, even if the rest of its preface is wrong: HTTP/2 answers that.
            self._hand_over(H2ServerProtocol(self._context))
        elif not PREFACE_LINE.startswith(self._buffer):
            self._hand_over(H1ServerProtocol(self._context))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        assert self._transport is not None
        if self._timer is not None:
            self._timer.cancel()
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        if self._buffer:
            data, self._buffer = self._buffer, b""
            protocol.data_received(data)
