"""Listeners behind a proxy that speaks the PROXY protocol (--proxy-protocol v1|v2).

The header comes before everything else the client sends, TLS included, so it is read from the
accepted socket before the event loop's transport (and its TLS) gets it: peeked, then exactly its
bytes taken, so the ClientHello or request that may share its segment stays in the socket. Then
the connection is served as on any listener, with the header's addresses as its peer and local
addresses (the scope's `client` and `server`, the admin plane's peer).
A header that does not come within the handshake timeout, or is not one of the version served,
closes the connection.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Any

from osmium.protocol.proxy_header import (
    V1_MAX_LENGTH,
    ProxyHeader,
    ProxyHeaderError,
    header_length,
    parse,
)
from osmium.tls import ProtocolFactory

log = logging.getLogger("osmium")

#: accept() errors that pass with time (descriptors, buffers): accepting pauses, as asyncio's does.
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_RETRY_DELAY = 1.0
#: Bytes peeked at first: a whole v1 header, or a v2 one with IPv4/IPv6 addresses.
FIRST_PEEK = V1_MAX_LENGTH


class ProxyProtocolServer:
    """Accepts on one listening socket; each connection's PROXY header first, then the protocol
    from `factory` (TLS through `ssl_context` when set, as `loop.create_server` would)."""

    def __init__(
        self,
        sock: socket.socket,
        factory: ProtocolFactory,
        version: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        backlog: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._factory = factory
        self._version = version
        self._timeout = timeout
        self._ssl_context = ssl_context
        #: Connections whose header or TLS handshake is still under way.
        self._pending: set[asyncio.Task[None]] = set()
        sock.setblocking(False)
        sock.listen(backlog)
        self._accepting = self._loop.create_task(self._accept())

    def close(self) -> None:
        """No new connections; those still sending their header are closed."""
        self._accepting.cancel()
        # Closed once the accept has let go of it: its descriptor may not be reused before.
        self._accepting.add_done_callback(lambda _: self._sock.close())
        for task in self._pending:
            task.cancel()

    async def _accept(self) -> None:
        while True:
            try:
                conn, _ = await self._loop.sock_accept(self._sock)
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in RESOURCE_ERRORS:
                    raise
                log.error("accept() failed (%s); accepting again in 1 s", error)
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            task = self._loop.create_task(self._serve(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        served = False
        try:
            async with asyncio.timeout(self._timeout):
                header = await self._read_header(conn)
            await self._loop.connect_accepted_socket(
                self._protocol_factory(header), conn, ssl=self._ssl_context,
                ssl_handshake_timeout=self._timeout if self._ssl_context else None,
            )  # fmt: skip
            served = True
        except ProxyHeaderError as error:
            log.warning("%s from %s: connection closed", error, _peer(conn))
        except (TimeoutError, OSError):
            pass  # no header in time, a peer gone, a failed TLS handshake (ssl.SSLError)
        finally:
            if not served:
                conn.close()

    async def _read_header(self, conn: socket.socket) -> ProxyHeader:
        """Exactly the header's bytes, taken from the socket; what follows stays there."""
        taken = b""
        wanted = FIRST_PEEK
        while True:
            await _readable(self._loop, conn)
            try:
                peeked = conn.recv(wanted, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not peeked:
                raise ConnectionResetError("closed before its PROXY header")
            data = taken + peeked
            length = header_length(data, self._version)
            if length is not None and length <= len(data):
                taken += conn.recv(length - len(taken))
                return parse(taken, self._version)
            # The header is not over yet: all the peeked bytes are the header's.
            taken += conn.recv(len(peeked))
            wanted = length - len(taken) if length is not None else FIRST_PEEK

    def _protocol_factory(self, header: ProxyHeader) -> ProtocolFactory:
        if header.client is None:
            return self._factory  # LOCAL, UNKNOWN: the connection's own addresses stand
        factory = self._factory
        return lambda: AddressHandover(factory, header)


class AddressHandover(asyncio.Protocol):
    """Hands its transport, with the header's addresses, to the protocol that serves it (below
    TLS when TLS is ours, as with pyOpenSSL; above it with the loop's own TLS)."""

    def __init__(self, factory: ProtocolFactory, header: ProxyHeader) -> None:
        self._factory = factory
        self._header = header

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        protocol = self._factory()
        transport.set_protocol(protocol)
        protocol.connection_made(ProxiedTransport(transport, self._header))  # type: ignore[arg-type]


class ProxiedTransport:
    """The connection's transport, but for its addresses: those the PROXY header gave."""

    def __init__(self, transport: asyncio.BaseTransport, header: ProxyHeader) -> None:
        self._transport = transport
        self._addresses = {"peername": header.client, "sockname": header.server}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._addresses:
            return self._addresses[name]
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        # The rest is the transport's own, looked up once: a later write costs what one on
        # the transport itself does.
        value = getattr(self._transport, name)
        setattr(self, name, value)
        return value


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, _wake, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _peer(conn: socket.socket) -> str:
    try:
        peer = conn.getpeername()
    except OSError:
        return "a closed connection"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a unix socket peer"
