"""One worker's serving loop: lifespan, one listening socket, its connections, its reports.

SIGTERM/SIGINT stop it gracefully (GOAWAY, streams in flight finish), however often they come;
SIGQUIT closes everything at once. Heartbeats go to the acceptor over the report channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable

from osmium.admin.commands import WorkerAdmin
from osmium.asgi import ASGIApp
from osmium.channel import ReportWriter
from osmium.config import Config, ConfigError
from osmium.lifespan import Lifespan, LifespanFailure
from osmium.protocol.hpack_logging import quiet_hpack_debug_logging
from osmium.tls import Listener, ProtocolFactory, TLSConfigError, TLSSettings, load_backend
from osmium.transport.context import ServerContext
from osmium.transport.negotiate import ProtocolNegotiator
from osmium.transport.proxy_protocol import ProxyProtocolServer

log = logging.getLogger("osmium")

#: What ALPN offers for each --http mode: a TLS client that wants neither gets no protocol.
ALPN_BY_MODE = {"auto": ("h2", "http/1.1"), "1": ("http/1.1",), "2": ("h2",)}

#: Seconds between a worker's reports to the acceptor; a report is also its heartbeat.
HEARTBEAT_INTERVAL = 1.0
#: Seconds the connections of a retiring worker get after their GOAWAY, once graceful_timeout
#: has passed without them going idle.
RETIRE_FINAL_GRACE = 5.0
#: Exit status when the app's lifespan startup fails.
EXIT_LIFESPAN = 3


def tls_listener(config: Config) -> Listener | None:
    """The TLS back-end's listener for this configuration; None for cleartext."""
    if config.certfile is None or config.keyfile is None:
        return None
    settings = TLSSettings(
        certfile=config.certfile,
        keyfile=config.keyfile,
        password=config.keyfile_password,
        sni=config.sni,
        ciphers=config.tls_ciphers,
        handshake_timeout=config.limits.handshake_timeout,
        ca_certs=config.ca_certs,
        verify_client=config.verify_client,
        alpn=ALPN_BY_MODE[config.http],
    )
    try:
        return load_backend(config.tls_backend).listener(settings)
    except TLSConfigError as error:
        raise ConfigError(str(error)) from None


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
    """A worker's listening sockets, their connections, and the app's lifespan."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        listeners: list[tuple[socket.socket, bool]],
        tls: Listener | None,
        reports: ReportWriter,
        max_requests: int = 0,
        slot: int = 0,
        command_fd: int | None = None,
    ) -> None:
        self.config = config
        self.app = app
        #: Each listening socket, with whether it serves TLS (with `tls`).
        self.listeners = listeners
        self.tls = tls
        self.reports = reports
        self.max_requests = max_requests
        self.slot = slot
        #: The admin plane's command pipe (None: the admin plane is off).
        self.command_fd = command_fd
        self._admin: WorkerAdmin | None = None
        self._acceptor_pid = os.getppid()
        #: Leave serving: set by retiring (acceptor's USR2, max-requests) and by stopping.
        self._stop = asyncio.Event()
        #: TERM/INT: GOAWAY to every connection now, not only to idle ones.
        self._goaway_all = asyncio.Event()
        #: QUIT: close everything at once.
        self._force = asyncio.Event()

    def run(self) -> int:
        with asyncio.Runner(loop_factory=loop_factory(self.config.loop)) as runner:
            return runner.run(self.serve())

    async def serve(self) -> int:
        quiet_hpack_debug_logging()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGQUIT, self.request_stop_now)
        loop.add_signal_handler(signal.SIGUSR2, self.request_retire)
        state: dict = {}
        lifespan = Lifespan(self.app, state, self.config.lifespan)
        try:
            await lifespan.startup()
        except LifespanFailure as failure:
            self.reports.send(
                "fatal", exit_code=3, message=f"application startup failed: {failure}"
            )
            for sock, _ in self.listeners:
                sock.close()
            return EXIT_LIFESPAN
        context = ServerContext(
            app=self.app,
            protocol=self.config.protocol,
            keep_alive_timeout=self.config.keep_alive_timeout,
            debug_frames=self.config.debug_frames,
            limits=self.config.limits,
            lifespan_state=state if lifespan.supported else None,
            max_requests=self.max_requests,
            on_max_requests=self._recycle,
            max_active_handlers=self.config.max_active_handlers,
            max_pushes_per_request=self.config.max_pushes_per_request,
            max_request_body_size=self.config.max_request_body_size,
            limit_concurrency=self.config.limit_concurrency,
            server_header=self.config.server_header,
            default_headers=self.config.headers,
            websocket=self.config.websocket,
            http=self.config.http,
        )
        if self.command_fd is not None:
            self._admin = WorkerAdmin(
                context, self.reports, self.command_fd, self.slot, self.request_retire
            )
            self._admin.start()
        servers = [await self._listen(loop, context, sock, tls) for sock, tls in self.listeners]
        self.reports.send("ready")
        self._heartbeat_handle = loop.call_later(HEARTBEAT_INTERVAL, self._heartbeat, context)
        await self._stop.wait()
        log.debug("worker stopping: no new connections, finishing streams in flight")
        for server in servers:
            server.close()
        await self._drain(context)
        self._heartbeat_handle.cancel()
        self._report(context)
        if self._admin is not None:
            self._admin.stop()
        try:
            await lifespan.shutdown()
        except LifespanFailure as failure:
            log.error("application shutdown failed: %s", failure)
        return 0

    async def _listen(
        self,
        loop: asyncio.AbstractEventLoop,
        context: ServerContext,
        sock: socket.socket,
        tls: bool,
    ) -> asyncio.AbstractServer | ProxyProtocolServer:
        """Serve one listening socket: TLS through the back-end, or cleartext."""
        factory: ProtocolFactory = lambda: ProtocolNegotiator(context)  # noqa: E731
        listener = self.tls if tls else None
        if listener is not None:
            factory = listener.wrap(factory)
        ssl_context = listener.ssl_context if listener is not None else None
        timeout = self.config.limits.handshake_timeout
        if self.config.proxy_protocol != "off":
            return ProxyProtocolServer(
                sock, factory, self.config.proxy_protocol, timeout, ssl_context,
                self.config.backlog,
            )  # fmt: skip
        handshake_timeout = timeout if ssl_context else None
        if sock.family == socket.AF_UNIX:
            return await loop.create_unix_server(
                factory, sock=sock, ssl=ssl_context, backlog=self.config.backlog,
                ssl_handshake_timeout=handshake_timeout,
            )  # fmt: skip
        return await loop.create_server(
            factory, sock=sock, ssl=ssl_context, backlog=self.config.backlog,
            ssl_handshake_timeout=handshake_timeout,
        )  # fmt: skip

    def _heartbeat(self, context: ServerContext) -> None:
        """Report to the acceptor: its proof of life, also while draining."""
        loop = asyncio.get_running_loop()
        self._heartbeat_handle = loop.call_later(HEARTBEAT_INTERVAL, self._heartbeat, context)
        self._report(context)
        if os.getppid() != self._acceptor_pid and not self._goaway_all.is_set():
            # The acceptor was killed (SIGKILL skips its shutdown): no orphan keeps serving.
            log.warning("acceptor %d is gone; stopping", self._acceptor_pid)
            self.request_stop()

    def _report(self, context: ServerContext) -> None:
        extra = self._admin.report_fields() if self._admin is not None else {}
        self.reports.send_stats(context.snapshot(), **extra)

    def _recycle(self) -> None:
        """max-requests reached: the acceptor starts a replacement, this worker retires."""
        if not self._stop.is_set():
            log.info("worker recycling after %d requests", self.max_requests)
            self.reports.send("retiring", reason="max-requests")
            self.request_retire()

    def request_stop(self) -> None:
        """TERM/INT: GOAWAY everywhere, streams in flight finish.

        A repeated one changes nothing: a terminal's Ctrl-C, or a TERM to the process group
        (systemd, docker), reaches this worker directly and again through the acceptor. Only the
        acceptor knows the operator's second signal; it then sends QUIT (request_stop_now).
        """
        self._goaway_all.set()
        self._stop.set()

    def request_stop_now(self) -> None:
        """QUIT: close every connection at once, streams in flight or not."""
        self.request_stop()
        self._force.set()

    def request_retire(self) -> None:
        """USR2 from the acceptor (reload, fewer workers) or max-requests: leave gently.

        Connections keep being served and get GOAWAY only once idle, so clients that cannot
        reconnect after a GOAWAY (h2load, say) see no failure; a TERM still GOAWAYs everything.
        """
        self._stop.set()

    async def _drain(self, context: ServerContext) -> None:
        """Retire connections as they idle (when retiring), then GOAWAY the rest; close at last."""
        grace = self.config.graceful_timeout
        if not self._goaway_all.is_set():
            for connection in list(context.connections):
                connection.retire()
            await _until_closed(context, self._goaway_all, grace)
            grace = min(grace, RETIRE_FINAL_GRACE)
        for connection in list(context.connections):
            connection.shutdown()
        await _until_closed(context, self._force, grace)
        if context.connections:
            log.warning("closing %d connection(s) with streams in flight", len(context.connections))
        for connection in list(context.connections):
            connection.abort()


async def _until_closed(context: ServerContext, interrupt: asyncio.Event, timeout: float) -> None:
    """Wait until every connection closed, `interrupt` is set, or `timeout` passed."""
    waits = {
        asyncio.ensure_future(context.wait_all_closed()),
        asyncio.ensure_future(interrupt.wait()),
    }
    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
