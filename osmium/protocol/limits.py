"""Budgets and deadlines that keep one peer from costing us more than it pays for.

Sans-IO: the caller passes the time. Each limit is a named setting (CLI flag, osmium.toml key)
with a safe default; the README lists them all with the server's reaction to a peer over one.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
#: The smallest output buffer that still holds one full-size DATA frame.
MIN_OUTPUT = 16 * KIB


@dataclass(frozen=True, slots=True)
class Limits:
    #: RST_STREAM frames per connection per second, the peer's and those its frames provoke
    #: (refused or malformed streams, frames on closed streams): rapid reset (CVE-2023-44487)
    #: and reset flood (CVE-2019-9514). Over it: GOAWAY(ENHANCE_YOUR_CALM).
    max_resets_per_second: int = 200
    #: PING, SETTINGS (and their ACKs), PRIORITY, GOAWAY, empty DATA and tiny WINDOW_UPDATE frames
    #: per connection per second: ping (CVE-2019-9512), priority churn (9513), settings (9515)
    #: and empty-frame (9518) floods, data dribble (9511). Over it: GOAWAY(ENHANCE_YOUR_CALM).
    max_control_frames_per_second: int = 500
    #: Frames read and ignored, per connection per second: DATA under 1 KiB on a stream we reset,
    #: WINDOW_UPDATE and RST_STREAM on a closed stream (RFC 9113 §5.1: a client may have a few
    #: in flight when it ends), frames of an unknown type (§5.5), ALTSVC. Each costs us a parse
    #: and does nothing. Over it: GOAWAY(ENHANCE_YOUR_CALM).
    max_ignored_frames_per_second: int = 1000
    #: Bytes of one header block, HEADERS plus its CONTINUATION frames, before it is decoded
    #: (CONTINUATION flood, CVE-2024-27316). Over it: GOAWAY(ENHANCE_YOUR_CALM).
    max_header_block_size: int = 96 * KIB
    #: Response bytes buffered per connection (written, not yet taken by the socket): above
    #: it the app's sends wait and the connection is no longer read (CVE-2019-9517).
    max_connection_output: int = 512 * KIB
    #: Response bytes buffered by all connections of one worker: above it the connections
    #: holding the most are closed until the worker is under it again.
    max_worker_output: int = 64 * MIB
    #: Seconds from accept until the TLS handshake and the HTTP/2 preface are done.
    handshake_timeout: float = 10.0
    #: Seconds one request's header section may take once its first byte arrived (slowloris).
    header_timeout: float = 10.0
    #: Seconds a response may stay blocked by the peer: a stream waiting for flow-control
    #: window is reset (CANCEL), a connection whose socket is not read is closed.
    send_timeout: float = 30.0
    #: Seconds without a frame from the peer before the server sends it a PING (0: never): a
    #: peer gone silent, streams open or not (a NAT that dropped the flow, a crashed host).
    idle_ping: float = 30.0
    #: Seconds a PING of the server's may wait for its ACK: without one the peer is dead and
    #: the connection is closed (counted with the timeouts).
    ping_timeout: float = 10.0

    def problems(self) -> list[str]:
        names = [name for name in self.__slots__ if name != "idle_ping"]
        problems = [f"{name} must be positive" for name in names if getattr(self, name) <= 0]
        if self.idle_ping < 0:
            problems.append("idle_ping must be positive, or 0 (off)")
        if 0 < self.max_connection_output < MIN_OUTPUT:
            problems.append(f"max_connection_output must be at least {MIN_OUTPUT} (one frame)")
        return problems


class RateBudget:
    """At most `limit` spends per one-second window."""

    __slots__ = ("_limit", "_spent", "_window_start", "name")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self._limit = limit
        self._spent = 0
        self._window_start = 0.0

    def spend(self, now: float, amount: int = 1) -> bool:
        """Count `amount`; False once this second's budget is gone."""
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._spent = 0
        self._spent += amount
        return self._spent <= self._limit
