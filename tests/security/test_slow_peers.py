"""Slow and silent peers against a live osmium, while a normal client keeps using it.

Slowloris, a byte at a time through the TLS handshake, the HTTP/2 preface, an HTTP/2 header block
or an HTTP/1.1 request head, is cut off by `--handshake-timeout` / `--header-timeout` (2 s here)
although the keep-alive timeout is 30 s. Responses a peer does not take (CVE-2019-9517: a
flow-control window that never opens, a socket never read) cost bounded memory and are given up
after `--send-timeout` (2 s), or sooner when the worker's output budget is spent.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conformance.frames import (
    PREFACE,
    ErrorCode,
    FrameType,
    RawClient,
    Setting,
    raw_frame,
    request_block,
    settings_payload,
)
from tests.conftest import TLSFiles
from tests.security.attacks import Outcome, assert_still_serves, read_available, report
from tests.security.conftest import DEADLINE
from tests.security.probe import Probe, normal_traffic
from tests.server_process import ServerProcess, running_server

PATIENT_ARGS = (
    "--keep-alive-timeout", "30",
    "--handshake-timeout", str(DEADLINE),
    "--header-timeout", str(DEADLINE),
    "--send-timeout", str(DEADLINE),
)  # fmt: skip
#: Scheduling slack over a deadline on a loaded 2-core machine.
GRACE = 1.5
#: The slow peers' pace: one step (usually one byte) per connection per tick.
TICK = 0.2
CONNECTIONS = 50
MAX_WINDOW = 2**31 - 1
KB = 1024


@pytest.fixture
def patient_server() -> Iterator[ServerProcess]:
    """Keep-alive 30 s: only the handshake and header deadlines can close a slow peer early."""
    with running_server(*PATIENT_ARGS) as process:
        yield process


def _collect_closes(
    open_socks: dict[socket.socket, float], closed_after: list[float], until: float
) -> None:
    """Until `until`: note each socket the server closes, ignoring whatever else it sends."""
    while open_socks and (remaining := until - time.monotonic()) > 0:
        readable, _, _ = select.select(list(open_socks), [], [], remaining)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                closed_after.append(time.monotonic() - open_socks.pop(sock))


def dribble(socks: list[socket.socket], step: Callable[[int], bytes], *, steps: int) -> list[float]:
    """Each TICK, send `step(i)` on every socket the server has not closed, for `steps` ticks or
    until the deadline has passed for all; returns, per closed socket, seconds from its first byte
    to the server's close."""
    started = time.monotonic()
    open_socks = dict.fromkeys(socks, started)
    closed_after: list[float] = []
    for index in range(steps):
        for sock in list(open_socks):
            try:
                sock.send(step(index))
            except OSError:
                closed_after.append(time.monotonic() - open_socks.pop(sock))
        _collect_closes(open_socks, closed_after, time.monotonic() + TICK)
        if not open_socks:
            break
    _collect_closes(open_socks, closed_after, started + DEADLINE + GRACE)
    return closed_after


def slow_connections(server: ServerProcess, count: int = CONNECTIONS) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection((server.host, server.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    return socks


def assert_cut_off(name: str, closed_after: list[float], probe: Probe, total: int) -> None:
    slowest = max(closed_after, default=float("nan"))
    report(name, f"{len(closed_after)}/{total} closed, slowest after {slowest:.2f} s", probe)
    assert len(closed_after) == total, (
        f"{total - len(closed_after)} of {total} slow connections still open after "
        f"{DEADLINE + GRACE} s"
    )
    assert slowest < DEADLINE + GRACE, f"slowest close after {slowest:.2f} s"


def one_byte_each(data: bytes, first: int = 1) -> Callable[[int], bytes]:
    """Step 0 sends `first` bytes, every later step the next single byte."""
    return lambda index: data[:first] if index == 0 else data[first + index - 1 : first + index]


# -- slowloris: each step of a request, a byte at a time ----------------------------------------

#: The whole client preface with a SETTINGS frame carrying three settings (35 bytes: 7 s of
#: dribbling at one byte per TICK, far beyond the deadline).
SLOW_PREFACE = PREFACE + raw_frame(
    FrameType.SETTINGS,
    0,
    0,
    settings_payload({Setting.ENABLE_PUSH: 0, Setting.MAX_CONCURRENT_STREAMS: 100,
                      Setting.INITIAL_WINDOW_SIZE: 65_535}),
)  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "first"),
    [("before the protocol is known", 1), ("after the preface's first line", 16)],
)
def test_slow_preface(patient_server: ServerProcess, stage: str, first: int) -> None:
    """50 connections send the HTTP/2 preface and SETTINGS one byte per 0.2 s: each is closed
    by the 2 s handshake deadline, both while the first bytes are still being sniffed and once
    HTTP/2 has taken over."""
    start_line = len(patient_server.lines)
    socks = slow_connections(patient_server)
    try:
        with normal_traffic(patient_server) as probe:
            closed_after = dribble(socks, one_byte_each(SLOW_PREFACE, first), steps=40)
    finally:
        for sock in socks:
            sock.close()
    assert_cut_off(f"slow preface, {stage}", closed_after, probe, CONNECTIONS)
    assert_still_serves(patient_server, probe, start_line)


