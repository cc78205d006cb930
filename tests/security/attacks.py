"""The machinery of the attack tests: floods paced and bounded, the server's reaction read back,
a normal client measured alongside (probe.py), and the checks every attack ends with."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from hyperframe.frame import GoAwayFrame

from tests.conformance.frames import (
    ConnectionClosed,
    ErrorCode,
    FrameType,
    RawClient,
    describe,
    raw_frame,
)
from tests.security.probe import Probe, normal_traffic
from tests.server_process import ServerProcess

#: An attacker that is cut off reconnects and starts over, for about this long (bounded rounds),
#: so the normal client is measured across a real attack window, not one 0.1 s burst.
ATTACK_SECONDS = 1.0
MAX_ROUNDS = 50
#: How long the attacker waits for the server's reaction once it has stopped sending.
REACTION_TIMEOUT = 5.0


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


def _read_one(client: RawClient, outcome: Outcome, timeout: float) -> bool:
    """One frame into `outcome` (its first GOAWAY kept); False on timeout or close."""
    try:
        frame = client.read_frame(timeout=timeout)
    except TimeoutError:
        return False
    except (ConnectionClosed, OSError):
        outcome.closed = True
        return False
    outcome.history.append(describe(frame))
    if isinstance(frame, GoAwayFrame) and outcome.goaway is None:
        outcome.goaway = frame
    return True


def read_available(client: RawClient, outcome: Outcome, timeout: float) -> None:
    """Read frames until none arrives within `timeout`, the connection closes, or GOAWAY."""
    while outcome.goaway is None and _read_one(client, outcome, timeout):
        pass


def _await_close(client: RawClient, outcome: Outcome, timeout: float) -> None:
    """After the reaction: read (and discard) until the server closes, within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _read_one(client, outcome, max(0.001, deadline - time.monotonic())):
            return


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
            read_available(client, outcome, timeout=0.001)
        time.sleep(interval)  # pacing the attack, not synchronising with the server
    # The reaction may still be in flight (or buffered unread, for floods that never read).
    deadline = time.monotonic() + REACTION_TIMEOUT
    while outcome.goaway is None and not outcome.closed and time.monotonic() < deadline:
        read_available(client, outcome, timeout=max(0.001, deadline - time.monotonic()))
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


def attack(
    server: ServerProcess,
    name: str,
    one_round: Callable[[], Outcome],
    *,
    once: bool = False,
    max_cpu_seconds: float | None = None,
) -> list[Outcome]:
    """`one_round` again and again for ATTACK_SECONDS (or `once`) while a normal client keeps
    requesting; then the server must still serve, with the normal client healthy all along (and
    the server's CPU time in the window, attack and normal client together, under
    `max_cpu_seconds`)."""
    start_line = len(server.lines)
    with normal_traffic(server) as probe:
        outcomes = [one_round()] if once else repeat(one_round)
    report(name, outcomes, probe)
    assert_still_serves(server, probe, start_line)
    if max_cpu_seconds is not None:
        assert probe.cpu_used < max_cpu_seconds, f"the attack cost too much: {probe.summary()}"
    return outcomes


def rst(stream_id: int, code: int) -> bytes:
    return raw_frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", code))
