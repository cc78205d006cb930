"""What an idle HTTP/2 connection costs a worker, and whether the worker still answers quickly.

`python -m loadtest.idle_connections [--connections 10000] [--loop asyncio|uvloop] [--json]`:
one osmium worker (the demo app, on 127.0.0.1) gets N h2c connections that send the client
preface and their SETTINGS, read the server's, and then say nothing. The worker's RSS before and
after, over N, is the cost of one; meanwhile one more connection sends sequential GETs and
their latency percentiles say whether the worker still answers. The descriptors needed (N here,
N in the server) must fit under `ulimit -n`.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import psutil

from loadtest.launcher import LaunchedServer, osmium

#: Connections opened before their server prefaces are read: the listen backlog's worth.
BATCH = 500
#: Sequential requests timed while the idle connections are open.
PROBES = 1000
TIMEOUT = 30.0


@dataclass(frozen=True)
class IdleResult:
    connections: int
    loop: str
    rss_before_mib: float
    rss_after_mib: float
    kib_per_connection: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def client_preface() -> bytes:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    return connection.data_to_send()


def open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections past their handshake: each has read the server's SETTINGS."""
    preface = client_preface()
    sockets: list[socket.socket] = []
    while len(sockets) < count:
        batch = [
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            for _ in range(min(BATCH, count - len(sockets)))
        ]
        for sock in batch:
            sock.sendall(preface)
        for sock in batch:
            if not sock.recv(65536):
                raise ConnectionError("the server closed an idle connection during its handshake")
        sockets += batch
    return sockets


def probe_latencies(port: int, requests: int) -> list[float]:
    """Seconds each of `requests` sequential GET / took on one more connection."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    latencies = []
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connection.data_to_send())
        for _ in range(requests):
            started = time.perf_counter()
            stream_id = connection.get_next_available_stream_id()
            headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                       (":authority", f"127.0.0.1:{port}")]  # fmt: skip
            connection.send_headers(stream_id, headers, end_stream=True)
            sock.sendall(connection.data_to_send())
            while not _ended(connection, sock.recv(65536), stream_id):
                pass
            sock.sendall(connection.data_to_send())
            latencies.append(time.perf_counter() - started)
    return latencies


def _ended(connection: h2.connection.H2Connection, data: bytes, stream_id: int) -> bool:
    if not data:
        raise ConnectionError("the server closed the probing connection")
    events = connection.receive_data(data)
    for event in events:
        if isinstance(event, h2.events.DataReceived):
            connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    return any(
        isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id
        for event in events
    )


def worker_of(server_pid: int) -> psutil.Process:
    """The one worker the acceptor forked."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        children = psutil.Process(server_pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise TimeoutError("the server forked no worker")


def measure(connections: int, loop: str, folder: Path) -> IdleResult:
    spec = osmium(1, "--backlog", "4096", loop=loop)
    with LaunchedServer(spec, folder / "server.log") as server:
        worker = worker_of(server.pid)
        probe_latencies(server.port, 50)  # warm: imports, first allocations
        before = worker.memory_info().rss
        sockets = open_idle(server.port, connections)
        try:
            after = worker.memory_info().rss
            latencies = sorted(probe_latencies(server.port, PROBES))
        finally:
            for sock in sockets:
                sock.close()
    cut = statistics.quantiles(latencies, n=100)
    return IdleResult(
        connections=connections,
        loop=loop,
        rss_before_mib=round(before / 2**20, 1),
        rss_after_mib=round(after / 2**20, 1),
        kib_per_connection=round((after - before) / connections / 1024, 2),
        p50_ms=round(cut[49] * 1000, 3),
        p99_ms=round(cut[98] * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.idle_connections")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    arguments = parser.parse_args(argv)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if arguments.connections + 64 > limit:
        print(
            f"idle_connections: {arguments.connections} connections need `ulimit -n` above "
            f"{arguments.connections + 64} (it is {limit})",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="osmium-idle-") as folder:
        result = measure(arguments.connections, arguments.loop, Path(folder))
    if arguments.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"{result.connections} idle HTTP/2 connections ({result.loop}): "
            f"{result.kib_per_connection} KiB each (worker RSS {result.rss_before_mib} -> "
            f"{result.rss_after_mib} MiB); meanwhile GET / p50 {result.p50_ms} ms, "
            f"p99 {result.p99_ms} ms, max {result.max_ms} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