def test_slow_http1_request_head(patient_server: ServerProcess) -> None:
    """50 HTTP/1.1 requests whose head comes one byte per 0.2 s: closed by the 2 s header
    deadline."""
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 60
    start_line = len(patient_server.lines)
    socks = slow_connections(patient_server)
    try:
        with normal_traffic(patient_server) as probe:
            closed_after = dribble(socks, one_byte_each(head), steps=60)
    finally:
        for sock in socks:
            sock.close()
    assert_cut_off("slow HTTP/1.1 head", closed_after, probe, CONNECTIONS)
    lines = "".join(patient_server.lines[start_line:])
    assert lines.count("request head not complete within 2 s") == CONNECTIONS, lines[-2000:]
    assert_still_serves(patient_server, probe, start_line)


def test_slow_http2_header_block(patient_server: ServerProcess) -> None:
    """20 connections, each with a stream in progress (so the connection is not idle), start a
    header block and add one small CONTINUATION per 0.2 s (well under the 64-frame and 96 KiB
    limits): GOAWAY(ENHANCE_YOUR_CALM) and a close at the 2 s header deadline."""
    count = 20
    start_line = len(patient_server.lines)
    clients = [RawClient(patient_server.host, patient_server.port) for _ in range(count)]
    outcomes = [Outcome() for _ in clients]
    try:
        with normal_traffic(patient_server) as probe:
            stream_id = 3  # stream 1 is the /slow request
            for client in clients:
                client.handshake()
                client.request("/slow?ms=10000")
                block = request_block("/", authority=client.authority)
                client.send_headers(client.next_stream_id(), block=block, end_headers=False)
            continuation = raw_frame(FrameType.CONTINUATION, 0, stream_id, b"\x40\x00\x00")
            started = time.monotonic()
            for _ in range(int((DEADLINE + GRACE) / TICK) + 5):
                for client, outcome in zip(clients, outcomes, strict=True):
                    if outcome.closed:
                        continue
                    try:
                        client.send_raw(continuation)
                    except OSError:
                        outcome.closed = True
                    read_available(client, outcome, timeout=0.001)
                    if outcome.goaway is not None:
                        outcome.elapsed = outcome.elapsed or time.monotonic() - started
                if all(outcome.goaway is not None for outcome in outcomes):
                    break
                time.sleep(TICK)  # the attacker's pace, not a synchronisation
    finally:
        for client in clients:
            client.close()
    slowest = max(outcome.elapsed for outcome in outcomes)
    report("slow header block", f"{count} connections, slowest GOAWAY {slowest:.2f} s", probe)
    for outcome in outcomes:
        assert outcome.goaway is not None, outcome.describe()
        assert outcome.goaway.error_code == ErrorCode.ENHANCE_YOUR_CALM, outcome.describe()
    assert DEADLINE * 0.9 <= slowest < DEADLINE + GRACE
    assert_still_serves(patient_server, probe, start_line)


@pytest.mark.parametrize("backend", ["stdlib", "pyopenssl"])
def test_slow_tls_handshake(tls_files: TLSFiles, backend: str) -> None:
    """50 connections send a TLS record header announcing a 512-byte ClientHello, then one byte
    per 0.2 s: closed by the 2 s handshake deadline, with either TLS back-end."""
    tls = ("--certfile", str(tls_files.certfile), "--keyfile", str(tls_files.keyfile))
    hello = b"\x16\x03\x01\x02\x00" + b"\x01" + b"\x00" * 511
    with running_server(*PATIENT_ARGS, *tls, "--tls-backend", backend) as server:
        start_line = len(server.lines)
        socks = slow_connections(server)
        verify = ssl.create_default_context(cafile=str(tls_files.ca))
        try:
            with normal_traffic(server, verify=verify) as probe:
                closed_after = dribble(socks, one_byte_each(hello, 5), steps=40)
        finally:
            for sock in socks:
                sock.close()
        assert_cut_off(f"slow TLS handshake ({backend})", closed_after, probe, CONNECTIONS)
        probe.assert_healthy()
        assert "Traceback" not in "".join(server.lines[start_line:])


# -- responses the peer does not take (CVE-2019-9517) -------------------------------------------


