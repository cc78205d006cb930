"""Run one server process: bind, lifespan startup, serve, and a graceful stop on SIGTERM/SIGINT.

Everything that can fail because of the user's input (address, certificate, app) fails here, before
the event loop starts, as a `ConfigError` with one line to show.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import ssl
from collections.abc import Callable

from osmium.app_loader import import_app
from osmium.asgi import ASGIApp
from osmium.config import Config, ConfigError
from osmium.lifespan import Lifespan, LifespanFailure
from osmium.tls import TLSConfigError, load_backend
from osmium.transport.context import ServerContext
from osmium.transport.h2 import H2ServerProtocol

log = logging.getLogger("osmium")


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as error:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    except OverflowError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error}") from None


def tls_context(config: Config) -> ssl.SSLContext | None:
    if config.certfile is None or config.keyfile is None:
        return None
    try:
        return load_backend(config.tls_backend).server_context(config.certfile, config.keyfile)
    except TLSConfigError as error:
        raise ConfigError(str(error)) from None


def listening_url(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (or demanded); the stdlib loop otherwise."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "--loop uvloop: uvloop is not installed (pip install uvloop)"
            ) from None
        return None
    return uvloop.new_event_loop


class Server:
    """One listening socket, its connections, and the app's lifespan."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app: ASGIApp = import_app(config.app)
        self.ssl_context = tls_context(config)
        self.sock = bind_socket(config.host, config.port, config.backlog)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()

    def run(self) -> int:
        with asyncio.Runner(loop_factory=loop_factory(self.config.loop)) as runner:
            return runner.run(self.serve())

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        state: dict = {}
        lifespan = Lifespan(self.app, state)
        try:
            await lifespan.startup()
        except LifespanFailure as failure:
            log.error("application startup failed: %s", failure)
            self.sock.close()
            return 3
        context = ServerContext(
            app=self.app,
            protocol=self.config.protocol,
            keep_alive_timeout=self.config.keep_alive_timeout,
            debug_frames=self.config.debug_frames,
            lifespan_state=state if lifespan.supported else None,
        )
        server = await loop.create_server(
            lambda: H2ServerProtocol(context), sock=self.sock, ssl=self.ssl_context
        )
        log.info("listening on %s", listening_url(self.sock, self.ssl_context is not None))
        await self._stop.wait()
        log.info("stopping: no new connections, finishing streams in flight")
        server.close()
        await self._drain(context)
        try:
            await lifespan.shutdown()
        except LifespanFailure as failure:
            log.error("application shutdown failed: %s", failure)
        log.info("stopped")
        return 0

    def request_stop(self) -> None:
        """First signal: graceful stop. A second one: close every connection now."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def _drain(self, context: ServerContext) -> None:
        """GOAWAY everywhere, then wait for streams until done, timed out, or forced."""
        for connection in list(context.connections):
            connection.shutdown()
        waits = {
            asyncio.ensure_future(context.wait_all_closed()),
            asyncio.ensure_future(self._force.wait()),
        }
        await asyncio.wait(
            waits, timeout=self.config.graceful_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for wait in waits:
            wait.cancel()
        if context.connections:
            log.warning("closing %d connection(s) with streams in flight", len(context.connections))
        for connection in list(context.connections):
            connection.abort()
