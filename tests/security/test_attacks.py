"""Denial-of-service attacks against a live osmium, while a normal client keeps using it.

Each test starts its own server (`--keep-alive-timeout 2`), warms up a normal HTTP/2 client
(tests/security/probe.py), runs one bounded attack over loopback, then asserts that
- the attacker got the defence's reaction (GOAWAY ENHANCE_YOUR_CALM, REFUSED_STREAM, a close),
- the normal client kept >= 99 % success and p99 < 1 s during the attack,
- the server's resident memory (whole process tree) grew < 100 MB,
- the server still serves afterwards and logged no traceback.

The limits under test are the server defaults: 200 peer RST_STREAM/s and 500 control frames/s per
connection, MAX_CONCURRENT_STREAMS 100, 64 CONTINUATION frames per header block, 64 KiB header
lists, and the keep-alive timeout for connections without a stream or a finished preface.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from tests.conformance.frames import (
    PREFACE,
    ConnectionClosed,
    ErrorCode,
    Flag,
    FrameType,
    RawClient,
    Setting,
    describe,
    hpack_indexed,
    hpack_literal,
    raw_frame,
    request_block,
)
from tests.security.probe import Probe, normal_traffic
from tests.server_process import ServerProcess, running_server

KEEP_ALIVE = 2.0
#: An attacker that is cut off reconnects and starts over, for about this long (bounded rounds),
#: so the normal client is measured across a real attack window, not one 0.1 s burst.
ATTACK_SECONDS = 1.0
MAX_ROUNDS = 50
#: How long the attacker waits for the server's reaction once it has stopped sending.
REACTION_TIMEOUT = 5.0
DYNAMIC_INDEX = 62  # the newest dynamic-table entry (RFC 7541 §2.3.3)


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with running_server("--keep-alive-timeout", str(KEEP_ALIVE)) as process:
        yield process


@pytest.fixture
def attacker(server: ServerProcess) -> Iterator[Callable[[], RawClient]]:
    """`attacker()`: a RawClient with the handshake done, closed after the test."""
    clients: list[RawClient] = []

    def connect() -> RawClient:
        client = RawClient(server.host, server.port)
        clients.append(client)
        client.handshake()
        return client

    yield connect
    for client in clients:
        client.close()


# -- the attack machinery --------------------------------------------------------------------


@dataclass
class Outcome:
    """What one flood achieved and how the server reacted."""

    #: Attack frames sent before the server's reaction was seen (all of them without one).
    sent: int = 0
    goaway: GoAwayFrame | None = None
    closed: bool = False
    elapsed: float = 0.0
    history: list[str] = field(default_factory=list)

    def describe(self) -> str:
        goaway = describe(self.goaway) if self.goaway else "no GOAWAY"
        return (
            f"{self.sent} frames in {self.elapsed:.2f} s, {goaway}, "
            f"{'closed' if self.closed else 'connection still open'}; "
            f"last frames received: {self.history[-8:]}"
        )


def _read_available(client: RawClient, outcome: Outcome, timeout: float) -> None:
    """Read frames until none arrives within `timeout`, the connection closes, or GOAWAY."""
    while outcome.goaway is None and not outcome.closed:
        try:
            frame = client.read_frame(timeout=timeout)
        except TimeoutError:
            return
        except (ConnectionClosed, OSError):
            outcome.closed = True
            return
        outcome.history.append(describe(frame))
        if isinstance(frame, GoAwayFrame):
            outcome.goaway = frame


def _await_close(client: RawClient, outcome: Outcome, timeout: float) -> None:
    """After the reaction: read (and discard) until the server closes, within `timeout`."""
    deadline = time.monotonic() + timeout
    while not outcome.closed and time.monotonic() < deadline:
        try:
            frame = client.read_frame(timeout=max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            return
        except (ConnectionClosed, OSError):
            outcome.closed = True
            return
        outcome.history.append(describe(frame))
        if isinstance(frame, GoAwayFrame) and outcome.goaway is None:
            outcome.goaway = frame


def flood(
    client: RawClient,
    make_frame: Callable[[], bytes],
    *,
    limit: int,
    batch: int = 100,
    interval: float = 0.01,
    read_between: bool = True,
) -> Outcome:
    """Send up to `limit` frames, `batch` per write with `interval` between writes (a pace of
    about batch/interval frames per second), until the server sends GOAWAY or closes; then wait
    (bounded) for its reaction and for the close."""
    outcome = Outcome()
    started = time.monotonic()
    while outcome.sent < limit and outcome.goaway is None and not outcome.closed:
        count = min(batch, limit - outcome.sent)
        chunk = b"".join(make_frame() for _ in range(count))
        try:
            client.send_raw(chunk)
        except OSError:  # EPIPE / ECONNRESET: the server has closed on us
            outcome.closed = True
            break
        outcome.sent += count
        if read_between:
            _read_available(client, outcome, timeout=0.001)
        time.sleep(interval)  # pacing the attack, not synchronising with the server
    # The reaction may still be in flight (or buffered unread, for floods that never read).
    deadline = time.monotonic() + REACTION_TIMEOUT
    while outcome.goaway is None and not outcome.closed and time.monotonic() < deadline:
        _read_available(client, outcome, timeout=max(0.001, deadline - time.monotonic()))
    _await_close(client, outcome, REACTION_TIMEOUT)
    outcome.elapsed = time.monotonic() - started
    return outcome


def repeat(one_round: Callable[[], Outcome]) -> list[Outcome]:
    """Run `one_round` (a fresh connection each time) for ATTACK_SECONDS, at least once."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + ATTACK_SECONDS
    while not outcomes or (time.monotonic() < deadline and len(outcomes) < MAX_ROUNDS):
        outcomes.append(one_round())
    return outcomes


