"""A small WebSocket load client for the benchmark, since h2load cannot speak WebSocket: echo
round trips on one connection, messages over many connections, one big message, on loopback only;
over HTTP/1.1, or over HTTP/2 (RFC 8441, `--http2`: one HTTP/2 connection per WebSocket).

Every measurement is one plan: `connections` connections, each sending `messages` messages of
`size` bytes with at most `window` of them awaiting their echo. The clock runs from the first send
(all connections open) to the last echo; an echo that differs from what was sent ends its
connection, and what that connection still owed counts as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from array import array
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, replace
from importlib.util import find_spec
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from loadtest.ws_h2 import H2WebSocket

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MIB = 1024 * 1024
#: Bounds on one run, so a typo cannot turn the client into a flood or a memory hog.
MAX_CONNECTIONS = 1000
MAX_TOTAL_MESSAGES = 1_000_000
MAX_SIZE = 64 * MIB
MAX_WINDOW = 1000
#: Payload bytes awaiting their echo over all connections: the client holds each until it returns.
MAX_IN_FLIGHT_BYTES = 256 * MIB
DEFAULT_TIMEOUT = 60.0
#: Handshakes in flight at once: a burst of 200 SYNs can overflow a listen backlog, and then a
#: retransmitted SYN costs a second that has nothing to do with the server under test.
OPENING_CONCURRENCY = 50
#: Text payloads are printable, so a text echo is valid UTF-8 and costs the same on every server.
TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class WsClientError(Exception):
    """A run that cannot start as asked (bad URL or plan, nothing listening); one line."""


class EchoConnection(Protocol):
    """What the echo loop needs of a WebSocket: websockets' ClientConnection over HTTP/1.1,
    H2WebSocket over HTTP/2."""

    async def send(self, message: str | bytes) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class EchoPlan:
    """What one run sends: `messages` per connection, each echoed before it counts."""

    connections: int = 1
    messages: int = 1000
    size: int = 64
    window: int = 1
    binary: bool = False
    #: Offer permessage-deflate; off by default, so the run measures framing, not zlib.
    deflate: bool = False
    #: WebSockets over HTTP/2 (RFC 8441), each on its own connection, instead of HTTP/1.1.
    http2: bool = False


#: The three measurements `--mode` names, with their default sizes.
MODES = {
    "roundtrip": EchoPlan(connections=1, messages=10_000, size=64, window=1),
    "fanout": EchoPlan(connections=200, messages=200, size=64, window=8),
    "big": EchoPlan(connections=1, messages=16, size=16 * MIB, window=1, binary=True),
}


@dataclass(frozen=True)
class Latency:
    """Send-to-echo time of every message, seconds. With a window above 1 it includes the time
    a message waited behind the ones sent before it."""

    mean: float
    p50: float
    p99: float
    max: float


@dataclass(frozen=True)
class WsResult:
    plan: EchoPlan
    #: Messages echoed back intact.
    messages: int
    #: Messages due and not echoed intact: lost with a connection, cut off, or a different echo.
    failed: int
    #: Seconds from the first send to the last echo.
    elapsed: float
    latency: Latency
    #: The first error of each connection that had one (at most a few).
    errors: tuple[str, ...]
    client_loop: str
    #: The client's CPU seconds over `elapsed`: near 1.0, the client (one core) is the limit.
    client_busy: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        """Echoed payload, one way, in 10^6 bytes per second."""
        return self.messages_per_second * self.plan.size / 1e6


def as_dict(result: WsResult) -> dict[str, Any]:
    """JSON-ready, with the rates the properties derive."""
    return asdict(result) | {
        "messages_per_second": result.messages_per_second,
        "megabytes_per_second": result.megabytes_per_second,
    }


def check_url(url: str) -> str:
    """The URL if it is a cleartext WebSocket URL on loopback; otherwise WsClientError."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise WsClientError(f"{url}: only ws:// URLs (cleartext) are supported")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise WsClientError(f"{url}: only loopback hosts ({', '.join(LOOPBACK_HOSTS)}) are allowed")
    return url


