"""The Python ceiling: the least an asyncio + h2 server does per request, with no ASGI between.

The benchmark runs it as the peer `bare-h2`, so osmium's rows read against what HTTP/2 costs in
Python at all (h2's parsing and validation, the event loop): every request gets 200 "hello
world" straight from `data_received`; `/big?size=N` sends N bytes as the window allows; a
request body is read and acknowledged first. HTTP/2 only: h2c with prior knowledge, or TLS.

    python -m loadtest.bare_h2 --host 127.0.0.1 --port 8000 [--loop uvloop] [--workers N]
        [--certfile CERT --keyfile KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions

HELLO = b"hello world"
TEXT = b"text/plain"
#: `/big` sends what osmium's demo app sends there: the byte `x`, as an octet stream.
OCTETS = b"application/octet-stream"
FILLER = b"x"
MAX_BIG_SIZE = 1 << 30
#: h2's inbound validation and normalisation stay on (a server must check what it is sent);
#: what we send is ours and well-formed, so the outbound checks are skipped, as osmium does.
CONFIG = h2.config.H2Configuration(
    client_side=False, validate_outbound_headers=False, normalize_outbound_headers=False
)
LOOPS = ("asyncio", "uvloop")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
BACKLOG = 1024


@functools.lru_cache(maxsize=8)
def big_body(size: int) -> memoryview:
    """One shared body per size: a benchmark asks for the same size again and again."""
    return memoryview(FILLER * size)


def answer_for(path: bytes) -> tuple[bytes, bytes, memoryview | bytes]:
    """Status, content type and body for a request path."""
    route, _, query = path.partition(b"?")
    if route != b"/big":
        return b"200", TEXT, HELLO
    size = query.removeprefix(b"size=")
    if not query.startswith(b"size=") or not size.isdigit() or int(size) > MAX_BIG_SIZE:
        return b"400", TEXT, b"size must be an integer up to 1 GiB"
    return b"200", OCTETS, big_body(int(size))


class BareH2(asyncio.Protocol):
    """One HTTP/2 connection: h2 in, h2 out, an answer per stream when its request ends."""

    def __init__(self, open_connections: set[BareH2]) -> None:
        self.open_connections = open_connections
        self.connection = h2.connection.H2Connection(CONFIG)
        self.transport: asyncio.Transport | None = None
        #: Request paths by stream, from HEADERS until END_STREAM.
        self.paths: dict[int, bytes] = {}
        #: Body bytes each stream still has to send, waiting for WINDOW_UPDATE.
        self.pending: dict[int, memoryview | bytes] = {}
        self.handlers: dict[type, Callable] = {
            h2.events.RequestReceived: self.request_received,
            h2.events.StreamEnded: self.stream_ended,
            h2.events.DataReceived: self.data_for_stream,
            h2.events.WindowUpdated: self.window_updated,
            h2.events.StreamReset: self.stream_reset,
            h2.events.ConnectionTerminated: self.connection_terminated,
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.open_connections.add(self)
        self.connection.initiate_connection()
        self.transport.write(self.connection.data_to_send())

    def connection_lost(self, error: Exception | None) -> None:
        self.open_connections.discard(self)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.connection.receive_data(data)
        except h2.exceptions.ProtocolError:
            # h2 has queued the GOAWAY that names the error
            self.transport.write(self.connection.data_to_send())
            self.transport.close()
            return
        for event in events:
            handler = self.handlers.get(type(event))
            if handler is not None:
                handler(event)
        output = self.connection.data_to_send()
        if output:
            self.transport.write(output)

    def request_received(self, event: h2.events.RequestReceived) -> None:
        for name, value in event.headers:
            if name == b":path":
                self.paths[event.stream_id] = value
                return

    def data_for_stream(self, event: h2.events.DataReceived) -> None:
        self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def stream_ended(self, event: h2.events.StreamEnded) -> None:
        status, content_type, body = answer_for(self.paths.pop(event.stream_id, b"/"))
        headers = [
            (b":status", status),
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
        ]
        self.connection.send_headers(event.stream_id, headers, end_stream=not body)
        if body:
            self.send_body(event.stream_id, body)

    def send_body(self, stream_id: int, body: memoryview | bytes) -> None:
        """As much as the stream's window allows, in frames h2 accepts; the rest waits."""
        window = self.connection.local_flow_control_window(stream_id)
        frame_limit = self.connection.max_outbound_frame_size
        while body and window:
            size = min(window, frame_limit, len(body))
            self.connection.send_data(stream_id, body[:size], end_stream=size == len(body))
            body = body[size:]
            window -= size
        if body:
            self.pending[stream_id] = body

    def window_updated(self, event: h2.events.WindowUpdated) -> None:
        waiting, self.pending = self.pending, {}
        for stream_id, body in waiting.items():
            self.send_body(stream_id, body)

    def stream_reset(self, event: h2.events.StreamReset) -> None:
        self.paths.pop(event.stream_id, None)
        self.pending.pop(event.stream_id, None)

    def connection_terminated(self, event: h2.events.ConnectionTerminated) -> None:
        assert self.transport is not None
        self.transport.write(self.connection.data_to_send())
        self.transport.close()