def summarise(outcomes: list[Outcome]) -> str:
    frames = sum(outcome.sent for outcome in outcomes)
    reactions = sorted({describe(o.goaway) if o.goaway else "no GOAWAY" for o in outcomes})
    closed = sum(outcome.closed for outcome in outcomes)
    return (
        f"{len(outcomes)} connections, {frames} frames, {closed} closed by the server, "
        f"reactions {reactions}; first: {outcomes[0].describe()}"
    )


def assert_calmed(outcome: Outcome, *, limit: int) -> None:
    """GOAWAY(ENHANCE_YOUR_CALM), then the close, before the attacker reached `limit`."""
    assert outcome.goaway is not None, f"no GOAWAY: {outcome.describe()}"
    assert outcome.goaway.error_code == ErrorCode.ENHANCE_YOUR_CALM, outcome.describe()
    assert outcome.closed, f"GOAWAY but the connection stayed open: {outcome.describe()}"
    assert outcome.sent < limit, f"no reaction before the flood ended: {outcome.describe()}"


def assert_still_serves(server: ServerProcess, probe: Probe, start_line: int) -> None:
    assert server.process.poll() is None, f"server exited; output:\n{server.output}"
    with RawClient(server.host, server.port) as client:
        client.handshake()
        response = client.get("/")
        assert (response.status, response.body) == (200, b"hello world")
    with httpx.Client(http1=False, http2=True, timeout=5.0) as client:
        assert client.get(f"{server.url}/").text == "hello world"
    new_output = "".join(server.lines[start_line:])
    assert "Traceback" not in new_output, f"server logged an exception:\n{new_output}"
    probe.assert_healthy()


def report(name: str, outcome: list[Outcome] | str, probe: Probe) -> None:
    what = summarise(outcome) if isinstance(outcome, list) else outcome
    print(f"\n[{name}] attacker: {what}\n[{name}] {probe.summary()}")