def check_plan(plan: EchoPlan) -> EchoPlan:
    """The plan if it is within this client's bounds; otherwise WsClientError."""
    # max(1, ...): a connections count out of bounds is reported below, not divided by
    bounds = (
        ("connections", plan.connections, MAX_CONNECTIONS),
        ("messages", plan.messages, MAX_TOTAL_MESSAGES // max(1, plan.connections)),
        ("size", plan.size, MAX_SIZE),
        ("window", plan.window, MAX_WINDOW),
    )
    for name, value, most in bounds:
        if not 1 <= value <= most:
            raise WsClientError(f"{name} must be between 1 and {most}, not {value}")
    in_flight = plan.connections * plan.window * plan.size
    if in_flight > MAX_IN_FLIGHT_BYTES:
        raise WsClientError(
            f"connections x window x size = {in_flight} bytes in flight, over {MAX_IN_FLIGHT_BYTES}"
        )
    if plan.deflate and plan.http2:
        raise WsClientError("permessage-deflate is not supported over HTTP/2")
    return plan


def summarise_latency(samples: Sequence[float]) -> Latency:
    """Mean, median, 99th percentile and maximum; all zero when nothing was echoed."""
    if not samples:
        return Latency(0.0, 0.0, 0.0, 0.0)
    if len(samples) == 1:
        return Latency(samples[0], samples[0], samples[0], samples[0])
    percentiles = statistics.quantiles(samples, n=100, method="inclusive")
    return Latency(statistics.fmean(samples), percentiles[49], percentiles[98], max(samples))


def payload(plan: EchoPlan, seed: int = 0) -> str | bytes:
    """Pseudo-random content of the plan's size, deterministic for `seed`."""
    rng = random.Random(seed)
    if plan.binary:
        return rng.randbytes(plan.size)
    return "".join(rng.choices(TEXT_ALPHABET, k=plan.size))


@dataclass
class Tally:
    """One connection's count, kept outside its task so a cancelled task still reports it."""

    echoed: int = 0
    error: str | None = None


def aggregate(
    plan: EchoPlan,
    tallies: Sequence[Tally],
    elapsed: float,
    latencies: Sequence[float],
    client_loop: str,
    client_cpu: float,
    max_errors: int = 5,
) -> WsResult:
    """One result from every connection's tally: what the plan owed and none echoed is failed."""
    echoed = sum(tally.echoed for tally in tallies)
    errors = [tally.error for tally in tallies if tally.error is not None]
    return WsResult(
        plan=plan,
        messages=echoed,
        failed=plan.connections * plan.messages - echoed,
        elapsed=elapsed,
        latency=summarise_latency(latencies),
        errors=tuple(errors[:max_errors]),
        client_loop=client_loop,
        client_busy=client_cpu / elapsed if elapsed > 0 else 0.0,
    )


async def _echo(
    websocket: EchoConnection,
    plan: EchoPlan,
    message: str | bytes,
    tally: Tally,
    latencies: array[float],
) -> None:
    """Send the plan's messages on one connection, at most `window` unanswered at a time."""
    clock = time.perf_counter
    sent_at: deque[float] = deque()
    sent = 0
    while sent < min(plan.window, plan.messages):
        sent_at.append(clock())
        await websocket.send(message)
        sent += 1
    while tally.echoed < plan.messages:
        echo = await websocket.recv()
        latencies.append(clock() - sent_at.popleft())
        if echo != message:
            raise WsClientError(f"echo {tally.echoed + 1} differs from the message sent")
        tally.echoed += 1
        if sent < plan.messages:
            sent_at.append(clock())
            await websocket.send(message)
            sent += 1


async def _guarded(coroutine: Coroutine[Any, Any, None], tally: Tally) -> None:
    """Run one connection's part; an error ends that connection only and is recorded."""
    try:
        await coroutine
    except (OSError, WebSocketException, WsClientError) as error:
        tally.error = f"{type(error).__name__}: {error}"


async def _open(url: str, plan: EchoPlan, gate: asyncio.Semaphore) -> EchoConnection:
    async with gate:
        if plan.http2:
            return await H2WebSocket.connect(url, max_size=plan.size, open_timeout=10)
        return await connect(
            url,
            compression="deflate" if plan.deflate else None,
            max_size=plan.size,  # an echo can be no larger than what was sent
            max_queue=None,  # bounded anyway: at most `window` echoes are ever outstanding
            ping_interval=None,  # no keep-alive traffic inside the measurement
            proxy=None,  # loopback: never through a proxy from the environment
            open_timeout=10,
            close_timeout=5,
        )


async def run_plan(
    url: str, plan: EchoPlan, timeout: float = DEFAULT_TIMEOUT, client_loop: str = "asyncio"
) -> WsResult:
    """Open every connection, then time the echoes; at `timeout` what is left counts as failed."""
    check_url(url)
    check_plan(plan)
    message = payload(plan)
    deadline = asyncio.get_running_loop().time() + timeout
    gate = asyncio.Semaphore(OPENING_CONCURRENCY)
    try:
        async with asyncio.timeout_at(deadline):
            attempts = await asyncio.gather(
                *(_open(url, plan, gate) for _ in range(plan.connections)), return_exceptions=True
            )
    except TimeoutError:
        attempts = [TimeoutError(f"not open after {timeout:g}s")]
    opened = [attempt for attempt in attempts if not isinstance(attempt, BaseException)]
    failures = [attempt for attempt in attempts if isinstance(attempt, BaseException)]
    if failures:
        await asyncio.gather(*(websocket.close() for websocket in opened), return_exceptions=True)
        raise WsClientError(f"{url}: cannot open {plan.connections} WebSocket(s): {failures[0]}")
    tallies = [Tally() for _ in opened]
    latencies: array[float] = array("d")
    started, cpu_started = time.perf_counter(), time.process_time()
    tasks = [
        asyncio.create_task(_guarded(_echo(websocket, plan, message, tally, latencies), tally))
        for websocket, tally in zip(opened, tallies, strict=True)
    ]
    _, pending = await asyncio.wait(
        tasks, timeout=max(0.0, deadline - asyncio.get_running_loop().time())
    )
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_started
    for task in pending:
        task.cancel()
    for tally, task in zip(tallies, tasks, strict=True):
        if task in pending:
            tally.error = f"timed out after {timeout:g}s"
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.gather(*(websocket.close() for websocket in opened), return_exceptions=True)
    return aggregate(plan, tallies, elapsed, latencies, client_loop, client_cpu)


def default_loop() -> str:
    """uvloop when installed: the cheaper the client, the more of the machine the server gets."""
    return "uvloop" if find_spec("uvloop") is not None else "asyncio"


def run(
    url: str, plan: EchoPlan, timeout: float = DEFAULT_TIMEOUT, loop: str | None = None
) -> WsResult:
    """`run_plan` on a fresh event loop of the given kind (default: `default_loop()`)."""
    loop = loop or default_loop()
    if loop == "uvloop":
        import uvloop

        return uvloop.run(run_plan(url, plan, timeout, loop))
    return asyncio.run(run_plan(url, plan, timeout, loop))


def plan_from_arguments(arguments: argparse.Namespace) -> EchoPlan:
    """The mode's plan with whatever the command line overrides."""
    overrides = {
        name: getattr(arguments, name)
        for name in ("connections", "messages", "size", "window", "binary", "deflate", "http2")
        if getattr(arguments, name) is not None
    }
    return check_plan(replace(MODES[arguments.mode], **overrides))


def describe_plan(plan: EchoPlan) -> str:
    kind = "binary" if plan.binary else "text"
    deflate = ", deflate" if plan.deflate else ""
    http2 = " over HTTP/2" if plan.http2 else ""
    return (
        f"{plan.connections} connection(s) x {plan.messages} {kind} message(s) of {plan.size} B, "
        f"window {plan.window}{deflate}{http2}"
    )


def describe(result: WsResult) -> str:
    return (
        f"{describe_plan(result.plan)}: {result.messages} echoed, {result.failed} failed in "
        f"{result.elapsed:.3f}s: {result.messages_per_second:,.0f} msg/s, "
        f"{result.megabytes_per_second:,.1f} MB/s, latency mean "
        f"{result.latency.mean * 1000:.3f} ms, p99 {result.latency.p99 * 1000:.3f} ms; "
        f"client busy {result.client_busy:.0%}"
    )


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ws_client", description=__doc__)
    parser.add_argument("url", help="a loopback echo endpoint, e.g. ws://127.0.0.1:8000/ws/echo")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="roundtrip",
        help="the plan to start from: "
        + "; ".join(f"{name}: {describe_plan(plan)}" for name, plan in MODES.items()),
    )
    parser.add_argument("--connections", type=int, help="connections at once")
    parser.add_argument("--messages", type=int, help="messages per connection")
    parser.add_argument("--size", type=int, help="bytes per message")
    parser.add_argument("--window", type=int, help="messages awaiting their echo per connection")
    parser.add_argument(
        "--binary", action=argparse.BooleanOptionalAction, help="binary (or text) messages"
    )
    parser.add_argument(
        "--deflate", action=argparse.BooleanOptionalAction, help="offer permessage-deflate"
    )
    parser.add_argument(
        "--http2",
        action=argparse.BooleanOptionalAction,
        help="WebSockets over HTTP/2 (RFC 8441), one connection each",
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), help="the client's event loop")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds in all")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        plan = plan_from_arguments(arguments)
        result = run(arguments.url, plan, arguments.timeout, arguments.loop)
    except WsClientError as error:
        print(f"ws_client: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(as_dict(result)) if arguments.json else describe(result))
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