@pytest.mark.parametrize("path", ["/big?size=10000000", "/"], ids=["10MB", "hello"])
def test_zero_window_across_streams_and_connections(server: ServerProcess, path: str) -> None:
    """10 connections x 100 streams download 10 MB each (or 11 bytes, which the app hands over at
    once and forgets) through a stream window of 0 that never opens: the responses' headers
    arrive, no data can, and after the 2 s send deadline every stream is reset with CANCEL;
    memory stays flat meanwhile."""
    count, streams = 10, 100
    start_line = len(server.lines)
    clients = [RawClient(server.host, server.port) for _ in range(count)]
    try:
        with normal_traffic(server) as probe:
            started = time.monotonic()
            for client in clients:
                client.handshake({Setting.INITIAL_WINDOW_SIZE: 0})
                for _ in range(streams):
                    client.request(path)
            deadline = started + DEADLINE + GRACE + 2.0  # + the time to open 1,000 streams
            pending = set(clients)
            while pending and time.monotonic() < deadline:
                for client in list(pending):
                    with contextlib.suppress(TimeoutError):
                        client.read_frame(timeout=0.01)
                    states = client.streams.values()
                    if len(states) == streams and all(s.reset_code is not None for s in states):
                        pending.discard(client)
            elapsed = time.monotonic() - started
            states = [state for client in clients for state in client.streams.values()]
    finally:
        for client in clients:
            client.close()
    cancelled = sum(state.reset_code == ErrorCode.CANCEL for state in states)
    report(
        f"zero window ({path})",
        f"{cancelled}/{len(states)} streams CANCELled in {elapsed:.2f} s",
        probe,
    )
    assert len(states) == count * streams
    assert all(state.header_blocks for state in states), "a response's headers never came"
    assert not any(state.data for state in states), "DATA sent through a zero window"
    assert cancelled == count * streams, f"only {cancelled} streams reset with CANCEL"
    assert elapsed >= DEADLINE * 0.9, f"streams reset after {elapsed:.2f} s, before the deadline"
    assert_still_serves(server, probe, start_line)


def unread_downloads(server: ServerProcess, count: int, streams: int) -> list[RawClient]:
    """`count` connections with the largest windows, each downloading `streams` x 10 GB, that
    then never read another byte."""
    clients = []
    for _ in range(count):
        client = RawClient(server.host, server.port)
        clients.append(client)
        client.handshake({Setting.INITIAL_WINDOW_SIZE: MAX_WINDOW})
        client.send_window_update(0, MAX_WINDOW - 65_535)
        for _ in range(streams):
            client.request("/big?size=10000000000")
    return clients


def wait_for_log_count(server: ServerProcess, start_line: int, pattern: str, count: int) -> int:
    """Poll the server's output (deadline-bound) until `pattern` matched `count` times in total
    (a match's first group, when it has one, counts that many)."""
    compiled = re.compile(pattern)
    deadline = time.monotonic() + DEADLINE + GRACE + 5.0

    def total() -> int:
        matches = (compiled.search(line) for line in server.lines[start_line:])
        return sum(int(m.group(1)) if m.groups() else 1 for m in matches if m)

    while total() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return total()


def test_unread_downloads(server: ServerProcess) -> None:
    """20 connections download 10 x 10 GB each with the largest windows, then never read: the
    server buffers at most 512 KiB per connection, stops, and closes each one after the 2 s send
    deadline; its memory stays flat."""
    count = 20
    start_line = len(server.lines)
    clients: list[RawClient] = []
    try:
        with normal_traffic(server) as probe:
            clients = unread_downloads(server, count, streams=10)
            dropped = wait_for_log_count(server, start_line, r"bytes unread for 2 s", count)
        cut_off = 0
        for client in clients:
            try:
                client.read_raw_until_closed(timeout=5.0)
            except TimeoutError:
                continue
            cut_off += 1
    finally:
        for client in clients:
            client.close()
    report("unread downloads", f"{dropped}/{count} closed for unread output", probe)
    assert dropped == count, f"{dropped} of {count} stalled connections closed"
    assert cut_off == count, f"{count - cut_off} attacker connections still open"
    assert_still_serves(server, probe, start_line)


def test_worker_output_budget() -> None:
    """With --max-worker-output 2 MiB (and a 30 s send deadline), 20 connections that stop
    reading their downloads fill the worker's budget: it closes the connections holding the most
    (>= 16 of them: 20 x 512 KiB must get under 2 MiB) within seconds, not 30."""
    count, budget = 20, 2 * KB * KB
    per_connection = 512 * KB
    with running_server(
        "--max-worker-output", str(budget), "--send-timeout", "30", "--keep-alive-timeout", "2"
    ) as server:
        start_line = len(server.lines)
        clients: list[RawClient] = []
        try:
            with normal_traffic(server) as probe:
                clients = unread_downloads(server, count, streams=4)
                least = count - budget // per_connection
                shed = wait_for_log_count(
                    server, start_line, r"closed the (\d+) connection\(s\) holding most", least
                )
        finally:
            for client in clients:
                client.close()
        report("worker output budget", f"{shed} connections shed", probe)
        assert shed >= least, f"only {shed} connections shed; output:\n{server.output[-3000:]}"
        assert_still_serves(server, probe, start_line)
    # The acceptor's last line sums the workers' counters, the shed connections among them.
    totals = re.search(r"stopped after .*; (\d+) dropped for unread output", server.output)
    assert totals is not None and int(totals[1]) >= shed, server.output[-2000:]