def attack(server: ServerProcess, name: str, one_round: Callable[[], Outcome]) -> list[Outcome]:
    """`one_round` again and again for ATTACK_SECONDS while a normal client keeps requesting;
    then the server must still serve, with the normal client healthy all along."""
    start_line = len(server.lines)
    with normal_traffic(server) as probe:
        outcomes = repeat(one_round)
    report(name, outcomes, probe)
    assert_still_serves(server, probe, start_line)
    return outcomes


def _rst(stream_id: int, code: int) -> bytes:
    return raw_frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", code))


# -- 1. rapid reset (CVE-2023-44487) -----------------------------------------------------------


def test_rapid_reset(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """HEADERS + RST_STREAM(CANCEL) pairs at ~5,000/s: GOAWAY(ENHANCE_YOUR_CALM) long before
    5,000 resets (the budget is 200 resets/s)."""
    limit = 5_000

    def one_round() -> Outcome:
        client = attacker()
        block = request_block("/", authority=client.authority)

        def rapid_reset() -> bytes:
            stream_id = client.next_stream_id()
            flags = Flag.END_STREAM | Flag.END_HEADERS
            headers = raw_frame(FrameType.HEADERS, flags, stream_id, block)
            return headers + _rst(stream_id, ErrorCode.CANCEL)

        return flood(client, rapid_reset, limit=limit, batch=100, interval=0.02)

    outcomes = attack(server, "rapid reset", one_round)
    for outcome in outcomes:
        assert_calmed(outcome, limit=limit)
        assert outcome.goaway is not None
        processed = (outcome.goaway.last_stream_id + 1) // 2
        assert processed < limit, f"{processed} reset streams processed: {outcome.describe()}"


# -- 2. ping flood (CVE-2019-9512) -------------------------------------------------------------


def test_ping_flood(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """10,000 PINGs at ~10,000/s, never reading the ACKs: GOAWAY(ENHANCE_YOUR_CALM) or a close,
    and the unread ACKs do not pile up in the server's memory."""
    limit = 10_000
    payloads = iter(range(1 << 62))

    def ping() -> bytes:
        return raw_frame(FrameType.PING, 0, 0, struct.pack(">Q", next(payloads)))

    rounds = iter(range(MAX_ROUNDS + 1))

    def one_round() -> Outcome:
        # Every other attacker reads what comes back, so the GOAWAY's code is seen too.
        reads = next(rounds) % 2 == 1
        return flood(attacker(), ping, limit=limit, batch=100, interval=0.01, read_between=reads)

    outcomes = attack(server, "ping flood", one_round)
    for outcome in outcomes:
        # Never reading, the attacker may lose the GOAWAY to the reset that follows the close.
        assert outcome.closed, f"the server never closed the ping flood: {outcome.describe()}"
        assert outcome.sent < limit, f"no reaction before the flood ended: {outcome.describe()}"
        if outcome.goaway is not None:
            assert outcome.goaway.error_code == ErrorCode.ENHANCE_YOUR_CALM, outcome.describe()
    if len(outcomes) > 1:
        assert_calmed(outcomes[1], limit=limit)  # the first reading attacker


# -- 3. settings flood (CVE-2019-9515) ---------------------------------------------------------


def test_settings_flood(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """10,000 SETTINGS frames at ~10,000/s (each one owes an ACK): GOAWAY(ENHANCE_YOUR_CALM)."""
    limit = 10_000
    frame = raw_frame(FrameType.SETTINGS, 0, 0, struct.pack(">HI", Setting.ENABLE_PUSH, 0))

    def one_round() -> Outcome:
        return flood(attacker(), lambda: frame, limit=limit, batch=100, interval=0.01)

    outcomes = attack(server, "settings flood", one_round)
    for outcome in outcomes:
        assert_calmed(outcome, limit=limit)


# -- 4. empty-frame flood (CVE-2019-9518) ------------------------------------------------------


def test_empty_data_flood(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """Zero-length DATA frames without END_STREAM on an open POST, ~10,000/s:
    GOAWAY(ENHANCE_YOUR_CALM)."""
    limit = 10_000

    def one_round() -> Outcome:
        client = attacker()
        stream_id = client.request("/echo", method="POST", end_stream=False)
        frame = raw_frame(FrameType.DATA, 0, stream_id, b"")
        return flood(client, lambda: frame, limit=limit, batch=100, interval=0.01)

    outcomes = attack(server, "empty DATA flood", one_round)
    for outcome in outcomes:
        assert_calmed(outcome, limit=limit)


# -- 5. CONTINUATION flood (CVE-2024-27316 and friends) ----------------------------------------


def test_continuation_flood(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames without end: a connection error
    (GOAWAY, any code) well before 1,000 frames (the limit is 64 per block)."""
    limit = 1_000
    filler = hpack_literal("x-filler", "a" * 64, indexing="without")

    def one_round() -> Outcome:
        client = attacker()
        stream_id = client.next_stream_id()
        block = request_block("/", authority=client.authority)
        client.send_headers(stream_id, block=block, end_headers=False)
        frame = raw_frame(FrameType.CONTINUATION, 0, stream_id, filler)
        return flood(client, lambda: frame, limit=limit, batch=20, interval=0.005)

    outcomes = attack(server, "CONTINUATION flood", one_round)
    for outcome in outcomes:
        assert outcome.goaway is not None, f"no connection error: {outcome.describe()}"
        assert outcome.goaway.error_code != ErrorCode.NO_ERROR, outcome.describe()
        assert outcome.closed, f"GOAWAY but the connection stayed open: {outcome.describe()}"
        assert outcome.sent < limit, f"no reaction within {limit} frames: {outcome.describe()}"


# -- 6. HPACK bomb -----------------------------------------------------------------------------


def test_hpack_bomb(server: ServerProcess) -> None:
    """On each of 20+ connections (for ATTACK_SECONDS): a request that puts a 4,000-byte value
    in the dynamic table, then one whose block references it 500 times (~2 MB decoded from
    ~1 KB sent): refused with GOAWAY(ENHANCE_YOUR_CALM or COMPRESSION_ERROR) or RST_STREAM,
    never decoded into memory."""
    connections, references = 20, 500
    refused: list[str] = []
    start_line = len(server.lines)
    with normal_traffic(server) as probe, contextlib.ExitStack() as stack:
        deadline = time.monotonic() + ATTACK_SECONDS
        while len(refused) < connections or (time.monotonic() < deadline and len(refused) < 400):
            client = stack.enter_context(RawClient(server.host, server.port))
            client.handshake()
            base = request_block("/", authority=client.authority)
            prime = base + hpack_literal("x-bomb", "b" * 4_000, indexing="incremental")
            first = client.next_stream_id()
            client.send_headers(first, block=prime)
            assert client.read_response(first).status == 200
            bomb_stream = client.next_stream_id()
            client.send_headers(bomb_stream, block=base + hpack_indexed(DYNAMIC_INDEX) * references)
            frame = client.wait_for(
                lambda f, bomb=bomb_stream: isinstance(f, GoAwayFrame) or f.stream_id == bomb,
                "the server's answer to the HPACK bomb",
            )
            assert isinstance(frame, (GoAwayFrame, RstStreamFrame)), (
                f"the bomb was accepted: {describe(frame)}"
            )
            allowed = (
                {ErrorCode.ENHANCE_YOUR_CALM, ErrorCode.COMPRESSION_ERROR}
                if isinstance(frame, GoAwayFrame)
                else {ErrorCode.ENHANCE_YOUR_CALM, ErrorCode.COMPRESSION_ERROR,
                      ErrorCode.REFUSED_STREAM, ErrorCode.PROTOCOL_ERROR}
            )  # fmt: skip
            assert frame.error_code in allowed, describe(frame)
            refused.append(describe(frame))
    report("HPACK bomb", f"{len(refused)} bombs, answers: {sorted(set(refused))}", probe)
    assert_still_serves(server, probe, start_line)


# -- 7. stream-limit abuse ---------------------------------------------------------------------


def test_stream_limit(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """300 concurrent /slow?ms=2000 streams on one connection: the 200 over
    MAX_CONCURRENT_STREAMS (100) get RST_STREAM(REFUSED_STREAM), the connection survives and the
    first 100 complete."""
    total, allowed = 300, 100
    client = attacker()
    start_line = len(server.lines)
    with normal_traffic(server) as probe:
        stream_ids = [client.request("/slow?ms=2000") for _ in range(total)]
        deadline = time.monotonic() + 15.0
        while not all(
            client.streams.get(s) and (client.streams[s].ended or client.streams[s].reset_code)
            for s in stream_ids
        ):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"streams did not all finish; received: {client._history()}"
            frame = client.wait_for(lambda f: True, "stream results", timeout=remaining)
            assert not isinstance(frame, GoAwayFrame), f"connection failed: {describe(frame)}"
        client.ping()  # the connection survived
    states = [client.streams[s] for s in stream_ids]
    completed = [s for s, st in zip(stream_ids, states, strict=True) if st.reset_code is None]
    refused = [
        s for s, st in zip(stream_ids, states, strict=True)
        if st.reset_code == ErrorCode.REFUSED_STREAM
    ]  # fmt: skip
    report("stream limit", f"{len(completed)} completed, {len(refused)} refused", probe)
    assert completed == stream_ids[:allowed], f"completed: {completed[:5]}... ({len(completed)})"
    assert refused == stream_ids[allowed:], f"refused: {refused[:5]}... ({len(refused)})"
    for stream_id in completed:
        headers = client.streams[stream_id].header_blocks[0]
        assert (":status", "200") in headers, (stream_id, headers)
    assert_still_serves(server, probe, start_line)


# -- 8. slowloris --------------------------------------------------------------------------------


def test_slowloris(server: ServerProcess) -> None:
    """50 connections sending the preface one byte per 0.2 s (20 bytes, ~4 s, never finishing):
    the server closes each by the keep-alive timeout (2 s) and keeps serving the normal client."""
    connections, tick, max_bytes = 50, 0.2, 20
    grace = 1.5  # scheduling slack over the keep-alive timeout on a loaded 2-core machine
    sockets: dict[socket.socket, float] = {}
    closed_after: list[float] = []
    start_line = len(server.lines)
    try:
        with normal_traffic(server) as probe:
            for _ in range(connections):
                sock = socket.create_connection((server.host, server.port), timeout=5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sockets[sock] = time.monotonic()
            open_socks = dict(sockets)
            for index in range(max_bytes):
                if not open_socks:
                    break
                for sock in list(open_socks):
                    with contextlib.suppress(OSError):
                        sock.send(PREFACE[index : index + 1])
                readable, _, _ = select.select(list(open_socks), [], [], tick)
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:  # the server closed it (anything else it sent is ignored)
                        closed_after.append(time.monotonic() - open_socks.pop(sock))
            # Bytes stop here; a server that has not closed them yet gets until the deadline.
            deadline = min(sockets.values()) + KEEP_ALIVE + grace
            while open_socks and time.monotonic() < deadline:
                readable, _, _ = select.select(list(open_socks), [], [], 0.05)
                for sock in readable:
                    with contextlib.suppress(OSError):
                        if sock.recv(65536):
                            continue
                    closed_after.append(time.monotonic() - open_socks.pop(sock))
    finally:
        for sock in sockets:
            sock.close()
    slowest = max(closed_after, default=float("nan"))
    report(
        "slowloris",
        f"{len(closed_after)}/{connections} closed by the server, slowest after {slowest:.2f} s",
        probe,
    )
    assert len(closed_after) == connections, (
        f"{connections - len(closed_after)} slowloris connections still open after "
        f"{KEEP_ALIVE + grace} s"
    )
    assert slowest < KEEP_ALIVE + grace, f"slowest close after {slowest:.2f} s"
    assert_still_serves(server, probe, start_line)
