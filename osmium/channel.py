"""The worker -> acceptor report channel: one JSON object per line over a pipe.

Every worker owns the write end of its own pipe; the acceptor reads all of them. Messages:

- ``{"type": "ready", "pid": P}`` — lifespan startup done, the worker is accepting.
- ``{"type": "stats", "pid": P, "requests": .., "connections": .., "connections_total": ..,
  "streams": .., "bytes_received": .., "bytes_sent": .., "app_errors": ..,
  "protocol_errors": .., "connections_dropped": .., "timeouts": ..}`` — cumulative counters
  (open connections/streams are current values),
  sent every heartbeat interval; it doubles as the heartbeat.
- ``{"type": "retiring", "pid": P, "reason": R}`` — the worker stops accepting and drains
  (max-requests recycling), so the acceptor starts its replacement now.
- ``{"type": "fatal", "pid": P, "exit_code": C, "message": M}`` — start-up failed for a reason a
  restart cannot fix (the app does not import, lifespan startup failed): stop the server.

Writes never block a worker's event loop: the pipe is non-blocking and a report that does not fit
is dropped (the next one carries the same cumulative counters).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

MAX_LINE = 64 * 1024


@dataclass(slots=True)
class Counters:
    """What a worker counts; cumulative except `connections` and `streams` (open right now)."""

    requests: int = 0
    connections: int = 0
    connections_total: int = 0
    streams: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    app_errors: int = 0
    protocol_errors: int = 0
    #: Connections closed because their peer left output unread (send_timeout, worker budget).
    connections_dropped: int = 0
    #: Connections closed for a handshake or request header section that came too slowly.
    timeouts: int = 0


class ReportWriter:
    """The worker's end: fire-and-forget messages to the acceptor."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    def send(self, kind: str, **fields: Any) -> bool:
        line = json.dumps({"type": kind, "pid": os.getpid(), **fields}).encode() + b"\n"
        try:
            return os.write(self._fd, line) == len(line)
        except (BlockingIOError, BrokenPipeError):
            return False

    def send_stats(self, counters: Counters) -> bool:
        return self.send("stats", **asdict(counters))

    def close(self) -> None:
        os.close(self._fd)


class ReportReader:
    """The acceptor's end for one worker: bytes in, whole messages out."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._buffer = b""

    def read(self) -> list[dict[str, Any]]:
        """The whole messages available now."""
        try:
            chunk = os.read(self.fd, MAX_LINE)
        except BlockingIOError:
            chunk = b""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and "type" in message:
                messages.append(message)
        return messages

    def close(self) -> None:
        os.close(self.fd)
