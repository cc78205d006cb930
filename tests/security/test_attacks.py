"""Denial-of-service attacks against a live osmium, while a normal client keeps using it.

Each test starts its own server (conftest.py: 2 s keep-alive and deadlines), warms up a normal
HTTP/2 client (tests/security/probe.py), runs one bounded attack over loopback, then asserts that
- the attacker got the defence's reaction (GOAWAY ENHANCE_YOUR_CALM, REFUSED_STREAM, a close),
- the normal client kept >= 99 % success and p99 < 1 s during the attack,
- the server's resident memory (whole process tree) grew < 100 MB,
- the server still serves afterwards and logged no traceback.

The limits under test are the server defaults: 200 peer RST_STREAM/s, 500 control frames/s and
1,000 ignored frames/s per connection, MAX_CONCURRENT_STREAMS 100, 64 CONTINUATION frames per
header block, 64 KiB header lists, and the keep-alive timeout for connections without a stream or
a finished preface.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import time
from collections.abc import Callable

import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from tests.conformance.frames import (
    ErrorCode,
    Flag,
    FrameType,
    RawClient,
    Setting,
    describe,
    hpack_indexed,
    hpack_literal,
    priority_payload,
    raw_frame,
    request_block,
)
from tests.security.attacks import (
    ATTACK_SECONDS,
    MAX_ROUNDS,
    Outcome,
    assert_calmed,
    assert_still_serves,
    attack,
    flood,
    report,
    rst,
)
from tests.security.probe import normal_traffic
from tests.server_process import ServerProcess

DYNAMIC_INDEX = 62  # the newest dynamic-table entry (RFC 7541 §2.3.3)


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
            return headers + rst(stream_id, ErrorCode.CANCEL)

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


# -- 8. priority churn (CVE-2019-9513) ---------------------------------------------------------


def test_priority_churn(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """PRIORITY frames re-parenting 100 streams round and round, ~10,000/s (each one would make a
    priority tree rebuild itself): GOAWAY(ENHANCE_YOUR_CALM) long before 10,000."""
    limit = 10_000
    churn = itertools.count()

    def reprioritise() -> bytes:
        step = next(churn)
        stream_id = 1 + 2 * (step % 100)
        parent = 1 + 2 * ((step * 7 + 1) % 100)
        weight, exclusive = 1 + step % 256, step % 2 == 0
        payload = priority_payload(depends_on=parent, weight=weight, exclusive=exclusive)
        return raw_frame(FrameType.PRIORITY, 0, stream_id, payload)

    def one_round() -> Outcome:
        return flood(attacker(), reprioritise, limit=limit, batch=100, interval=0.01)

    for outcome in attack(server, "priority churn", one_round):
        assert_calmed(outcome, limit=limit)


# -- 9. reset flood, never reading (CVE-2019-9514) ---------------------------------------------


def test_reset_flood_without_reading(
    server: ServerProcess, attacker: Callable[[], RawClient]
) -> None:
    """Malformed requests (a connection-specific field) at ~10,000/s, each answered with
    RST_STREAM(PROTOCOL_ERROR), by an attacker that never reads them: GOAWAY(ENHANCE_YOUR_CALM)
    and a close long before 10,000 (the reset budget counts the resets the peer provokes)."""
    limit = 10_000
    rounds = iter(range(MAX_ROUNDS + 1))

    def one_round() -> Outcome:
        client = attacker()
        block = request_block("/", authority=client.authority)
        block += hpack_literal("connection", "close", indexing="without")

        def malformed() -> bytes:
            flags = Flag.END_STREAM | Flag.END_HEADERS
            return raw_frame(FrameType.HEADERS, flags, client.next_stream_id(), block)

        reads = next(rounds) % 2 == 1  # every other round reads, to see the GOAWAY's code
        return flood(client, malformed, limit=limit, batch=100, interval=0.01, read_between=reads)

    outcomes = attack(server, "reset flood", one_round)
    for outcome in outcomes:
        assert outcome.closed, f"the server never closed the reset flood: {outcome.describe()}"
        assert outcome.sent < limit, f"no reaction before the flood ended: {outcome.describe()}"
    if len(outcomes) > 1:
        assert_calmed(outcomes[1], limit=limit)


# -- 10. data dribble (CVE-2019-9511) ----------------------------------------------------------


def test_data_dribble(server: ServerProcess, attacker: Callable[[], RawClient]) -> None:
    """A 1 MB download through a window of 1 byte, opened one byte per WINDOW_UPDATE at ~10,000/s
    on stream and connection (each update would cost the server a 1-byte DATA frame):
    GOAWAY(ENHANCE_YOUR_CALM) long before 10,000 updates."""
    limit = 10_000

    def one_round() -> Outcome:
        client = RawClient(server.host, server.port)
        client.handshake({Setting.INITIAL_WINDOW_SIZE: 1})
        stream_id = client.request("/big?size=1000000")
        update = raw_frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">I", 1))
        update += raw_frame(FrameType.WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))
        try:
            return flood(client, lambda: update, limit=limit // 2, batch=50, interval=0.01)
        finally:
            client.close()

    for outcome in attack(server, "data dribble", one_round):
        assert_calmed(outcome, limit=limit // 2)


# -- 11. frames on a stream the server has reset ----------------------------------------------

#: Frames that do nothing on a stream the server has reset (RFC 9113 §5.1: it ignores them).
LATE_FRAMES: dict[str, Callable[[int], bytes]] = {
    "empty DATA": lambda stream_id: raw_frame(FrameType.DATA, 0, stream_id, b""),
    "WINDOW_UPDATE": lambda stream_id: raw_frame(
        FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">I", 1 << 20)
    ),
    "RST_STREAM": lambda stream_id: rst(stream_id, ErrorCode.CANCEL),
}
#: Empty DATA frames of the 'flood first' order that reach the server before its answer.
EARLY_FRAMES = 100
#: Server CPU seconds the attack window may cost (the normal client's requests included).
#: Unbounded, the 200,000 ignored frames cost a worker 1-2 s.
LATE_FLOOD_CPU_SECONDS = 0.75


@pytest.mark.parametrize(
    ("order", "kind"),
    [
        ("answer first", "empty DATA"),
        ("flood first", "empty DATA"),
        ("answer first", "WINDOW_UPDATE"),
        ("answer first", "RST_STREAM"),
    ],
)
def test_flood_on_a_reset_stream(
    server: ServerProcess, attacker: Callable[[], RawClient], order: str, kind: str
) -> None:
    """A request answered without reading its body ends with the server's RST_STREAM(NO_ERROR)
    (RFC 9113 §8.1); then 200,000 frames on that stream, as fast as the server takes them, each
    one ignored: GOAWAY(ENHANCE_YOUR_CALM) and a close (the budget is 1,000 ignored frames/s), the
    server's CPU bounded and the normal client's p99 under 1 s.

    'answer first': POST / (answered at once); the flood starts once the RST_STREAM is read.
    'flood first': GET /slow?ms=200 with a body; 100 empty DATA frames go before the answer, on
    the open stream, and the flood goes on after the RST_STREAM.
    """
    limit = 200_000

    def one_round() -> Outcome:
        client = attacker()
        if order == "answer first":
            stream_id = client.request("/", method="POST", end_stream=False)
        else:
            stream_id = client.request("/slow?ms=200", end_stream=False)
            client.send_raw(raw_frame(FrameType.DATA, 0, stream_id, b"") * EARLY_FRAMES)
        client.expect_rst(stream_id, ErrorCode.NO_ERROR)
        frame = LATE_FRAMES[kind](stream_id)
        return flood(client, lambda: frame, limit=limit, batch=1_000, interval=0.0)

    name = f"{kind} on a reset stream, {order}"
    [outcome] = attack(server, name, one_round, once=True, max_cpu_seconds=LATE_FLOOD_CPU_SECONDS)
    assert_calmed(outcome, limit=limit)


# -- 12. frames the server ignores by type (RFC 9113 §5.5) -------------------------------------

UNKNOWN_FRAME_TYPE = 0xBB
ALTSVC_FRAME_TYPE = 0xA  # RFC 7838 §4: a frame only servers send
IGNORED_FRAMES = {
    "unknown type": raw_frame(UNKNOWN_FRAME_TYPE, 0, 0, b""),
    "ALTSVC": raw_frame(ALTSVC_FRAME_TYPE, 0, 0, b"\0\0"),
    "PING ACK": raw_frame(FrameType.PING, Flag.ACK, 0, bytes(8)),
    "SETTINGS ACK": raw_frame(FrameType.SETTINGS, Flag.ACK, 0, b""),
}


@pytest.mark.parametrize("kind", IGNORED_FRAMES)
def test_ignored_frame_flood(
    server: ServerProcess, attacker: Callable[[], RawClient], kind: str
) -> None:
    """Frames the server reads and drops (an unknown type, ALTSVC from a client, ACKs of nothing
    it sent), ~10,000/s: GOAWAY(ENHANCE_YOUR_CALM) long before 10,000."""
    limit = 10_000
    frame = IGNORED_FRAMES[kind]

    def one_round() -> Outcome:
        return flood(attacker(), lambda: frame, limit=limit, batch=100, interval=0.01)

    for outcome in attack(server, f"{kind} flood", one_round):
        assert_calmed(outcome, limit=limit)