class StartError(Exception):
    """A setting bare-h2 cannot serve with; one line for the user."""


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as error:  # ssl.SSLError is one
        raise StartError(f"cannot load {certfile} and {keyfile}: {error.strerror}") from None
    context.set_alpn_protocols(["h2"])
    return context


async def serve(listener: socket.socket, context: ssl.SSLContext | None, loop_name: str) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and every connection."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    open_connections: set[BareH2] = set()
    server = await loop.create_server(lambda: BareH2(open_connections), sock=listener, ssl=context)
    host, port = listener.getsockname()[:2]
    scheme = "https" if context else "http"
    print(f"bare-h2 listening on {scheme}://{host}:{port} ({loop_name})", flush=True)
    await stop.wait()
    server.close()
    for protocol in list(open_connections):
        assert protocol.transport is not None
        protocol.transport.close()
    await server.wait_closed()
    print("bare-h2 stopped", flush=True)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise StartError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
    return uvloop.new_event_loop


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server(
            (host, port), family=family, backlog=BACKLOG, reuse_port=reuse_port
        )
    except OSError as error:
        raise StartError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def run_workers(arguments: argparse.Namespace) -> int:
    """One process per worker, each on its own SO_REUSEPORT listener, bound here before any
    starts (as osmium's acceptor does): a connection the kernel hands to a worker still starting
    waits for it. TERM and INT are passed on; the first failing worker's status is ours."""
    listeners = [listen(arguments.host, arguments.port, reuse_port=True)]
    port = listeners[0].getsockname()[1]  # the one picked, for --port 0
    listeners += [
        listen(arguments.host, port, reuse_port=True) for _ in range(1, arguments.workers)
    ]
    command = [sys.executable, "-m", "loadtest.bare_h2", "--loop", arguments.loop]
    if arguments.certfile:
        command += ["--certfile", arguments.certfile, "--keyfile", arguments.keyfile]
    workers: list[subprocess.Popen[bytes]] = []
    #: A worker still starting when told to stop ends by the signal itself: not a failure.
    clean = {0}

    def forward(signum: int, frame: object) -> None:
        clean.add(-signum)
        for worker in workers:
            worker.send_signal(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    for listener in listeners:
        fd = listener.fileno()
        workers.append(subprocess.Popen([*command, "--fd", str(fd)], pass_fds=(fd,)))
    statuses = [worker.wait() for worker in workers]
    return next((status for status in statuses if status not in clean), 0)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bare_h2", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes, one listener each")
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a worker's listener
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--certfile", help="serve TLS (ALPN h2) with this certificate chain")
    parser.add_argument("--keyfile", help="the certificate's private key")
    arguments = parser.parse_args(argv)
    if (arguments.certfile is None) != (arguments.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    if arguments.workers < 1:
        parser.error("--workers must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        factory = loop_factory(arguments.loop)
        context = None
        if arguments.certfile:
            context = tls_context(arguments.certfile, arguments.keyfile)
        if arguments.workers > 1:
            return run_workers(arguments)
        if arguments.fd is not None:
            listener = socket.socket(fileno=arguments.fd)
        else:
            listener = listen(arguments.host, arguments.port)
    except StartError as error:
        print(f"bare_h2: error: {error}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(listener, context, arguments.loop))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
